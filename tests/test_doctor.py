"""`carbonwrap doctor` on the powercap fixtures, with an unreadable counter, on an empty tree, and here."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from carbonwrap import doctor
from carbonwrap.model import Intensity
from tests import fakes

FR = Intensity("FR", "France", 44.18, 2024, "Ember", "flag")
HERE = Path(__file__).resolve().parent


def _by_topic(findings: list[doctor.Finding]) -> dict[str, doctor.Finding]:
    return {f.topic: f for f in findings}


def test_intel_server_is_fully_measured(tmp_path: Path) -> None:
    fakes.intel_server(tmp_path)
    f = doctor.diagnose(sysfs=tmp_path, intensity=FR, container=False)
    t = _by_topic(f)
    assert t["cpu"].status == "measured" and t["dram"].status == "measured"
    assert "package-1 (intel-rapl:0): readable" in t["cpu"].details
    assert t["gpu"].status == "absent"
    assert doctor.exit_status(f) == 0


def test_unreadable_counter_gets_the_group_fix(tmp_path: Path) -> None:
    fakes.intel_server(tmp_path)

    def root_only(path: Path) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return path.read_text()

    f = doctor.diagnose(sysfs=tmp_path, intensity=FR, reader=root_only, container=False)
    cpu = _by_topic(f)["cpu"]
    assert cpu.status == "unreadable"
    assert any("root only" in d and "CVE-2020-8694" in d for d in cpu.details)
    fix = "\n".join(cpu.fix)
    assert "groupadd --system powercap" in fix and "udev/rules.d" in fix and "chmod 0440" in fix
    assert "a+r" not in fix  # never readable by everyone
    assert doctor.exit_status(f) == 1


def test_amd_without_dram_zone_estimates_dram(tmp_path: Path) -> None:
    fakes.amd_epyc(tmp_path)
    t = _by_topic(doctor.diagnose(sysfs=tmp_path, intensity=FR, container=False))
    assert t["cpu"].status == "measured" and t["dram"].status == "estimated"


def test_empty_tree_in_a_container_suggests_the_host_mount(tmp_path: Path) -> None:
    fakes.empty(tmp_path)
    f = doctor.diagnose(sysfs=tmp_path, intensity=FR, container=True)
    t = _by_topic(f)
    assert t["cpu"].status == "estimated" and "matched from /proc/cpuinfo" in t["cpu"].details[1]
    assert any("-v /sys:/host/sys:ro" in c and "--sysfs /host/sys" in c for c in t["powercap"].fix)
    assert doctor.exit_status(f) == 1


def test_gpu_lines_with_a_driver(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "driver" / "nvidia").mkdir(parents=True)
    (proc / "driver" / "nvidia" / "version").write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15\n")
    (proc / "cpuinfo").write_text("")
    (proc / "stat").write_text("cpu  1 0 1 100 0 0 0 0 0 0\n")
    fake = fakes.fake_nvml(
        [
            {
                "name": "NVIDIA H100 80GB HBM3",
                "energy_mj": 5,
                "mig": True,
                "errors": {"nvmlDeviceGetComputeRunningProcesses": 4},
            },
            {"name": "Tesla P100", "energy_mj": None},
        ]
    )
    fakes.empty(tmp_path / "sys")
    f = doctor.diagnose(sysfs=tmp_path / "sys", intensity=FR, proc=proc, load_nvml=lambda: fake, container=False)
    gpu = _by_topic(f)["gpu"]
    text = "\n".join(gpu.details)
    assert "550.54.15" in text
    assert "GPU 0: NVIDIA H100 80GB HBM3: energy counter" in text
    assert "processes not listed (Insufficient Permissions)" in text and "MIG mode" in text
    assert (
        "GPU 1: Tesla P100: no energy counter (Not Supported): power is integrated over each interval; processes listed"
        in text
    )
    assert gpu.status == "measured" and gpu.summary == "NVML: 2 GPU(s) measured"
    assert fake._state["init"] == 0  # nvmlShutdown was called
    none = fakes.fake_nvml([])
    f = doctor.diagnose(sysfs=tmp_path / "sys", intensity=FR, proc=proc, load_nvml=lambda: none, container=False)
    assert _by_topic(f)["gpu"].status == "absent" and "lists no GPU" in _by_topic(f)["gpu"].summary


def test_gpu_driver_without_library(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "driver" / "nvidia").mkdir(parents=True)
    (proc / "driver" / "nvidia" / "version").write_text("NVRM version: 550\n")

    def missing() -> ModuleType:
        raise ImportError("libnvidia-ml.so.1: cannot open shared object file")

    gpu = doctor._gpu(proc, missing)
    assert gpu.status == "unreadable" and "libnvidia-ml.so.1" in gpu.summary
    assert any("nvidia-ml-py" in c for c in gpu.fix)


def test_doctor_on_this_machine_through_the_cli(cw, tmp_path: Path) -> None:
    r = cw("doctor", "--json", "--sysfs", str(fakes.empty(tmp_path)))
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["ok"] is False
    topics = {f["topic"]: f for f in out["findings"]}
    assert topics["cpu"]["status"] == "estimated" and topics["dram"]["status"] == "estimated"
    assert topics["region"]["status"] == "info"


def test_doctor_takes_options_given_before_it(cw, tmp_path: Path) -> None:
    fakes.intel_server(tmp_path)
    r = cw("--sysfs", str(tmp_path), "--region", "FR", "doctor")
    assert r.returncode == 0, r.stdout
    text = r.stdout.decode()
    assert "cpu       measured" in text and "FR France: 44.18 g/kWh" in text
    assert "every present domain is measured" in text
