"""The carbon-aware start (SPEC.md section 9): the choice rule, and the plan the wrapper waits for.

`choose` is pure. `plan_start` fetches the forecast (through the cache) and never raises: no forecast means
start now, with one warning line. The waiting itself (signals, the countdown) belongs to the caller.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from carbonwrap.grid.series import Period, iso, mean_over

FORECAST_HORIZON_S = 48 * 3600.0


@dataclass(frozen=True, slots=True)
class Choice:
    """The best start by the rule, the forecast mean from it and from now, and every candidate evaluated."""

    start_s: float
    g_per_kwh: float
    now_g_per_kwh: float | None  # None: the forecast does not cover the expected duration from now
    candidates: tuple[tuple[float, float], ...]  # (start_s, forecast mean over the expected duration)


def candidates(periods: Sequence[Period], now_s: float, latest_start_s: float) -> list[float]:
    """Now, and every period boundary after now up to the latest start."""
    bounds = {b for p in periods for b in (p.start_s, p.end_s) if now_s < b <= latest_start_s}
    return [now_s, *sorted(bounds)]


def choose(periods: Sequence[Period], now_s: float, latest_start_s: float, expected_s: float) -> Choice | None:
    """The candidate with the lowest forecast mean over `expected_s`; ties go to the earliest (SPEC.md 9.1).

    Each period's value holds over the whole period and a window is averaged by overlap. Candidates the
    forecast does not cover for the whole expected duration are left out; None when none is covered.
    The mean, as a function of the start, bends where a boundary enters the window (a candidate) and where
    one leaves it (boundary minus the duration): with a duration that is a whole number of periods the two
    sets coincide, and the candidates hold the best start of any start to the minute; otherwise the best
    start to the minute can lie at a boundary minus the duration, which the rule does not consider.
    """
    ps = sorted(periods, key=lambda p: p.start_s)
    span = max(expected_s, 1.0)
    scored = []
    for c in candidates(ps, now_s, max(latest_start_s, now_s)):
        m = mean_over(ps, c, c + span)
        if m is not None:
            scored.append((c, m))
    if not scored:
        return None
    best = scored[0]
    for c, m in scored[1:]:
        if m < best[1] - 1e-9:  # strictly lower: an equal mean later does not displace the earlier start
            best = (c, m)
    now_mean = scored[0][1] if scored[0][0] == now_s else None
    return Choice(best[0], best[1], now_mean, tuple(scored))


@dataclass(frozen=True, slots=True)
class Plan:
    """When to start, and what the forecast said; wall-clock seconds throughout."""

    requested_at_s: float
    start_s: float
    window_end_s: float  # the latest start allowed (now + --start-within, or --finish-by minus the duration)
    expected_s: float
    expected_from: str  # "flag" | "history" | "default"
    provider: str
    zone: str
    now_g_per_kwh: float | None
    chosen_g_per_kwh: float
    candidates: tuple[tuple[float, float], ...]

    @property
    def wait_s(self) -> float:
        return max(0.0, self.start_s - self.requested_at_s)

    @property
    def saving(self) -> float | None:
        """The forecast saving against starting now, as a fraction (0.54 for −54 %)."""
        if not self.now_g_per_kwh:
            return None
        return 1.0 - self.chosen_g_per_kwh / self.now_g_per_kwh

    def message(self) -> str:
        """`waiting until 03:30: forecast 98 g/kWh from 03:30, 212 now: −54 %` (local time)."""
        at = datetime.fromtimestamp(self.start_s).astimezone().strftime("%H:%M")
        if self.wait_s <= 0:
            return f"starting now: forecast {self.chosen_g_per_kwh:.0f} g/kWh now is the lowest in the window"
        now = f", {self.now_g_per_kwh:.0f} now" if self.now_g_per_kwh is not None else ""
        saving = f": −{100 * self.saving:.0f} %" if self.saving is not None else ""
        return f"waiting until {at}: forecast {self.chosen_g_per_kwh:.0f} g/kWh from {at}{now}{saving}"

    def record(self, started_at_s: float, realised_g_per_kwh: float | None = None) -> dict[str, Any]:
        """The record's `schedule` (SPEC.md section 9.1)."""
        return schedule_record(
            requested_at_s=self.requested_at_s,
            started_at_s=started_at_s,
            window_end_s=self.window_end_s,
            expected_s=self.expected_s,
            expected_from=self.expected_from,
            provider=self.provider,
            now_g_per_kwh=self.now_g_per_kwh,
            chosen_g_per_kwh=self.chosen_g_per_kwh,
            realised_g_per_kwh=realised_g_per_kwh,
        )


