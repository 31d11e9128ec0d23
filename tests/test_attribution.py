"""Charging (SPEC.md section 3): capacity share, idle baseline, scopes, PUE, and a measured run end to end."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from carbonwrap import attribution
from carbonwrap.meter import Meter
from carbonwrap.model import Reading, TreeUsage
from carbonwrap.summarise import co2e_g
from tests import fakes


def test_with_no_idle_power_everything_goes_by_busy_share() -> None:
    # 100 J over 1 s on 4 threads, idle 0 W; the tree used 1 of the 2 busy CPU seconds: half of it.
    assert attribution.charge(100.0, 1.0, 1.0, 2.0, 4.0) == pytest.approx(50.0)
    assert attribution.charge(100.0, 1.0, 0.0, 2.0, 4.0) == 0.0
    assert attribution.charge(100.0, 1.0, 5.0, 4.0, 4.0) == pytest.approx(100.0)  # clamped at 1


def test_baseline_formula() -> None:
    # E=100 J, P_idle=40 W, dt=1 s, C=1, B=2, T=4: (100-40) x 1/2 + 40 x 1/4 = 40 J.
    assert attribution.charge(100.0, 1.0, 1.0, 2.0, 4.0, idle_w=40.0) == pytest.approx(40.0)
    # Below idle: nothing above idle to share, and only the energy there was by capacity: 30 x 1/4.
    assert attribution.charge(30.0, 1.0, 1.0, 2.0, 4.0, idle_w=40.0) == pytest.approx(7.5)
    # Machine idle apart from the tree: the tree pays all the power above idle.
    assert attribution.charge(100.0, 1.0, 1.0, 1.0, 4.0, idle_w=40.0) == pytest.approx(70.0)


def test_resident_share() -> None:
    assert attribution.resident_share(2_000, 8_000) == 0.25
    assert attribution.resident_share(9_000, 8_000) == 1.0
    assert attribution.resident_share(1, 0) == 0.0


def _usage(cpu: float, busy: float, rss: int = 0) -> TreeUsage:
    return TreeUsage(cpu_s=cpu, rss_bytes=rss, reaped_peak_rss_bytes=0, machine_busy_s=busy, threads=4)


def test_meter_scopes_and_memory_share() -> None:
    readings0 = [
        Reading("cpu", "p0", energy_j=0.0, wrap_j=1e6),
        Reading("dram", "estimate", power_w=8.0, policy="resident share", basis_bytes=8_000),
    ]
    readings1 = [
        Reading("cpu", "p0", energy_j=100.0, wrap_j=1e6),
        Reading("dram", "estimate", power_w=8.0, policy="resident share", basis_bytes=8_000),
    ]
    tree = Meter("tree")
    tree.prime(readings0, _usage(0, 0), 0.0)
    s = tree.update(readings1, _usage(1.0, 2.0, rss=2_000), 1.0)
    assert s.machine_j == {"cpu": 100.0, "dram": 8.0}
    assert s.charged_j == {"cpu": pytest.approx(25.0), "dram": pytest.approx(2.0)}
    machine = Meter("machine")
    machine.prime(readings0, _usage(0, 0), 0.0)
    s = machine.update(readings1, _usage(1.0, 2.0, rss=2_000), 1.0)
    assert s.charged_j == s.machine_j


def test_a_command_shorter_than_one_interval_is_charged_its_peak_memory() -> None:
    # Alive at neither end of the interval: the only figure left is the peak of its largest finished process.
    dram = Reading("dram", "estimate", power_w=8.0, policy="resident share", basis_bytes=8_000)
    m = Meter("tree")
    m.prime([dram], _usage(0, 0), 0.0)
    gone = TreeUsage(cpu_s=0.5, rss_bytes=0, reaped_peak_rss_bytes=2_000, machine_busy_s=1.0, threads=4)
    s = m.update([dram], gone, 1.0)
    assert s.charged_j["dram"] == pytest.approx(2.0)  # 8 J x 2,000 / 8,000
    idle = TreeUsage(cpu_s=0.5, rss_bytes=0, reaped_peak_rss_bytes=2_000, machine_busy_s=2.0, threads=4)
    assert m.update([dram], idle, 2.0).charged_j["dram"] == 0.0  # no CPU in the interval: nothing ran then


def test_meter_with_idle_baseline() -> None:
    m = Meter("tree", idle_w={"cpu": 40.0})
    m.prime([Reading("cpu", "p0", energy_j=0.0)], _usage(0, 0), 0.0)
    m.update([Reading("cpu", "p0", energy_j=100.0)], _usage(1.0, 2.0), 1.0)
    assert m.charged_j["cpu"] == pytest.approx(40.0)


def test_co2e() -> None:
    assert co2e_g(3.6e6, 1.0, 50.0) == pytest.approx(50.0)
    assert co2e_g(3.6e6, 1.5, 50.0) == pytest.approx(75.0)


def test_measured_energy_end_to_end_on_a_fake_server(cw, tmp_path: Path) -> None:
    sysfs = tmp_path / "sys"
    fp = fakes.intel_server(sysfs)
    fp.write_raw("intel-rapl:0", f"{fakes.INTEL_PACKAGE_RANGE_UJ - 50_000_000}\n")  # 50 J below the wrap
    rec = tmp_path / "r.json"
    # About 1 s at 120 + 80 W: under twice the zones' 205 W maximum, which would be taken as a reset.
    watts = {"intel-rapl:0": 120.0, "intel-rapl:1": 80.0, "intel-rapl:0:1": 30.0, "intel-rapl:1:1": 20.0}
    child = fakes.advance_command({fp.zone_dir(z): j for z, j in watts.items()})
    opts = ["--sysfs", str(sysfs), "--scope", "machine", "--region", "FR", "--pue", "1.2", "-i", "0.05"]
    r = cw("-q", *opts, "-o", str(rec), "--", *child)
    assert r.returncode == 0, r.stderr
    out = json.loads(rec.read_text())
    assert fp.energy_uj("intel-rapl:0") < 100_000_000  # package-1 wrapped during the run
    assert out["machine_energy_j"]["cpu"] == pytest.approx(200.0, abs=1e-4)
    assert out["machine_energy_j"]["dram"] == pytest.approx(50.0, abs=1e-4)
    assert out["energy_j"]["total"] == pytest.approx(250.0, abs=1e-4)
    assert out["co2e_g"] == pytest.approx(250.0 * 1.2 / 3.6e6 * 44.18, rel=1e-6)
    methods = {(s["domain"], s["name"], s["method"]) for s in out["sensors"]}
    assert methods == {
        ("cpu", "package-0", "measured"),
        ("cpu", "package-1", "measured"),
        ("dram", "package-0/dram", "measured"),
        ("dram", "package-1/dram", "measured"),
    }
    assert out["warnings"] == []


def test_tree_scope_charges_a_share_and_keeps_machine_energy(cw, tmp_path: Path) -> None:
    sysfs = tmp_path / "sys"
    fp = fakes.amd_epyc(sysfs)
    rec = tmp_path / "r.json"
    # The tree keeps one thread busy while the "hardware" adds 100 J over about a second; /proc counts CPU
    # time in 10 ms ticks, so a mostly idle tree could round to no share at all in a 0.05 s interval.
    burn = f"{sys.executable} -c 'import time\nend = time.time() + 1.6\nwhile time.time() < end: pass'"
    advance = shlex.join(fakes.advance_command({fp.zone_dir("intel-rapl:0"): 100.0}))
    r = cw("-q", "--sysfs", str(sysfs), "-i", "0.05", "-o", str(rec), "--", "sh", "-c", f"{burn} & {advance}; wait")
    assert r.returncode == 0, r.stderr
    out = json.loads(rec.read_text())
    assert out["machine_energy_j"]["cpu"] == pytest.approx(100.0, abs=1e-4)
    assert out["warnings"] == []
    # The fake package is still between its steps: the lowest power seen is 0 W, below the model's idle, so
    # all of the energy is power above idle, charged by the tree's share of the machine's busy time (which
    # depends on what else runs here; the formula itself is checked on exact numbers above).
    assert out["idle_w"] == {"cpu": {"w": 0.0, "source": "lowest seen"}}
    assert 0 < out["energy_j"]["cpu"] <= 100.0 + 1e-6
    dram = [s for s in out["sensors"] if s["domain"] == "dram"]
    assert dram[0]["method"] == "estimated" and "no RAPL dram zone" in dram[0]["detail"]


def test_baseline_is_measured_and_recorded(cw, tmp_path: Path) -> None:
    rec = tmp_path / "r.json"
    r = cw("-q", "--baseline", "0.3", "-o", str(rec), "--", "true")
    assert r.returncode == 0
    out = json.loads(rec.read_text())
    assert out["baseline_w"]["cpu"] > 0 and out["baseline_w"]["dram"] > 0


def test_baseline_is_the_idle_power_charged_with(cw, tmp_path: Path) -> None:
    # The fake package is still during the baseline (0 W): the record says the charge used that figure.
    sysfs = tmp_path / "sys"
    fp = fakes.amd_epyc(sysfs)
    rec = tmp_path / "r.json"
    advance = fakes.advance_command({fp.zone_dir("intel-rapl:0"): 100.0})
    r = cw("-q", "--sysfs", str(sysfs), "-i", "0.05", "--baseline", "0.3", "-o", str(rec), "--", *advance)
    assert r.returncode == 0, r.stderr
    out = json.loads(rec.read_text())
    assert out["machine_energy_j"]["cpu"] == pytest.approx(100.0, abs=1e-4)
    assert out["baseline_w"]["cpu"] == 0.0
    assert out["idle_w"]["cpu"] == {"w": 0.0, "source": "baseline"}
    assert 0 < out["energy_j"]["cpu"] <= 100.0 + 1e-6


def test_a_gpu_is_shared_by_sm_utilisation_then_by_an_equal_split() -> None:
    # The tree (pids 1, 2) and another job (9) on one device.
    assert attribution.device_share({1: 30.0, 2: 10.0, 9: 40.0}, {1, 2}, {1, 2, 9}) == pytest.approx(0.5)
    assert attribution.device_share({}, {1, 2}, {1, 2, 9}) == pytest.approx(2 / 3)  # no samples this interval
    assert attribution.device_share({9: 0.0}, {1}, {1, 9}) == pytest.approx(0.5)  # only idle samples
    assert attribution.device_share({}, {1}, set()) == 0.0  # nobody on the device
    assert attribution.holder_share({1, 9, 10, 11}, {1, 2}) == pytest.approx(0.25)
    assert attribution.holder_share(set(), {1}) == 0.0
