"""Phases and prediction: pure arithmetic, then the whole chain driven the way the session will drive it."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from carbonwrap.marks import ENV, Mark, MarksReader
from carbonwrap.meter import Meter
from carbonwrap.phases import Phases
from carbonwrap.report import samples
from carbonwrap.report.html import Series, run_page
from carbonwrap.report.samples import SamplesWriter
from carbonwrap.runner import Child
from carbonwrap.sensors import rapl
from carbonwrap.summarise import co2e_g
from tests import fakes
from tests.conftest import ROOT


def test_energy_goes_to_the_phase_that_was_current_and_sums_to_the_total() -> None:
    p = Phases(pue=1.5, g_per_kwh=100.0)
    assert p.current == "main"
    p.update(1.0, {"cpu": 10.0, "dram": 1.0})
    p.update(2.0, {"cpu": 30.0, "dram": 2.0}, [Mark("phase", "train")])  # 21 J of main, then train starts
    p.update(3.0, {"cpu": 70.0, "dram": 4.0})
    p.update(4.0, {"cpu": 75.0, "dram": 4.5}, [Mark("phase", "eval"), Mark("progress", progress=0.8)])
    p.update(5.0, {"cpu": 80.0, "dram": 5.0})
    got = p.phases()
    assert [(x["name"], x["start_s"], x["end_s"]) for x in got] == [
        ("main", 0.0, 2.0),
        ("train", 2.0, 4.0),
        ("eval", 4.0, 5.0),
    ]
    assert [x["energy_j"] for x in got] == [
        {"cpu": 30.0, "dram": 2.0, "gpu": None, "total": 32.0},
        {"cpu": 45.0, "dram": 2.5, "gpu": None, "total": 47.5},
        {"cpu": 5.0, "dram": 0.5, "gpu": None, "total": 5.5},
    ]
    assert sum(x["energy_j"]["total"] for x in got) == 85.0
    assert sum(x["co2e_g"] for x in got) == pytest.approx(co2e_g(85.0, 1.5, 100.0))
    assert p.prediction() == {
        "at_s": 4.0,
        "progress": 0.8,
        "predicted_duration_s": 5.0,
        "predicted_energy_j": pytest.approx(79.5 / 0.8),
        "predicted_co2e_g": pytest.approx(co2e_g(79.5, 1.5, 100.0) / 0.8),
    }


def test_co2e_priced_per_interval_and_scaled_to_the_records() -> None:
    p = Phases()
    p.update(1.0, {"cpu": 3.6e6}, g_per_kwh=100.0)
    p.update(2.0, {"cpu": 7.2e6}, [Mark("phase", "b")], g_per_kwh=300.0)  # live intensity per interval
    assert [x["co2e_g"] for x in p.phases()] == [pytest.approx(400.0), 0.0]  # b: the current phase, just begun
    p.update(3.0, {"cpu": 10.8e6}, g_per_kwh=100.0)
    assert [x["co2e_g"] for x in p.phases()] == [pytest.approx(400.0), pytest.approx(100.0)]
    assert [x["co2e_g"] for x in p.phases(co2e_g=1000.0)] == [pytest.approx(800.0), pytest.approx(200.0)]


def test_a_phase_marked_before_anything_ran_replaces_main_and_no_progress_no_prediction() -> None:
    p = Phases()
    p.update(0.0, {"cpu": 0.0}, [Mark("phase", "load")])
    p.update(1.0, {"cpu": 5.0})
    assert [x["name"] for x in p.phases()] == ["load"]
    assert p.prediction() is None


def test_phases_are_bounded() -> None:
    p = Phases(max_phases=10)
    for k in range(1, 100):
        p.update(float(k), {"cpu": float(k)}, [Mark("phase", f"p{k}")])
    got = p.phases()
    assert len(got) == 10 and sum(x["energy_j"]["total"] for x in got) == 99.0
    assert p.ignored == 90 and "90 phase mark(s) ignored" in p.warnings()[0]


CHILD = r"""
import os, subprocess, sys, time
from pathlib import Path
from carbonwrap import mark
zone = Path(sys.argv[1])

def advance(joules):
    rng = int((zone / "max_energy_range_uj").read_text())
    for _ in range(10):  # at most 120 W: within the zone's 205 W, so no step reads as a counter reset
        v = int((zone / "energy_uj").read_text()) + round(joules / 10 * 1e6)
        if v > rng:
            v -= rng + 1
        (zone / ".energy_uj.tmp").write_text(f"{v}\n")
        os.replace(zone / ".energy_uj.tmp", zone / "energy_uj")
        time.sleep(0.05)