def schedule_record(
    *,
    requested_at_s: float,
    started_at_s: float,
    window_end_s: float,
    expected_s: float,
    expected_from: str,
    provider: str | None,
    now_g_per_kwh: float | None = None,
    chosen_g_per_kwh: float | None = None,
    realised_g_per_kwh: float | None = None,
) -> dict[str, Any]:
    """The record's `schedule`; with no forecast, the forecast fields are None and `started_at` is now."""
    return {
        "requested_at": iso(requested_at_s),
        "started_at": iso(started_at_s),
        "waited_s": max(0.0, started_at_s - requested_at_s),
        "window_end": iso(window_end_s),
        "expected_duration_s": expected_s,
        "expected_from": expected_from,
        "provider": provider,
        "forecast_now_g_per_kwh": now_g_per_kwh,
        "forecast_chosen_g_per_kwh": chosen_g_per_kwh,
        "realised_g_per_kwh": realised_g_per_kwh,
    }


def plan_start(
    region: str | None,
    window_end_wall_s: float,
    expected_s: float,
    *,
    env: Mapping[str, str] = os.environ,
    now: Callable[[], float] = time.time,
    deadline_s: float = 10.0,
    cancel: threading.Event | None = None,
    expected_from: str = "flag",
) -> tuple[Plan | None, list[str]]:
    """(the plan, warnings); None with one warning when no forecast can be had: start at once. Never raises."""
    from carbonwrap.grid import fetch_periods, live_zone
    from carbonwrap.grid.http import FetchError

    zone = live_zone(region)
    if zone is None:
        return None, [f"carbon-aware start: no forecast for region {region or '(none set)'}; starting now"]
    t = now()
    latest = max(window_end_wall_s, t)
    try:
        periods, _ = fetch_periods(
            zone, t, latest + expected_s, env=env, now_s=t, deadline_s=deadline_s, cancel=cancel, forecast=True
        )
        choice = choose(periods, t, latest, expected_s)
    except FetchError as e:
        return None, [f"carbon-aware start: no forecast from {zone.name}: {e}; starting now"]
    except Exception as e:  # a bug of ours must never hold a job back
        return None, [f"carbon-aware start: internal error {type(e).__name__}; starting now"]
    if choice is None:
        return None, [
            f"carbon-aware start: {zone.name}'s forecast does not cover the expected {expected_s / 3600:g} h; "
            "starting now"
        ]
    warnings = []
    ends = max(p.end_s for p in periods)
    if ends < latest + expected_s:
        warnings.append(
            f"carbon-aware start: {zone.name}'s forecast ends at {iso(ends)}; starts after "
            f"{iso(ends - expected_s)} could not be weighed"
        )
    plan = Plan(
        requested_at_s=t,
        start_s=choice.start_s,
        window_end_s=latest,
        expected_s=expected_s,
        expected_from=expected_from,
        provider=zone.name,
        zone=zone.zone,
        now_g_per_kwh=choice.now_g_per_kwh,
        chosen_g_per_kwh=choice.g_per_kwh,
        candidates=choice.candidates,
    )
    return plan, warnings


def outcome(schedule: Mapping[str, Any]) -> str:
    """The summary's schedule line: the wait, the forecast saving, and the realised one when it is known."""
    waited = float(schedule.get("waited_s") or 0)
    now, chosen = schedule.get("forecast_now_g_per_kwh"), schedule.get("forecast_chosen_g_per_kwh")
    if chosen is None:
        return "started at once: no forecast"
    line = f"waited {waited / 3600:.1f} h: forecast {chosen:.0f} g/kWh"
    if now:
        line += f" vs {now:.0f} now (−{100 * (1 - chosen / now):.0f} % forecast)"
    realised = schedule.get("realised_g_per_kwh")
    if realised is not None:
        line += f"; realised {realised:.0f} g/kWh" + (f" (−{100 * (1 - realised / now):.0f} % realised)" if now else "")
    return line
