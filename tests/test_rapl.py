"""RAPL through powercap on fake sysfs trees: discovery by name, exact joules, wraps, resets, failures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from carbonwrap.model import TreeUsage
from carbonwrap.sensors import open_sensors, rapl
from tests import fakes

IDLE = TreeUsage(cpu_s=0.0, rss_bytes=0, reaped_peak_rss_bytes=0, machine_busy_s=0.0, threads=4)


def usage(t: float) -> TreeUsage:
    """The tree using the whole machine: charged energy equals machine energy, which keeps sums exact."""
    return TreeUsage(cpu_s=t * 4, rss_bytes=0, reaped_peak_rss_bytes=0, machine_busy_s=t * 4, threads=4)


def run_meter(
    sensor: rapl.RaplSensor, fp: fakes.FakePowercap, watts: dict[str, float], ticks: int
) -> fakes.NotingMeter:
    meter = fakes.NotingMeter("machine")
    meter.prime(sensor.read(), IDLE, 0.0)
    for k in range(1, ticks + 1):
        for zone_id, w in watts.items():
            fp.advance(zone_id, w * 1.0)
        meter.update(sensor.read(), usage(k), float(k))
    return meter


def test_intel_server_zones_are_found_by_name_and_core_is_never_added(tmp_path: Path) -> None:
    fp = fakes.intel_server(tmp_path)
    zones, notes = rapl.discover(tmp_path)
    assert [(z.domain, z.name, z.path.name) for z in zones] == [
        ("cpu", "package-0", "intel-rapl:1"),
        ("cpu", "package-1", "intel-rapl:0"),
        ("dram", "package-0/dram", "intel-rapl:1:1"),
        ("dram", "package-1/dram", "intel-rapl:0:1"),
    ]
    assert sum("core" in n for n in notes) == 2
    cpu = rapl.RaplSensor([z for z in zones if z.domain == "cpu"])
    dram = rapl.RaplSensor([z for z in zones if z.domain == "dram"])
    # package-1 (intel-rapl:0) starts 300 J below its wrap: at 120 W it wraps during the third second.
    watts_cpu = {"intel-rapl:0": 120.0, "intel-rapl:1": 80.0, "intel-rapl:0:0": 999.0}
    m = run_meter(cpu, fp, watts_cpu, 10)
    assert m.machine_j["cpu"] == pytest.approx(2000.0, abs=1e-5)
    assert m.warnings == []
    m = run_meter(dram, fp, {"intel-rapl:0:1": 6.5, "intel-rapl:1:1": 3.5}, 10)
    assert m.machine_j["dram"] == pytest.approx(100.0, abs=1e-5)


def test_laptop_skips_psys_uncore_and_the_mmio_duplicate(tmp_path: Path) -> None:
    fp = fakes.intel_laptop(tmp_path)
    zones, notes = rapl.discover(tmp_path)
    assert [(z.name, z.path.name) for z in zones] == [("package-0", "intel-rapl:0")]
    assert any("intel-rapl-mmio:0" in n and "duplicate" in n for n in notes)
    assert any("psys" in n for n in notes) and any("uncore" in n for n in notes)
    sensor = rapl.RaplSensor(zones)
    m = run_meter(sensor, fp, {"intel-rapl:0": 15.0, "intel-rapl-mmio:0": 15.0, "intel-rapl:1": 30.0}, 5)
    assert m.machine_j["cpu"] == pytest.approx(75.0, abs=1e-6)  # not 150 (mmio) nor 225 (psys)


def test_amd_epyc_two_packages_and_its_range(tmp_path: Path) -> None:
    fp = fakes.amd_epyc(tmp_path)
    zones, _ = rapl.discover(tmp_path)
    assert [z.name for z in zones] == ["package-0", "package-1"]
    assert zones[0].wrap_j == pytest.approx(fakes.AMD_PACKAGE_RANGE_UJ / 1e6)
    m = run_meter(rapl.RaplSensor(zones), fp, {"intel-rapl:0": 180.0, "intel-rapl:1": 170.0}, 4)
    assert m.machine_j["cpu"] == pytest.approx(1400.0, abs=1e-6)


def test_a_wrap_mid_run_is_corrected_exactly(tmp_path: Path) -> None:
    fp = fakes.amd_epyc(tmp_path)
    rng = fakes.AMD_PACKAGE_RANGE_UJ
    fp.write_raw("intel-rapl:0", f"{rng - 50_000_000}\n")  # 50 J below the wrap
    zones, _ = rapl.discover(tmp_path)
    sensor = rapl.RaplSensor(zones[:1])
    m = run_meter(sensor, fp, {"intel-rapl:0": 200.0}, 3)
    assert fp.energy_uj("intel-rapl:0") < rng - 50_000_000  # it did wrap
    assert m.machine_j["cpu"] == pytest.approx(600.0, abs=1e-5)


def test_empty_tree_falls_back_to_the_labelled_estimate(tmp_path: Path) -> None:
    fakes.empty(tmp_path)
    assert rapl.discover(tmp_path)[0] == []
    sensors, warnings = open_sensors(tmp_path)
    info = [i for s in sensors for i in s.info]
    assert [(i.domain, i.method) for i in info] == [("cpu", "estimated"), ("dram", "estimated")]
    assert all("no RAPL" in i.detail for i in info)
    assert warnings == []


def test_a_jump_beyond_twice_max_power_is_a_reset_not_energy(tmp_path: Path) -> None:
    fp = fakes.intel_server(tmp_path)
    zones, _ = rapl.discover(tmp_path)
    sensor = rapl.RaplSensor([z for z in zones if z.name == "package-0"])
    meter = fakes.NotingMeter("machine")
    meter.prime(sensor.read(), IDLE, 0.0)
    fp.advance("intel-rapl:1", 100.0)
    meter.update(sensor.read(), usage(1), 1.0)
    fp.advance("intel-rapl:1", 5000.0)  # 5 kJ in 1 s: over 2 x 205 W
    meter.update(sensor.read(), usage(2), 2.0)
    fp.advance("intel-rapl:1", 100.0)
    meter.update(sensor.read(), usage(3), 3.0)
    assert meter.machine_j["cpu"] == pytest.approx(200.0, abs=1e-6)
    assert len(meter.warnings) == 1 and "reset" in meter.warnings[0]


def test_a_counter_that_drops_without_a_range_is_a_reset(tmp_path: Path) -> None:
    fp = fakes.amd_epyc(tmp_path)
    os.remove(fp.zone_dir("intel-rapl:0") / "max_energy_range_uj")
    zones, _ = rapl.discover(tmp_path)
    sensor = rapl.RaplSensor(zones[:1])
    meter = fakes.NotingMeter("machine")
    meter.prime(sensor.read(), IDLE, 0.0)
    fp.write_raw("intel-rapl:0", "5\n")
    meter.update(sensor.read(), usage(1), 1.0)
    assert meter.machine_j["cpu"] == 0.0 and "reset" in meter.warnings[0]


@pytest.mark.parametrize("breakage", ["garbage", "vanish", "negative"])
def test_a_counter_that_breaks_mid_run_warns_and_never_goes_negative(tmp_path: Path, breakage: str) -> None:
    fp = fakes.amd_epyc(tmp_path)
    zones, _ = rapl.discover(tmp_path)
    sensor = rapl.RaplSensor(zones)
    meter = fakes.NotingMeter("machine")
    meter.prime(sensor.read(), IDLE, 0.0)
    fp.advance("intel-rapl:0", 100.0)
    fp.advance("intel-rapl:1", 100.0)
    meter.update(sensor.read(), usage(1), 1.0)
    if breakage == "garbage":
        fp.write_raw("intel-rapl:0", "\x00\xffnot-a-number\n")
    elif breakage == "negative":
        fp.write_raw("intel-rapl:0", "-42\n")
    else:
        os.remove(fp.zone_dir("intel-rapl:0") / "energy_uj")
    fp.advance("intel-rapl:1", 100.0)
    sample = meter.update(sensor.read(), usage(2), 2.0)
    assert sample.machine_j["cpu"] == pytest.approx(100.0)
    assert meter.machine_j["cpu"] == pytest.approx(300.0, abs=1e-6)
    assert len(meter.warnings) == 1 and "package-0: unreadable at 2.0 s" in meter.warnings[0]
    assert all(v >= 0 for v in meter.machine_j.values())


def test_a_counter_that_comes_back_starts_over_and_without_a_model_the_gap_is_missing(tmp_path: Path) -> None:
    # No standby model: the gap cannot be estimated, so it is missing (and said so), never made up; the
    # counter that reads again starts over rather than claim the gap as measured.
    fp = fakes.amd_epyc(tmp_path)
    zones, _ = rapl.discover(tmp_path)
    sensor = rapl.RaplSensor(zones[:1])
    meter = fakes.NotingMeter("machine")
    meter.prime(sensor.read(), IDLE, 0.0)
    good = fp.energy_uj("intel-rapl:0")
    fp.write_raw("intel-rapl:0", "garbage\n")
    meter.update(sensor.read(), usage(1), 1.0)
    fp.write_raw("intel-rapl:0", f"{good + 150_000_000}\n")  # 150 J over the two seconds
    meter.update(sensor.read(), usage(2), 2.0)
    fp.write_raw("intel-rapl:0", f"{good + 250_000_000}\n")  # 100 J in the third
    meter.update(sensor.read(), usage(3), 3.0)
    assert meter.machine_j["cpu"] == pytest.approx(100.0, abs=1e-6)
    assert "missing until it reads again" in meter.warnings[0]
    assert "unreadable for 2.0 s, not counted (no model)" in meter.sensor_info(sensor.info)[0].detail
    assert "readable again" in meter.warnings[-1]


def test_permission_denied_falls_back_to_the_estimate_with_the_reason(tmp_path: Path) -> None:
    fakes.intel_server(tmp_path)

    def root_only(path: Path) -> str:
        # What a non-root user meets since Linux 5.10; injected because CI runs as root.
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return path.read_text()

    sensors, warnings = open_sensors(tmp_path, reader=root_only)
    info = [i for s in sensors for i in s.info]
    assert {(i.domain, i.method) for i in info} == {("cpu", "estimated"), ("dram", "estimated")}
    assert len(warnings) == 2
    for w in warnings:
        assert "root only" in w and "carbonwrap doctor" in w and "estimate" in w
    assert all("RAPL unreadable" in i.detail for i in info)


def test_a_readable_package_with_unreadable_dram_keeps_cpu_measured(tmp_path: Path) -> None:
    fakes.intel_server(tmp_path)

    def dram_denied(path: Path) -> str:
        if path.name == "energy_uj" and path.parent.name.count(":") == 2:
            raise PermissionError(13, "Permission denied", str(path))
        return path.read_text()

    sensors, warnings = open_sensors(tmp_path, reader=dram_denied)
    info = {(i.domain, i.method) for s in sensors for i in s.info}
    assert info == {("cpu", "measured"), ("dram", "estimated")}
    assert len(warnings) == 1 and warnings[0].startswith("dram:")
