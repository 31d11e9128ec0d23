"""summarise(): every figure of a run from what the run gathered, and the meter's events on its samples."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from carbonwrap.meter import Meter
from carbonwrap.model import Event, Intensity, Reading, RunOptions, SensorInfo, TreeUsage
from carbonwrap.report.record import from_record, to_record
from carbonwrap.report.sinks import prometheus_text
from carbonwrap.summarise import RunFacts, Totals, so_far, summarise

FR = Intensity("FR", "France", 44.0, 2024, "t", "flag")
IDLE = TreeUsage(cpu_s=0.0, rss_bytes=0, reaped_peak_rss_bytes=0, machine_busy_s=0.0, threads=2)
SENSORS = (
    SensorInfo("cpu", "package-0", "measured", "RAPL"),
    SensorInfo("dram", "estimate", "estimated", "model"),
)


def _facts(**kw: object) -> RunFacts:
    base: dict[str, object] = {
        "options": RunOptions(command=("true",), intensity=FR, pue=1.5, label="x"),
        "id": "r1",
        "started_at": "2026-12-02T00:00:00.000Z",
        "ended_at": "2026-12-02T00:00:10.000Z",
        "duration_s": 10.0,
        "status": (0, None),
        "cpu_time_s": 4.0,
        "machine_j": {"cpu": 3.6e6, "dram": 7.2e5},
        "charged_j": {"cpu": 1.8e6, "dram": 0.0},
        "sensors": SENSORS,
    }
    base.update(kw)
    return RunFacts(**base)  # type: ignore[arg-type]


def test_the_report_takes_every_figure_from_the_facts() -> None:
    r = summarise(_facts())
    assert r.energy_j == {"cpu": 1.8e6, "dram": 0.0, "gpu": None, "total": 1.8e6}
    assert r.machine_energy_j["total"] == pytest.approx(4.32e6)
    assert r.co2e_g == pytest.approx(0.5 * 1.5 * 44.0)  # half a kWh at the meter, PUE 1.5, 44 g/kWh
    rec = to_record(r)
    # dram is estimated but was charged nothing: the total is as measured as the energy in it.
    assert rec["methods"] == {"cpu": "measured", "dram": "estimated", "gpu": None, "total": "measured"}


def test_warnings_come_in_the_order_they_happened_and_a_budget_is_not_one() -> None:
    events = (
        Event(1.0, "warning", "cpu package-0: counter reset at 1.0 s"),
        Event(2.0, "budget", "energy budget passed"),
        Event(3.0, "degraded", "GPU 0 (H100): process list refused"),
    )
    r = summarise(_facts(warnings=("before",), events=events, late=("after",)))
    assert r.warnings == ("before", events[0].text, events[2].text, "after")


def test_a_run_still_going_has_no_exit_status_and_pushes_none() -> None:
    t = Totals(5.0, {"cpu": 3.6e6}, {"cpu": 3.6e6}, 2.0, 44.0)
    rec = to_record(so_far(RunOptions(command=("sleep", "9"), intensity=FR, label="x"), t, SENSORS[:1], "r2"))
    assert rec["exit_code"] is None and rec["duration_s"] == 5.0 and rec["co2e_g"] == pytest.approx(44.0)
    text = prometheus_text(rec)
    assert "carbonwrap_energy_joules" in text and "carbonwrap_exit_code" not in text


def test_the_meters_events_ride_on_the_sample_of_their_interval() -> None:
    m = Meter("machine")
    m.prime([Reading("cpu", "p0", energy_j=100.0, wrap_j=1e6)], IDLE, 0.0)
    m.absorb([Reading("cpu", "p0", error="EIO")], IDLE, 0.5)  # between ticks
    s1 = m.update([Reading("cpu", "p0", energy_j=150.0, wrap_j=1e6)], IDLE, 1.0)
    assert [(e.t_s, e.kind) for e in s1.events] == [(0.5, "warning"), (1.0, "warning")]
    assert "unreadable at 0.5 s (EIO)" in s1.events[0].text and "readable again" in s1.events[1].text
    s2 = m.update([Reading("cpu", "p0", energy_j=160.0, wrap_j=1e6)], IDLE, 2.0)
    assert s2.events == ()  # the meter keeps no log: what went out with a sample is gone from it
    assert not hasattr(m, "warnings")
    with pytest.raises(TypeError):
        s2.charged_j["cpu"] = 0.0  # type: ignore[index]  # an observer cannot change what others see


def test_a_record_reads_back_as_the_report_it_was_written_from() -> None:
    live = {"grid": "live", "provider": "neso", "zone": "GB", "coverage": 1.0, "g_per_kwh": 120.0}
    live |= {"table_g_per_kwh": 44.0, "periods": []}
    r = summarise(
        _facts(
            gpus=({"index": 0, "name": "H100", "energy_j": 5.0, "charged_j": 2.0, "method": "energy counter"},),
            phases=({"name": "main", "start_s": 0.0, "end_s": 10.0, "energy_j": {"total": 1.8e6}, "co2e_g": 33.0},),
            prediction={"at_s": 5.0, "progress": 0.5},
            budget={"max_co2e_g": 1.0, "exceeded": "carbon budget passed", "exit_status": 0},
            idle_w={"cpu": {"w": 3.0, "source": "model"}},
            events=(Event(1.0, "warning", "w"),),
            parent_id="p1",
            host_info={"python": "3.11"},
        )
    )
    r = replace(r, live=live, schedule={"waited_s": 3.0}, tags={"team": "ml"})
    rec = to_record(r)
    back = from_record(rec)
    assert back == r  # every field, the live figures included
    assert to_record(back) == rec


def test_a_real_runs_record_round_trips(cw: Any, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    p = cw("--region", "FR", "--tag", "k=v", "-o", str(out), "--", sys.executable, "-c", "print(1)")
    assert p.returncode == 0, p.stderr
    rec = json.loads(out.read_text())
    assert to_record(from_record(rec)) == rec


def test_a_reports_mean_intensity_is_weighted_by_energy_at_the_meter() -> None:
    from carbonwrap import aggregate

    def run(kwh: float, g: float, pue: float) -> aggregate.Run:
        it = Intensity("X", "x", g, 2024, "t", "flag")
        o = RunOptions(command=("true",), intensity=it, pue=pue, label="job")
        j = {"cpu": kwh * 3.6e6}
        return aggregate.from_record(to_record(summarise(_facts(options=o, machine_j=j, charged_j=j))))

    # 1 kWh at 100 g/kWh, then 1.5 kWh x PUE 2 at 300 g/kWh: 100 g + 900 g over 4 kWh from the grid.
    rows, grand = aggregate.totals([run(1.0, 100.0, 1.0), run(1.5, 300.0, 2.0)], "label")
    assert rows[0]["co2e_g"] == pytest.approx(1000.0)
    assert rows[0]["mean_g_per_kwh"] == pytest.approx(250.0)  # not the plain mean of the runs, 200
    assert grand[0]["mean_g_per_kwh"] == pytest.approx(250.0)