plan = [("load", 10.0), ("train", 60.0), ("eval", 20.0)]
for i, (name, joules) in enumerate(plan, 1):
    if i == 2:
        subprocess.run([sys.executable, "-m", "carbonwrap", "mark", "phase", name], check=True)
    else:
        mark("phase", name)
    time.sleep(0.6)  # the mark is read (and the counters with it) before this phase's energy comes
    advance(joules)
    mark("progress", f"{i}/4")
    time.sleep(0.3)
"""


def test_a_real_child_marks_phases_and_the_chain_from_reader_to_page_adds_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session's loop in small: poll marks, read the counters, then feed the meter's sample to the
    samples writer and the page's series and the running totals to the phases."""
    fp = fakes.intel_server(tmp_path / "sys")
    zone = fp.zone_dir("intel-rapl:1")
    zones, _ = rapl.discover(tmp_path / "sys")
    sensor = rapl.RaplSensor([z for z in zones if z.domain == "cpu"])
    reader = MarksReader()
    monkeypatch.setenv(ENV, reader.path)  # what the session puts in the command's environment
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = Child((sys.executable, "-c", CHILD, str(zone)))
    meter, phases, series = Meter("machine"), Phases(g_per_kwh=56.0), Series()
    writer = SamplesWriter(str(tmp_path / "s.jsonl"), "run-1")
    interval, mid_rows = 0.05, -1
    try:
        t0 = time.monotonic()
        meter.prime(sensor.read(), child.usage(scan=False), 0.0)
        child.spawn()
        k, done = 1, False
        while not done:
            done = child.wait(t0 + k * interval - time.monotonic())
            now = time.monotonic()
            if not done and now < t0 + k * interval:
                continue
            k = int((now - t0) / interval) + 1
            marks = reader.poll()  # first the marks, then the counters: a boundary is exact to this read
            s = meter.update(sensor.read(), child.usage(), now - t0)
            writer.write(s, phases.current, 56.0)
            series.add(s, 56.0)
            phases.update(s.t_s, meter.charged_j, marks)
            if writer.rows == 40:
                mid_rows = len(list(samples.read(writer.path)[1]))
    finally:
        child.release()
        reader.close()
        writer.close()
    assert child.status == (0, None)
    got = phases.phases(co2e_g=co2e_g(meter.charged_j["cpu"], 1.0, 56.0))
    assert [p["name"] for p in got] == ["main", "load", "train", "eval"]
    energies = [p["energy_j"]["cpu"] for p in got]
    assert energies == [pytest.approx(0.0, abs=1e-6), pytest.approx(10.0), pytest.approx(60.0), pytest.approx(20.0)]
    assert sum(p["energy_j"]["total"] for p in got) == pytest.approx(meter.charged_j["cpu"], rel=1e-12)
    assert got[1]["end_s"] == got[2]["start_s"] and got[-1]["end_s"] == pytest.approx(time.monotonic() - t0, abs=60)
    pred = phases.prediction()
    assert pred is not None and pred["progress"] == 0.75
    assert pred["predicted_energy_j"] == pytest.approx(90.0 / 0.75)
    rows = list(samples.read(str(tmp_path / "s.jsonl"))[1])
    assert mid_rows == 40  # readable while the command ran
    assert sum(r["charged_w_cpu"] * r["dt_s"] for r in rows) == pytest.approx(90.0, rel=0.01)
    assert {r["phase"] for r in rows} == {"main", "load", "train", "eval"}
    assert sum(sum(p.charged_j.values()) for p in series.points()) == pytest.approx(90.0)
    record = {
        "id": "run-1",
        "label": "child",
        "command": ["python", "-c", "..."],
        "duration_s": rows[-1]["t_s"],
        "energy_j": {"cpu": 90.0, "dram": None, "gpu": None, "total": 90.0},
        "machine_energy_j": {"cpu": 90.0, "dram": None, "gpu": None, "total": 90.0},
        "co2e_g": co2e_g(90.0, 1.0, 56.0),
        "phases": got,
        "prediction": pred,
    }
    page = run_page(record, series)
    for name in ("load", "train", "eval"):
        assert f'data-phase="{name}"' in page
