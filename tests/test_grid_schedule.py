"""The carbon-aware start (SPEC.md section 9): the choice rule on the real recorded forecast, the times."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from carbonwrap.grid.providers import parse_neso
from carbonwrap.grid.schedule import choose, plan_start
from carbonwrap.grid.series import Period, floor_to
from carbonwrap.grid.timing import expected_duration, latest_start, parse_duration, parse_finish_by
from tests.conftest import ROOT
from tests.replay import NESO_24H, NESO_24H_ASKED, NesoSeries, Replay, fixture, replay, shift_neso, wall

assert replay
H = 3600.0


def recorded() -> tuple[list[Period], float]:
    """The real 24 h forecast (49 half hours, first 20:30-21:00) and its request time, 21:00Z."""
    return parse_neso(fixture(NESO_24H)), wall(NESO_24H_ASKED)


def minute_mean(periods: list[Period], start: float, duration: float) -> float | None:
    """Independent reference: the mean of the step function sampled at every minute of the window."""
    values = []
    for k in range(int(duration // 60)):
        t = start + 60 * k + 30  # the middle of the minute
        here = [p.g_per_kwh for p in periods if p.start_s <= t < p.end_s]
        if not here:
            return None
        values.append(here[0])
    return sum(values) / len(values)


@pytest.mark.parametrize("duration_h", [0.5, 2, 6])
@pytest.mark.parametrize("window_h", [6, 12, 24])
def test_choice_matches_brute_force_over_minute_starts(duration_h: float, window_h: float) -> None:
    periods, asked = recorded()
    now = asked + 7 * 60  # 21:07, not on a boundary
    latest = now + window_h * H
    choice = choose(periods, now, latest, duration_h * H)
    assert choice is not None
    # Every minute start up to the last boundary in the window whose whole run the forecast covers.
    last_bound = max(p.end_s for p in periods if p.end_s <= latest)
    brute = []
    for k in range(int((last_bound - now) // 60) + 1):
        m = minute_mean(periods, now + 60 * k, duration_h * H)
        if m is not None:
            brute.append((now + 60 * k, m))
    best = min(m for _, m in brute)
    first = next(s for s, m in brute if m <= best + 1e-9)
    assert abs(choice.g_per_kwh - best) < 1e-9
    assert choice.start_s == first  # ties to the earliest, to the minute
    assert choice.now_g_per_kwh is not None and abs(choice.now_g_per_kwh - brute[0][1]) < 1e-9


def test_candidates_are_now_and_boundaries_and_ties_go_earliest() -> None:
    ps = [Period(0, 1800, 100, "forecast"), Period(1800, 3600, 50, "forecast"), Period(3600, 5400, 50, "forecast")]
    c = choose(ps, 600, 3600, 1800)
    assert c is not None and c.start_s == 1800 and c.g_per_kwh == 50
    assert [s for s, _ in c.candidates] == [600, 1800, 3600]
    assert c.now_g_per_kwh == (1200 * 100 + 600 * 50) / 1800


def test_forecast_shorter_than_window_and_none_covered() -> None:
    periods, asked = recorded()
    ends = max(p.end_s for p in periods)
    c = choose(periods, asked, asked + 48 * H, 6 * H)  # a 48 h window on a 24 h answer
    assert c is not None and max(s for s, _ in c.candidates) <= ends - 6 * H
    assert choose(periods, asked, asked + H, 30 * H) is None


def serve(server: Replay, now: float) -> None:
    rows = shift_neso(fixture(NESO_24H)["data"], floor_to(now) - wall(NESO_24H_ASKED))
    server.routes["/intensity/"] = NesoSeries(rows).answer


def test_plan_start_on_replayed_forecast(replay: Replay, tmp_path: Any) -> None:
    now = floor_to(time.time()) + 420
    serve(replay, now)
    env = {"CARBONWRAP_NESO_URL": replay.url, "XDG_CACHE_HOME": str(tmp_path)}
    plan, warnings = plan_start("GB", now + 12 * H, 2 * H, env=env, now=lambda: now)
    assert warnings == [] and plan is not None
    periods = parse_neso(fixture(NESO_24H))
    shifted = [Period(p.start_s + floor_to(now) - wall(NESO_24H_ASKED), p.end_s + floor_to(now) - wall(NESO_24H_ASKED),
                      p.g_per_kwh, p.kind) for p in periods]  # fmt: skip
    want = choose(shifted, now, now + 12 * H, 2 * H)
    assert want is not None and (plan.start_s, plan.chosen_g_per_kwh) == (want.start_s, want.g_per_kwh)
    assert plan.saving is not None and plan.saving > 0.4
    assert "waiting until" in plan.message() and "now: −" in plan.message()
    rec = plan.record(plan.start_s, realised_g_per_kwh=70.0)
    assert set(rec) == {
        "requested_at", "started_at", "waited_s", "window_end", "expected_duration_s", "expected_from",
        "provider", "forecast_now_g_per_kwh", "forecast_chosen_g_per_kwh", "realised_g_per_kwh",
    }  # fmt: skip
    assert rec["waited_s"] == plan.start_s - now and rec["provider"] == "NESO"
    assert "/fw48h" in replay.paths()[0]
    plan_start("GB", now + 12 * H, 2 * H, env=env, now=lambda: now + 60)
    assert len(replay.paths()) == 1  # the same half hour: the cached forecast
    # 24 h window + 6 h job on a 24 h forecast: said so
    _, warnings = plan_start("GB", now + 24 * H, 6 * H, env=env, now=lambda: now + 120)
    assert len(warnings) == 1 and "could not be weighed" in warnings[0]


def test_plan_start_without_forecast(replay: Replay, tmp_path: Any) -> None:
    replay.routes["/intensity/"] = (500, b"")
    env = {"CARBONWRAP_NESO_URL": replay.url, "XDG_CACHE_HOME": str(tmp_path)}
    plan, warnings = plan_start("GB", time.time() + H, H, env=env)
    assert plan is None and len(warnings) == 1 and "HTTP 500" in warnings[0] and "starting now" in warnings[0]
    plan, warnings = plan_start("US-eGRID-CAMX", time.time() + H, H, env={})
    assert plan is None and len(warnings) == 1 and "no forecast for region" in warnings[0]


LONDON = ZoneInfo("Europe/London")


def test_finish_by_across_midnight_and_dst() -> None:
    at = datetime(2026, 12, 1, 23, 0, tzinfo=LONDON).timestamp()
    assert parse_finish_by("06:00", at, LONDON) == datetime(2026, 12, 2, 6, 0, tzinfo=LONDON).timestamp()
    assert parse_finish_by("23:30", at, LONDON) - at == 1800
    spring = datetime(2026, 3, 28, 23, 0, tzinfo=LONDON).timestamp()  # clocks go 01:00 -> 02:00 that night
    assert parse_finish_by("03:00", spring, LONDON) - spring == 3 * H
    autumn = datetime(2026, 10, 24, 23, 0, tzinfo=LONDON).timestamp()  # 02:00 BST -> 01:00 GMT that night
    assert parse_finish_by("06:00", autumn, LONDON) - autumn == 8 * H
    assert parse_finish_by("2026-12-02T06:00Z", at, LONDON) == wall("2026-12-02T06:00Z")
    assert parse_finish_by("2026-12-02T06:00+01:00", at) == wall("2026-12-02T05:00Z")
    for bad in ("25:00", "6pm", "tomorrow"):
        with pytest.raises(ValueError, match="HH:MM"):
            parse_finish_by(bad, at, LONDON)


def test_finish_by_with_the_system_zone_from_tz() -> None:
    spring = datetime(2026, 3, 28, 23, 0, tzinfo=LONDON).timestamp()
    code = f"from carbonwrap.grid.timing import parse_finish_by; print(parse_finish_by('03:00', {spring}) - {spring})"
    env = {"TZ": "Europe/London", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert float(out.stdout) == 3 * H


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90s", "30m", "1.5h", "2d", "45")] == [90, 1800, 5400, 172800, 45]
    for bad in ("nan", "inf", "1e400h", "-5m", "5x", ""):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_latest_start() -> None:
    assert latest_start(100.0, 600.0, None, 50.0) == 700.0
    assert latest_start(100.0, 600.0, 500.0, 50.0) == 450.0
    assert latest_start(100.0, None, 120.0, 50.0) == 100.0  # can't finish in time: start now
    assert latest_start(100.0, None, None, 50.0) is None


def test_expected_duration_from_history(tmp_path: Path) -> None:
    jsonl = tmp_path / "runs.jsonl"
    lines = [json.dumps({"label": "nightly", "duration_s": float(d), "ended_at": f"2026-11-{d:02d}T00:00:00Z"})
             for d in range(1, 13)]  # fmt: skip
    lines.insert(3, json.dumps({"label": "other", "duration_s": 9999.0, "ended_at": "2026-11-30T00:00:00Z"}))
    jsonl.write_text("\n".join([*lines, "{broken"]) + "\n")
    csv = tmp_path / "runs.csv"
    csv.write_text("label,duration_s,ended_at\n'-weird,7,2026-11-20T00:00:00Z\nnightly,nan,2026-11-29T00:00:00Z\n")
    # The last 10 of 12 nightly runs: 3..12, median 7.5.
    assert expected_duration(None, "nightly", [str(jsonl), str(csv)]) == (7.5, "history", None)
    assert expected_duration(None, "-weird", [str(csv)])[:2] == (7.0, "history")
    assert expected_duration(42.0, "nightly", [str(jsonl)]) == (42.0, "flag", None)
    seconds, source, line = expected_duration(None, "never", [str(jsonl), str(tmp_path / "missing.jsonl")])
    assert (seconds, source) == (3600.0, "default") and line is not None and "1 h" in line
    assert math.isfinite(seconds)


def test_regional_forecast_path_and_outcome_line(replay: Replay, tmp_path: Any) -> None:
    from carbonwrap.grid.schedule import outcome

    doc = fixture("uk-carbon-intensity/stuartharris__regional.json")
    now = floor_to(time.time()) + 60
    rows = shift_neso(doc["data"]["data"], floor_to(now) - wall("2023-07-05T00:00Z"))
    meta = {k: v for k, v in doc["data"].items() if k != "data"}
    replay.routes["/regional/intensity/"] = NesoSeries(rows, regional=meta).answer
    env = {"CARBONWRAP_NESO_URL": replay.url, "XDG_CACHE_HOME": str(tmp_path)}
    plan, _ = plan_start("GB-KT1", now + 1800, 1200, env=env, now=lambda: now)
    assert "/fw48h/postcode/KT1" in replay.paths()[0]
    # The recorded regional answer has two periods (121 until now's half hour, 116 in it): start now.
    assert plan is not None and plan.start_s == now and plan.chosen_g_per_kwh == 116
    line = outcome(plan.record(now, realised_g_per_kwh=110.0))
    assert line.startswith("waited 0.0 h: forecast 116 g/kWh") and "realised 110 g/kWh" in line


def test_earlier_durations_are_found_by_the_label_the_run_had(tmp_path: Path) -> None:
    # A CSV escapes labels a spreadsheet would run as formulas; JSON keeps them as they are.
    import csv as csvlib
    import json as jsonlib

    from carbonwrap.grid.timing import history_durations
    from carbonwrap.report.record import escape_cell

    rows = [("=calc", "2026-12-01T01:00:00Z", 10.0), ("'=x", "2026-12-01T02:00:00Z", 20.0), ("plain", "x", 5.0)]
    with (tmp_path / "r.csv").open("w", newline="") as f:
        w = csvlib.DictWriter(f, ["label", "ended_at", "duration_s"])
        w.writeheader()
        for label, end, d in rows:
            w.writerow({"label": escape_cell(label), "ended_at": end, "duration_s": d})
    (tmp_path / "r.jsonl").write_text(
        "".join(jsonlib.dumps({"label": lb, "ended_at": e, "duration_s": d + 1}) + "\n" for lb, e, d in rows)
    )
    outs = [str(tmp_path / "r.csv"), str(tmp_path / "r.jsonl")]
    assert history_durations("=calc", outs) == [10.0, 11.0]
    assert history_durations("'=x", outs) == [20.0, 21.0]
