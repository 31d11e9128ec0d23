"""The closing figures of issues 16 and 17, computed with carbonwrap.grid over the replayed real NESO recording.

Run from the repository root: python scripts/grid_figures.py. Needs ../shared/fixtures (test data only).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import itertools

from carbonwrap import intensity
from carbonwrap.grid import live_intensity
from carbonwrap.grid.providers import parse_neso
from carbonwrap.grid.schedule import plan_start
from carbonwrap.grid.series import Period, floor_to
from tests.replay import NESO_24H, NESO_24H_ASKED, NesoSeries, Replay, fixture, shift_neso, wall

H = 3600.0


def clock(wall_s: float, shift: float) -> str:
    """A time of the replay, written on the recording's own clock (UTC)."""
    return time.strftime("%H:%M", time.gmtime(wall_s - shift))


def live_figures(server: Replay, cache: str) -> None:
    t0 = floor_to(time.time())
    shift = t0 - wall(NESO_24H_ASKED)
    rows = shift_neso(fixture(NESO_24H)["data"], shift)
    server.routes["/intensity/"] = NesoSeries(rows).answer
    table = intensity.Table.load().lookup("GB").g_per_kwh
    env = {"CARBONWRAP_NESO_URL": server.url, "XDG_CACHE_HOME": cache}
    start = t0 - 1200  # 20:40-21:20 on the recording's clock: 190 then 177
    for name, watts in (
        ("constant 25 W", lambda i: 25.0),
        ("20 W then 60 W after 25 min", lambda i: 20.0 if i < 1500 else 60.0),
    ):
        ivs = [(start + i, start + i + 1, watts(i)) for i in range(2400)]
        t = time.monotonic()
        fields, grams, warns = live_intensity("GB", ivs, table, env=env, now=lambda: start + 2400)
        took = time.monotonic() - t
        ps = {wall(r["from"]): r["intensity"]["forecast"] for r in rows}
        time_mean = sum(ps[floor_to(s)] for s, _, _ in ivs) / len(ivs)
        print(
            f"40-min run {clock(start, shift)}-{clock(start + 2400, shift)}, {name}: "
            f"live {fields['g_per_kwh']:.1f} g/kWh "
            f"(energy-weighted), table {table:g}, time-average {time_mean:.1f}; {grams:.3f} g; "
            f"requests so far {len(server.paths('/intensity/'))}; call took {took * 1000:.0f} ms; warnings {warns}"
        )
    for label, route, deadline, cancel_after in (
        ("hanging server, 10 s deadline", "hang", 10.0, None),
        ("hanging server, SIGTERM-style cancel after 0.5 s", "hang", 10.0, 0.5),
    ):
        server.routes["/intensity/"] = route
        cancel = threading.Event()
        if cancel_after is not None:
            threading.Timer(cancel_after, cancel.set).start()
        t = time.monotonic()
        _, _, warns = live_intensity(
            "GB", [(t0 + 7200, t0 + 7260, 60.0)], table, env=env, deadline_s=deadline, cancel=cancel,
            now=lambda: t0 + 7260,
        )  # fmt: skip
        print(f"{label}: returned after {time.monotonic() - t:.2f} s with {warns}")


def cats_rule(periods: list[Period], now: float, latest: float, duration: float) -> tuple[float, float]:
    """Our reading of cats' WindowedForecast (forecast.py): each half-hour value is a point at the period's
    start, joined by straight lines; starts at now + k x 30 min; the window's mean is the mean of the
    midpoints of its sub-intervals, each counted once whatever its length. Written here, not copied."""
    pts = [(p.start_s, p.g_per_kwh) for p in periods]

    def at(t: float) -> float:
        for (t1, v1), (t2, v2) in itertools.pairwise(pts):
            if t1 <= t <= t2:
                return v1 + (v2 - v1) * (t - t1) / (t2 - t1)
        raise ValueError

    best = None
    k = 0
    while now + k * 1800 <= latest and now + k * 1800 + duration <= pts[-1][0]:
        s, e = now + k * 1800, now + k * 1800 + duration
        inner = [t for t, _ in pts if s < t < e]
        knots = [s, *inner, e]
        values = [at(t) for t in knots]
        mean = sum((a + b) / 2 for a, b in itertools.pairwise(values)) / (len(values) - 1)
        if best is None or mean < best[1]:
            best = (s, mean)
        k += 1
    assert best is not None
    return best


def schedule_figures(server: Replay, cache: str) -> None:
    now = floor_to(time.time()) + 7 * 60
    shift = floor_to(now) - wall(NESO_24H_ASKED)
    server.routes["/intensity/"] = NesoSeries(shift_neso(fixture(NESO_24H)["data"], shift)).answer
    env = {"CARBONWRAP_NESO_URL": server.url, "XDG_CACHE_HOME": cache}
    print(f"now = {clock(now, shift)} on the recording's clock (the 24 h NESO forecast recorded 2020-05-21T21:00Z)")
    for d in (0.5, 2.0, 6.0):
        for w in (6.0, 12.0, 24.0):
            plan, warns = plan_start("GB", now + w * H, d * H, env=env, now=lambda: now)
            assert plan is not None and plan.now_g_per_kwh is not None and plan.saving is not None
            print(
                f"duration {d:g} h, window {w:g} h: start {clock(plan.start_s, shift)} "
                f"(+{plan.wait_s / H:.2f} h), mean {plan.chosen_g_per_kwh:.1f} g/kWh, now {plan.now_g_per_kwh:.1f}, "
                f"saving {100 * plan.saving:.1f} %" + (f"  [{warns[0]}]" if warns else "")
            )
    periods = [Period(p.start_s + shift, p.end_s + shift, p.g_per_kwh, p.kind) for p in parse_neso(fixture(NESO_24H))]
    for d, w in ((2.0, 12.0), (0.5, 24.0), (6.0, 24.0)):
        plan, _ = plan_start("GB", now + w * H, d * H, env=env, now=lambda: now)
        assert plan is not None
        s, m = cats_rule(periods, now, now + w * H, d * H)
        from carbonwrap.grid.series import mean_over

        true = mean_over(periods, s, s + d * H)
        print(
            f"cats-style rule, {d:g} h in {w:g} h: start {clock(s, shift)} (its own mean {m:.1f}, "
            f"the forecast's period mean over that run {true:.1f}) vs ours {clock(plan.start_s, shift)} "
            f"({plan.chosen_g_per_kwh:.1f})"
        )
    print(f"requests for all of the above: {len(server.paths('/intensity/'))}")


if __name__ == "__main__":
    srv = Replay()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            live_figures(srv, tmp)
        with tempfile.TemporaryDirectory() as tmp:
            schedule_figures(srv, tmp)
    finally:
        srv.close()
