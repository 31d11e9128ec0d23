"""The charging rule of SPEC.md section 3 (issue 15 item 4), on numbers that can be checked by hand, and on a
real busy child through the CLI."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from carbonwrap import attribution
from carbonwrap.meter import Meter
from carbonwrap.model import Reading, TreeUsage
from carbonwrap.report import summary
from tests.conftest import clean_env


def use(cpu: float, busy: float, threads: int = 2) -> TreeUsage:
    return TreeUsage(cpu_s=cpu, rss_bytes=0, reaped_peak_rss_bytes=0, machine_busy_s=busy, threads=threads)


def test_the_issue_example_a_one_thread_job_alone_on_two_threads() -> None:
    # 30.5 J in 1 s, idle 0 W; the job is all of the machine's busy time (C = B = 1) of 2 threads (T = 2).
    # Before: E x C/T = 15.25 J. Now it pays for all the power it caused.
    assert attribution.charge(30.5, 1.0, 1.0, 1.0, 2.0, idle_w=0.0) == pytest.approx(30.5)
    # With 10 W idle: (30.5 - 10) x 1 + 10 x 1/2 = 25.5 J.
    assert attribution.charge(30.5, 1.0, 1.0, 1.0, 2.0, idle_w=10.0) == pytest.approx(25.5)
    # Another process doing as much: half the power above idle, and the same idle share.
    assert attribution.charge(30.5, 1.0, 1.0, 2.0, 2.0, idle_w=10.0) == pytest.approx(20.5 / 2 + 5.0)


def test_an_estimated_domain_uses_the_models_own_idle() -> None:
    m = Meter("tree", model_idle_w={"cpu": 2.0})
    m.prime([Reading("cpu", "estimate", power_w=0.0)], use(0, 0), 0.0)
    m.update([Reading("cpu", "estimate", power_w=6.0)], use(1.0, 1.0), 1.0)
    # (6 - 2) x 1/1 + 2 x 1/2 = 5 J of the 6.
    assert m.charged_j["cpu"] == pytest.approx(5.0)
    assert m.idle_record() == {"cpu": {"w": 2.0, "source": "model"}}


def test_a_measured_domain_caps_the_model_by_the_lowest_power_seen() -> None:
    m = Meter("tree", model_idle_w={"cpu": 50.0})
    m.prime([Reading("cpu", "p0", energy_j=0.0)], use(0, 0), 0.0)
    m.update([Reading("cpu", "p0", energy_j=80.0)], use(1.0, 1.0), 1.0)
    # 80 W seen: the model's 50 W stands. (80 - 50) x 1 + 50 x 1/2 = 55 J.
    assert m.charged_j["cpu"] == pytest.approx(55.0)
    assert m.idle_record() == {"cpu": {"w": 50.0, "source": "model"}}
    m.update([Reading("cpu", "p0", energy_j=110.0)], use(1.5, 2.0), 2.0)
    # 30 W seen, below the model: idle is 30 W, so nothing is above it; 30 x 0.5/2 = 7.5 J more.
    assert m.charged_j["cpu"] == pytest.approx(62.5)
    assert m.idle_record() == {"cpu": {"w": 30.0, "source": "lowest seen"}}
    m.update([Reading("cpu", "p0", energy_j=110.5)], use(1.5, 2.0), 2.01)
    # A 10 ms step is too short for a power figure: 50 W in it is not taken as the lowest seen.
    assert m.idle_record() == {"cpu": {"w": 30.0, "source": "lowest seen"}}


def test_the_baseline_wins_over_the_model() -> None:
    m = Meter("tree", idle_w={"cpu": 10.0}, model_idle_w={"cpu": 50.0})
    m.prime([Reading("cpu", "p0", energy_j=0.0)], use(0, 0), 0.0)
    m.update([Reading("cpu", "p0", energy_j=40.0)], use(1.0, 1.0), 1.0)
    assert m.charged_j["cpu"] == pytest.approx(30.0 + 5.0)
    assert m.idle_record() == {"cpu": {"w": 10.0, "source": "baseline"}}


def test_baseline_warning_on_a_busy_machine() -> None:
    warning = attribution.baseline_warning(1.2, 2.0, {"cpu": 31.0})
    assert warning is not None and "60% busy" in warning and "cpu 31 W" in warning
    assert attribution.baseline_warning(0.1, 2.0, {"cpu": 31.0}) is None


def test_summary_says_what_idle_was_assumed_and_the_baseline() -> None:
    rec = {"idle_w": {"cpu": {"w": 2.0, "source": "model"}}, "baseline_w": {}}
    assert summary.idle_line(rec) == "cpu 2 W (the model's idle)"
    rec = {"idle_w": {"cpu": {"w": 12.5, "source": "baseline"}}, "baseline_w": {"cpu": 12.5, "gpu": 40.0}}
    assert summary.idle_line(rec) == "cpu 12.5 W (measured by --baseline); --baseline also measured gpu 40 W"


BUSY = "import time\nend = time.time() + 2.0\nwhile time.time() < end: pass"


def test_a_busy_one_thread_job_is_charged_the_power_it_causes(cw, tmp_path: Path) -> None:
    # The estimate at 1 W idle and 5 W busy per thread: the machine draws threads x 1 W + busy CPU s x 4 W.
    # Whatever else runs here, the job pays for its own busy seconds at 4 W above idle plus its capacity
    # share of the idle power (its CPU s x 1 W): CPU s x 5 W. The old rule gave CPU s x (1 + 4 x utilisation).
    rec = tmp_path / "r.json"
    r = cw("--cpu-watts", "1:5", "-i", "0.25", "-o", str(rec), "--", sys.executable, "-c", BUSY, env=clean_env())
    assert r.returncode == 0, r.stderr
    out = json.loads(rec.read_text())
    threads = os.cpu_count() or 1
    assert out["idle_w"]["cpu"] == {"w": pytest.approx(threads * 1.0), "source": "model"}
    assert out["energy_j"]["cpu"] == pytest.approx(out["cpu_time_s"] * 5.0, rel=0.2)
    assert out["machine_energy_j"]["cpu"] >= out["energy_j"]["cpu"]
    assert f"idle       cpu {threads:g} W (the model's idle)" in r.stderr.decode()


@pytest.mark.parametrize(
    ("g", "energy_j", "expected"),
    [
        (0.0, 0.0, "nothing to compare"),
        (1.6e-4, 13.3, "a 10 W LED bulb uses in 1.3 seconds"),
        (0.5, 3600.0, "a 10 W LED bulb uses in 6 minutes"),
        (30.0, 2e5, "driving a typical car 121 m"),
        (5e3, 4e7, "driving a typical car 20.1 km"),
        (1e7, 1e11, "driving a typical car 40,234 km"),
    ],
)
def test_the_everyday_equivalent_reads_sensibly_at_every_size(g: float, energy_j: float, expected: str) -> None:
    text = summary.equivalent(g, energy_j)
    assert expected in text
    assert "µm" not in text and "mm" not in text and "e+" not in text and "e-" not in text
