"""The two steps of a run that use the grid operator's figures: waiting for a cleaner start before the launch
(SPEC section 9.1) and pricing the run's energy with the live series after the command has exited (section
8). Both reach the network only when asked, with deadlines, and a signal cuts either short."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from carbonwrap.errors import LaunchError
from carbonwrap.model import RunOptions, Sample
from carbonwrap.report import say
from carbonwrap.report.observers import Observer
from carbonwrap.signals import SignalWaiter, start_quietly

if TYPE_CHECKING:
    from carbonwrap.runreport import RunReport
    from carbonwrap.summarise import Totals

STOP = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
BUCKET_S = 60.0  # live pricing needs the energy per minute of wall-clock time, not per tick: memory stays flat


@dataclass(frozen=True, slots=True)
class Start:
    """What the carbon-aware start decided: the schedule record's part known before the launch."""

    plan: Any  # grid.schedule.Plan | None
    requested_at_s: float
    window_end_s: float
    expected_s: float
    expected_from: str


def _interruptible(work: Callable[[threading.Event], Any], limit_s: float) -> tuple[Any, int | None]:
    """Run `work(cancel)` in a thread while the main thread waits for a stop signal: (result, signal)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP)
    cancel = threading.Event()
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(work(cancel)), daemon=True)
    start_quietly(thread)
    got: int | None = None
    try:
        waiter = SignalWaiter(STOP)
        end = time.monotonic() + limit_s
        while thread.is_alive() and time.monotonic() < end:
            info = waiter.wait(0.1)
            if info is not None:
                got = info.signo
                break
    finally:
        if thread.is_alive():  # a signal, or out of time: the fetch is told to stop, never left to run on
            cancel.set()
            thread.join(1.0)
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return (box[0] if box else None), got


def wait_for_start(options: RunOptions, region: str | None) -> Start | None:
    """With --start-within or --finish-by: fetch the forecast, say the plan, and sleep until its start on the
    wall clock (a suspended machine wakes at the right time). A stop signal ends carbonwrap with 128 + N."""
    if options.start_within_s is None and options.finish_by_s is None:
        return None
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP)  # from the first line said to the last second waited
    try:
        return _plan_and_wait(options, region)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _plan_and_wait(options: RunOptions, region: str | None) -> Start:
    from carbonwrap.grid import timing
    from carbonwrap.grid.schedule import plan_start

    expected_s, expected_from, note = timing.expected_duration(options.expect_s, options.label, options.outputs)
    if note:
        say(f"carbonwrap: {note}\n")
    now = time.time()
    latest = timing.latest_start(now, options.start_within_s, options.finish_by_s, expected_s) or now
    result, got = _interruptible(
        lambda cancel: plan_start(region, latest, expected_s, cancel=cancel, expected_from=expected_from), 15.0
    )
    if got is not None:
        raise LaunchError(f"{signal.Signals(got).name} while fetching the forecast; nothing was launched", 128 + got)
    plan, warnings = result if result is not None else (None, ["carbon-aware start: no forecast in time; starting now"])
    for w in warnings:
        say(f"carbonwrap: {w}\n")
    if plan is not None:
        say(f"carbonwrap: {plan.message()}\n")
        _sleep_until(plan.start_s, _countdown(options))
    return Start(plan, now, latest, expected_s, expected_from)


def _countdown(options: RunOptions) -> Callable[[float], None] | None:
    """On a terminal with the live panel on: one line that counts down to the start, redrawn in place."""
    from carbonwrap.report import stderr_is_terminal

    if not options.live or options.quiet or not stderr_is_terminal():
        return None

    def show(left_s: float) -> None:
        if left_s <= 0:
            say("\r\x1b[2K")  # the line goes: the command's output starts on a clean one
            return
        m, s = divmod(int(left_s + 0.999), 60)
        h, m = divmod(m, 60)
        say(f"\r\x1b[2Kcarbonwrap: starting in {h:d}:{m:02d}:{s:02d} (waiting for a cleaner grid; Ctrl-C stops)")

    return show


def _sleep_until(wall_s: float, show: Callable[[float], None] | None = None) -> None:
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP)
    try:
        waiter = SignalWaiter(STOP)
        while (left := wall_s - time.time()) > 0:
            if show is not None:
                show(left)
            step = min(left, 1.0) if show is not None else min(left, 5.0)
            info = waiter.wait(step)  # short steps: a clock jump (suspend, NTP) is seen within 5 s
            if info is not None:
                name = signal.Signals(info.signo).name
                raise LaunchError(f"{name} while waiting for a cleaner grid; nothing was launched", 128 + info.signo)
    finally:
        if show is not None:
            show(0)
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def schedule_record(start: Start, started_at_s: float, realised_g_per_kwh: float | None) -> dict[str, Any]:
    from carbonwrap.grid.schedule import schedule_record as blank

    if start.plan is not None:
        return dict(start.plan.record(started_at_s, realised_g_per_kwh))
    return dict(
        blank(
            requested_at_s=start.requested_at_s,
            started_at_s=started_at_s,
            window_end_s=start.window_end_s,
            expected_s=start.expected_s,
            expected_from=start.expected_from,
            provider=None,
        )
    )


class EnergyByMinute(Observer):
    """An observer that keeps the charged energy per wall-clock minute, for live pricing after the run."""

    def __init__(self, started_wall_s: Callable[[], float]) -> None:
        self._started = started_wall_s
        self.buckets: dict[int, float] = {}

    def sampled(self, sample: Sample, totals: Totals) -> None:
        energy = sum(sample.charged_j.values())
        if sample.dt_s <= 0 or energy <= 0:
            return
        end = self._started() + sample.t_s
        start = end - sample.dt_s
        t = start
        while t < end:  # split the interval over the minutes it overlaps, by time
            k = int(t // BUCKET_S)
            upto = min(end, (k + 1) * BUCKET_S)
            self.buckets[k] = self.buckets.get(k, 0.0) + energy * (upto - t) / sample.dt_s
            t = upto

    def intervals(self) -> list[tuple[float, float, float]]:
        return [(k * BUCKET_S, (k + 1) * BUCKET_S, j) for k, j in sorted(self.buckets.items())]


def price_live(
    options: RunOptions, report: RunReport, region: str | None, intervals: Sequence[tuple[float, float, float]]
) -> tuple[RunReport, bool]:
    """The report priced with the grid's figures for the minutes the run took, the table where they lack;
    and whether a stop signal cut the fetch short (then nothing else goes on the network)."""
    from carbonwrap.grid import live_intensity

    table_g = options.intensity.g_per_kwh
    result, got = _interruptible(lambda cancel: live_intensity(region, intervals, table_g, cancel=cancel), 12.0)
    if result is None or got is not None:
        why = f"cut short by {signal.Signals(got).name}" if got is not None else "no answer in time"
        say(f"carbonwrap: live intensity: {why}; priced with the yearly table ({table_g:.0f} g/kWh)\n")
        fields: dict[str, Any] = {"grid": "live", "coverage": 0.0, "table_g_per_kwh": table_g, "g_per_kwh": table_g}
        return replace(report, live=fields, warnings=(*report.warnings, f"live intensity: {why}")), got is not None
    fields, grams, warnings = result
    for w in warnings:
        say(f"carbonwrap: {w}\n")
    charged = sum(v for k, v in report.energy_j.items() if k != "total" and v is not None)
    priced = sum(j for _, _, j in intervals)
    # The buckets hold what the samples charged; any energy they missed is priced at the table figure.
    from carbonwrap.summarise import co2e_g

    co2e = grams * options.pue + co2e_g(max(charged - priced, 0.0), options.pue, table_g)
    return replace(report, live=dict(fields), co2e_g=co2e, warnings=(*report.warnings, *warnings)), got is not None
