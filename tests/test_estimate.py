"""The estimate fallback: CPU matching from /proc/cpuinfo, the power formula, --cpu-watts, labels."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import psutil
import pytest

from carbonwrap.sensors.estimate import DRAM_W_PER_GB, EstimateSensor, load_model, microarchitecture


def cpuinfo(vendor: str, family: int, model: int, name: str = "x", stepping: int = 1) -> str:
    return (
        f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
        f"model name\t: {name}\nstepping\t: {stepping}\n\nprocessor\t: 1\nvendor_id\t: other\n"
    )


@pytest.mark.parametrize(
    ("vendor", "family", "model", "stepping", "row"),
    [
        ("AuthenticAMD", 25, 1, 1, "EPYC 3rd gen (Zen 3)"),  # Milan
        ("AuthenticAMD", 25, 0x11, 1, "EPYC 3rd gen (Zen 3)"),  # Genoa: Zen 4, nearest row
        ("AuthenticAMD", 26, 2, 0, "EPYC 3rd gen (Zen 3)"),  # Zen 5, like this project's VMs
        ("AuthenticAMD", 23, 0x31, 0, "EPYC 2nd gen (Zen 2)"),  # Rome
        ("AuthenticAMD", 23, 1, 2, "EPYC 1st gen (Zen)"),  # Naples
        ("GenuineIntel", 6, 0x55, 4, "Skylake"),
        ("GenuineIntel", 6, 0x55, 7, "Cascade Lake"),
        ("GenuineIntel", 6, 0x4F, 1, "Broadwell"),
        ("GenuineIntel", 6, 0x3F, 2, "Haswell"),
        ("GenuineIntel", 6, 0x2D, 7, "Sandy Bridge"),
        ("GenuineIntel", 6, 0x3E, 4, "Ivy Bridge"),
        ("GenuineIntel", 6, 0x9E, 10, "Coffee Lake"),
        ("GenuineIntel", 6, 0x8F, 8, "(median of all)"),  # Sapphire Rapids: not in the table
    ],
)
def test_microarchitecture_matching(vendor: str, family: int, model: int, stepping: int, row: str) -> None:
    info = {"vendor_id": vendor, "cpu family": str(family), "model": str(model), "stepping": str(stepping)}
    assert microarchitecture(info)[0] == row


def test_this_vms_amd_epyc_with_a_bare_model_name() -> None:
    m = load_model(cpuinfo("AuthenticAMD", 26, 2, "AMD EPYC"))
    assert (m.microarchitecture, m.idle_w, m.max_w) == ("EPYC 3rd gen (Zen 3)", 0.45, 2.02)
    assert "AMD EPYC" in m.matched and "family 26" in m.matched and "nearest is Zen 3" in m.matched


def test_graviton_and_unknown() -> None:
    arm = "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n"
    assert load_model(arm).microarchitecture == "Graviton2"
    m = load_model("")
    assert m.microarchitecture == "(median of all)" and "median" in m.matched


def test_power_formula_and_labels(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text(cpuinfo("GenuineIntel", 6, 0x55, "Xeon", stepping=7))
    s = EstimateSensor(proc=tmp_path)
    n = psutil.cpu_count()
    assert s.cpu_power_w(0.0) == pytest.approx(n * 0.64)
    assert s.cpu_power_w(1.0) == pytest.approx(n * 3.97)
    assert s.cpu_power_w(0.5) == pytest.approx(n * (0.64 + 0.5 * (3.97 - 0.64)))
    assert all(i.method == "estimated" for i in s.info)
    assert "Cascade Lake" in s.info[0].detail and "Xeon" in s.info[0].detail
    readings = {r.domain: r for r in s.read()}
    vm = psutil.virtual_memory()
    assert readings["dram"].power_w == pytest.approx((vm.total - vm.available) / 1e9 * DRAM_W_PER_GB, rel=0.05)


def test_cpu_watts_override_end_to_end(cw, tmp_path: Path) -> None:
    # With IDLE = MAX the modelled machine power is threads x 1.5 W whatever the load: an exact check.
    rec = tmp_path / "r.json"
    r = cw("-q", "--cpu-watts", "1.5:1.5", "--scope", "machine", "-o", str(rec), "--", "sleep", "1")
    assert r.returncode == 0
    d = json.loads(rec.read_text())
    expected = psutil.cpu_count() * 1.5 * d["duration_s"]
    assert d["machine_energy_j"]["cpu"] == pytest.approx(expected, rel=0.01)
    cpu = next(s for s in d["sensors"] if s["domain"] == "cpu")
    assert cpu["method"] == "estimated" and "--cpu-watts 1.5:1.5" in cpu["detail"]


def test_estimated_domains_are_labelled_in_record_csv_and_summary(cw, tmp_path: Path) -> None:
    csv_path = tmp_path / "r.csv"
    r = cw("-o", str(csv_path), "--", "true")
    (cells,) = list(csv.DictReader(csv_path.open()))
    assert cells["method_cpu"] == "estimated" and cells["method_dram"] == "estimated"
    summary = r.stderr.decode()
    assert "cpu " in summary and summary.count("estimated") >= 4
