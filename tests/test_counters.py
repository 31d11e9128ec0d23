"""Counters that mean what they say (issue 15 items 1-3): the read period that keeps every RAPL wrap, a
counter that becomes unreadable mid-run, and a sensor that fails without taking the others with it."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from carbonwrap import session
from carbonwrap.model import Intensity, Reading, RunOptions, SensorInfo, TreeUsage
from carbonwrap.runner import Child
from carbonwrap.sensors import rapl, read_all, read_period_s
from carbonwrap.sensors.estimate import EstimateSensor
from tests import fakes

IDLE = TreeUsage(cpu_s=0.0, rss_bytes=0, reaped_peak_rss_bytes=0, machine_busy_s=0.0, threads=4)
AMD_RANGE_J = fakes.AMD_PACKAGE_RANGE_UJ / 1e6


def usage(t: float) -> TreeUsage:
    return TreeUsage(cpu_s=t * 4, rss_bytes=0, reaped_peak_rss_bytes=0, machine_busy_s=t * 4, threads=4)


class FixedModel:
    """A standby model at fixed watts per domain, so that the stand-in energy can be checked by hand."""

    def __init__(self, watts: dict[str, float]) -> None:
        self.watts = watts

    def read(self, tree: object = None) -> list[Reading]:
        return [Reading(d, "estimate", power_w=w) for d, w in self.watts.items()]

    def mark(self) -> None:
        pass

    def model_idle_w(self) -> dict[str, float]:
        return {}


def amd_300w(root: Path, constraint: bool = True) -> tuple[fakes.FakePowercap, rapl.RaplSensor]:
    fp = fakes.FakePowercap(root)
    max_uw = 300_000_000 if constraint else None
    fp.zone("intel-rapl:0", "package-0", fakes.AMD_PACKAGE_RANGE_UJ, 0, max_power_uw=max_uw)
    zones, _ = rapl.discover(root)
    return fp, rapl.RaplSensor(zones)


def burn(fp: fakes.FakePowercap, joules: float) -> None:
    """Add energy in steps below the range: the fake, like the hardware, wraps once per step at most."""
    while joules > 0:
        step = min(joules, 30_000.0)
        fp.advance("intel-rapl:0", step)
        joules -= step


def test_read_period_is_range_over_twice_max_power(tmp_path: Path) -> None:
    _, sensor = amd_300w(tmp_path / "a")
    assert read_period_s([sensor]) == pytest.approx(AMD_RANGE_J / 600.0)  # 109 s at 300 W
    _, bare = amd_300w(tmp_path / "b", constraint=False)
    assert read_period_s([bare]) == pytest.approx(AMD_RANGE_J / 4000.0)  # 2 kW per package where none is given
    assert read_period_s([sensor, bare]) == pytest.approx(AMD_RANGE_J / 4000.0)
    assert read_period_s([EstimateSensor(("cpu",))]) is None  # nothing that wraps


def test_reads_at_the_safe_period_keep_every_wrap_of_a_600_s_interval(tmp_path: Path) -> None:
    fp, sensor = amd_300w(tmp_path)
    period = read_period_s([sensor])
    assert period is not None
    meter = fakes.NotingMeter("machine")
    meter.prime(sensor.read(), IDLE, 0.0)
    t = 0.0
    while t + period < 600.0:
        t += period
        burn(fp, 300.0 * period)
        meter.absorb(sensor.read(), usage(t), t)  # between reporting ticks: no sample
    burn(fp, 300.0 * (600.0 - t))
    sample = meter.update(sensor.read(), usage(600.0), 600.0)
    assert sample.dt_s == pytest.approx(600.0)
    assert sample.machine_j["cpu"] == pytest.approx(180_000.0, abs=1e-3)  # 300 W x 600 s, 2.7 wraps
    assert sample.power_w["cpu"] == pytest.approx(300.0)
    assert meter.machine_j["cpu"] == pytest.approx(180_000.0, abs=1e-3)
    assert meter.warnings == []


def test_one_read_per_600_s_cannot_see_two_wraps_and_says_so(tmp_path: Path) -> None:
    fp, sensor = amd_300w(tmp_path)
    meter = fakes.NotingMeter("machine")
    meter.prime(sensor.read(), IDLE, 0.0)
    burn(fp, 180_000.0)
    sample = meter.update(sensor.read(), usage(600.0), 600.0)
    # Two of the wraps are invisible to a single read: the 48,935 J for 180,000 J.
    assert sample.machine_j["cpu"] == pytest.approx(180_000.0 - 2 * (AMD_RANGE_J + 1e-6), abs=1e-3)
    assert len(meter.warnings) == 1 and "a wrap may have been missed" in meter.warnings[0]


def test_a_counter_unreadable_mid_run_is_estimated_for_that_time(tmp_path: Path) -> None:
    fp = fakes.amd_epyc(tmp_path)
    zones, _ = rapl.discover(tmp_path)
    sensor = rapl.RaplSensor(zones, standby=FixedModel({"cpu": 60.0}))  # 30 W for each of two packages
    meter = fakes.NotingMeter("machine")
    meter.prime(sensor.read(), IDLE, 0.0)
    for t in range(1, 6):
        fp.advance("intel-rapl:1", 100.0)
        if t in (2, 3):
            fp.write_raw("intel-rapl:0", "garbage\n")
        elif t == 4:
            fp.write_raw("intel-rapl:0", "999999999\n")  # readable again, at a value that says nothing of the gap
        else:
            fp.advance("intel-rapl:0", 100.0)
        meter.update(sensor.read(), usage(t), float(t))
    # package-1: 5 x 100 J. package-0: 100 J at 1 s and 5 s, the model's 30 W for the 3 s from its last good
    # read (1 s) to the first good one after the gap (4 s).
    assert meter.machine_j["cpu"] == pytest.approx(500.0 + 200.0 + 90.0, abs=1e-6)
    info = meter.sensor_info(sensor.info)
    assert [(i.name, i.method) for i in info] == [("package-0", "estimated"), ("package-1", "measured")]
    assert "estimated from the model for 3.0 s" in info[0].detail
    assert "package-0: unreadable at 2.0 s" in meter.warnings[0] and "estimated from the model" in meter.warnings[0]
    assert "readable again at 4.0 s" in meter.warnings[1]


CHANGE_MID_RUN = r"""
import os, sys, time
from pathlib import Path
zone, text = Path(sys.argv[1]), sys.argv[2]
time.sleep(0.4)
(zone / ".energy_uj.tmp").write_text(text)
os.replace(zone / ".energy_uj.tmp", zone / "energy_uj")
time.sleep(0.6)
"""


@pytest.mark.parametrize("text", ["garbage\n", "9" * 400 + "\n"])
def test_a_counter_that_breaks_mid_run_is_never_0_j_measured(cw, tmp_path: Path, text: str) -> None:
    sysfs = tmp_path / "sys"
    fp = fakes.amd_epyc(sysfs)
    rec = tmp_path / "r.json"
    child = [sys.executable, "-c", CHANGE_MID_RUN, str(fp.zone_dir("intel-rapl:0")), text]
    r = cw("--sysfs", str(sysfs), "-i", "0.05", "-o", str(rec), "--", *child)
    assert r.returncode == 0, r.stderr
    out = json.loads(r"{}" if not rec.exists() else rec.read_text())
    p0 = next(s for s in out["sensors"] if s["name"] == "package-0")
    p1 = next(s for s in out["sensors"] if s["name"] == "package-1")
    assert p0["method"] == "estimated" and "estimated from the model for" in p0["detail"]
    seconds = float(p0["detail"].split("estimated from the model for ")[1].split(" s")[0])
    assert 0.2 < seconds <= out["duration_s"]
    assert p1["method"] == "measured"
    assert out["machine_energy_j"]["cpu"] > 0
    assert any("package-0: unreadable at" in w for w in out["warnings"])
    assert "cpu " in r.stderr.decode() and "estimated" in r.stderr.decode()


def test_a_400_digit_counter_at_launch_falls_back_to_the_estimate(cw, tmp_path: Path) -> None:
    sysfs = tmp_path / "sys"
    fp = fakes.amd_epyc(sysfs)
    fp.write_raw("intel-rapl:0", "9" * 400 + "\n")
    rec = tmp_path / "r.json"
    r = cw("-q", "--sysfs", str(sysfs), "-o", str(rec), "--", sys.executable, "-c", "raise SystemExit(5)")
    assert r.returncode == 5, r.stderr  # the command ran (before: OverflowError, exit 70, nothing ran)
    out = json.loads(rec.read_text())
    cpu = [s for s in out["sensors"] if s["domain"] == "cpu"]
    assert [s["method"] for s in cpu] == ["estimated"] and "400-digit" in cpu[0]["detail"]


def test_bounds_on_the_numbers_a_zone_publishes(tmp_path: Path) -> None:
    fp = fakes.amd_epyc(tmp_path)
    (fp.zone_dir("intel-rapl:0") / "max_energy_range_uj").write_text("9" * 400 + "\n")
    (fp.zone_dir("intel-rapl:1") / "max_energy_range_uj").write_text(f"{2**64}\n")
    zones, _ = rapl.discover(tmp_path)
    assert [z.wrap_j for z in zones] == [None, None]  # garbage is no range: a drop is then a reset
    fp2 = fakes.amd_epyc(tmp_path / "b")
    fp2.write_raw("intel-rapl:0", f"{fakes.AMD_PACKAGE_RANGE_UJ + 5}\n")  # above the zone's own range
    zones, _ = rapl.discover(tmp_path / "b")
    with pytest.raises(rapl.SensorError, match="beyond the counter's range"):
        rapl.RaplSensor(zones)


class Raises:
    def __init__(self, domain: str, exc: Exception) -> None:
        self.exc = exc
        self.info = [SensorInfo(domain, f"{domain}0", "measured", "breaks")]

    def read(self, tree: object = None) -> Sequence[Reading]:
        raise self.exc

    def close(self) -> None:
        pass


class Counts:
    def __init__(self, domain: str, values: Sequence[float] = ()) -> None:
        self.n = 0
        self.values = list(values)
        self.info = [SensorInfo(domain, "c", "measured", "counts")]
        self.domain = domain

    def read(self, tree: object = None) -> Sequence[Reading]:
        self.n += 1
        value = self.values.pop(0) if self.values else 10.0 * self.n
        return [Reading(self.domain, "c", energy_j=value)]

    def close(self) -> None:
        pass


def test_read_all_isolates_each_sensor() -> None:
    out = read_all([Raises("gpu", ValueError("binding bug")), Counts("cpu"), Counts("dram", [float("nan")])], IDLE)
    gpu, cpu, dram = out
    assert gpu.domain == "gpu" and gpu.policy == "own share" and gpu.share == 0.0
    assert "ValueError: binding bug" in (gpu.error or "")
    assert cpu.energy_j == 10.0 and cpu.error is None
    assert dram.energy_j is None and "implausible energy" in (dram.error or "")


def test_a_gpu_binding_exception_mid_run_leaves_cpu_counting() -> None:
    cmd = (sys.executable, "-c", "import time; time.sleep(0.5)")
    child = Child(cmd)
    try:
        options = RunOptions(command=cmd, intensity=Intensity("FR", "France", 44.0, 2024, "t", "flag"), interval_s=0.05)
        report = session.run(options, [Counts("cpu"), Raises("gpu", KeyError("nvml"))], child)
    finally:
        child.release()
    assert report.exit_code == 0
    assert report.machine_energy_j["cpu"] is not None and report.machine_energy_j["cpu"] >= 50.0
    assert report.energy_j["gpu"] == 0.0
    assert any("gpu gpu0: unreadable" in w and "KeyError" in w for w in report.warnings)
    assert not any("measurement stopped" in w for w in report.warnings)
