"""The NVML sensor and GPU charging, in process, on the fake NVML module and a /proc of real files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from carbonwrap.meter import Meter
from carbonwrap.model import TreeUsage
from carbonwrap.sensors import nvidia_driver_present, open_gpu, take_notes
from carbonwrap.sensors.nvml import NvmlSensor
from carbonwrap.summarise import gpu_entries
from tests import fakes

TREE = 4242  # the command
CHILD = 4243  # one of its descendants
FOREIGN = 777  # another user's training job on the same machine
IDLE = TreeUsage(cpu_s=0.0, rss_bytes=0, reaped_peak_rss_bytes=0, machine_busy_s=0.0, threads=2)


def _proc(tmp_path: Path, extra: dict[int, dict[str, Any]] | None = None) -> Path:
    procs: dict[int, dict[str, Any]] = {TREE: {}, CHILD: {}, FOREIGN: {}}
    procs.update(extra or {})
    return fakes.fake_proc(tmp_path / "proc", procs)


class Rig:
    """A sensor on a fake NVML, and a meter fed by it with a clock the test moves. `warnings` collects what
    the sensor noted, `events` what the meter did, as the session would."""

    def __init__(
        self, fake: ModuleType, proc: Path, tree: set[int], scope: str = "tree", idle_w: dict[str, float] | None = None
    ) -> None:
        self.fake = fake
        self.tree = tree
        self.sensor = NvmlSensor(fake, proc=proc)
        self.warnings: list[str] = take_notes([self.sensor])
        self.events: list[str] = []
        self.meter = Meter(scope, idle_w)
        self.t = 0.0
        self.meter.prime(self.read(), IDLE, 0.0)

    def read(self) -> Any:
        """The sensor's readings with the tree as the test set it, and whatever it noted meanwhile."""
        readings = self.sensor.read(replace(IDLE, pids=frozenset(self.tree)))
        self.warnings += take_notes([self.sensor])
        return readings

    def update(self, usage: TreeUsage, t: float) -> Any:
        sample = self.meter.update(self.read(), usage, t)
        self.events += [e.text for e in sample.events]
        return sample

    def device(self, i: int) -> Any:
        return self.fake._state["devices"][i]

    def step(self, dt: float = 1.0, **joules: float) -> Any:
        """Advance the named devices' counters (gpu0=J, ...) and take one sample `dt` later."""
        for name, j in joules.items():
            self.device(int(name[3:])).energy_mj += round(j * 1000)
        self.t += dt
        return self.update(IDLE, self.t)

    def entries(self) -> dict[int, dict[str, object]]:
        return {int(str(e["index"])): e for e in gpu_entries(self.sensor.devices(), self.meter.channel_j)}


def test_driver_probe_is_a_file_check(tmp_path: Path) -> None:
    assert not nvidia_driver_present(tmp_path)
    (tmp_path / "driver" / "nvidia").mkdir(parents=True)
    (tmp_path / "driver" / "nvidia" / "version").write_text("NVRM version: 550.54.15\n")
    assert nvidia_driver_present(tmp_path)


def test_no_gpu_opens_nothing_and_says_so_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fakes.fake_nvml([])
    monkeypatch.setitem(__import__("sys").modules, "pynvml", fake)
    warnings: list[str] = []
    assert open_gpu(forced=False, warnings=warnings) is None
    assert warnings == []
    assert open_gpu(forced=True, warnings=warnings) is None
    assert warnings == ["GPU: NVML works but lists no GPU; GPU energy is not measured"]
    assert fake._state["init"] == 0 and fake._state["shutdowns"] == 2


def test_nvml_that_cannot_start_is_a_warning_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fakes.fake_nvml([], init_error=12)  # NVML_ERROR_LIBRARY_NOT_FOUND
    monkeypatch.setitem(__import__("sys").modules, "pynvml", fake)
    warnings: list[str] = []
    assert open_gpu(forced=True, warnings=warnings) is None
    assert len(warnings) == 1
    assert "NVML could not start (NVML Shared Library Not Found)" in warnings[0]
    assert "libnvidia-ml.so.1" in warnings[0] and "LD_LIBRARY_PATH" in warnings[0]


def test_one_gpu_used_by_the_tree_alone(tmp_path: Path) -> None:
    fake = fakes.fake_nvml([{"name": "NVIDIA H100 80GB HBM3", "energy_mj": 9_000_000, "watts": 0.0}])
    rig = Rig(fake, _proc(tmp_path), {TREE})
    rig.device(0).processes = [TREE]
    rig.device(0).sm_util = {"*": 97}
    rig.device(0).instant_watts = 350.0  # the counter is moved by hand
    sample = rig.step(2.0, gpu0=700.0)
    assert sample.machine_j["gpu"] == pytest.approx(700.0)
    assert sample.charged_j["gpu"] == pytest.approx(700.0)
    assert sample.power_w["gpu"] == pytest.approx(350.0)  # the instant field, not the interval's mean
    rig.step(1.0, gpu0=300.0)
    e = rig.entries()[0]
    assert e["energy_j"] == pytest.approx(1000.0) and e["charged_j"] == pytest.approx(1000.0)
    assert e["method"] == "energy counter" and e["uuid"] == rig.device(0).uuid
    assert [i.method for i in rig.sensor.info] == ["measured"]
    assert rig.warnings == []
    rig.sensor.close()
    rig.sensor.close()
    assert fake._state["shutdowns"] == 1


def test_four_gpus_only_the_used_ones_are_charged(tmp_path: Path) -> None:
    fake = fakes.fake_nvml([{"name": "NVIDIA A100-SXM4-80GB", "energy_mj": 0, "mig": False} for _ in range(4)])
    rig = Rig(fake, _proc(tmp_path), {TREE, CHILD})
    rig.device(0).processes = [TREE]
    rig.device(1).processes = [FOREIGN]
    rig.device(2).processes = [CHILD]
    for i in range(4):
        rig.device(i).sm_util = {"*": 80}
    rig.step(1.0, gpu0=400.0, gpu1=390.0, gpu2=410.0, gpu3=60.0)
    rig.step(1.0, gpu0=400.0, gpu1=390.0, gpu2=410.0, gpu3=60.0)
    assert rig.meter.machine_j["gpu"] == pytest.approx(2 * 1260.0)
    assert rig.meter.charged_j["gpu"] == pytest.approx(2 * 810.0)
    e = rig.entries()
    assert [e[i]["charged_j"] for i in range(4)] == pytest.approx([800.0, 0.0, 820.0, 0.0])
    assert [e[i]["energy_j"] for i in range(4)] == pytest.approx([800.0, 780.0, 820.0, 120.0])


def test_scope_machine_charges_every_gpu_whole(tmp_path: Path) -> None:
    fake = fakes.fake_nvml([{"name": "NVIDIA L4", "energy_mj": 0}, {"name": "NVIDIA L4", "energy_mj": 0}])
    rig = Rig(fake, _proc(tmp_path), {TREE}, scope="machine")
    rig.device(1).processes = [FOREIGN]
    rig.step(1.0, gpu0=50.0, gpu1=70.0)
    assert rig.meter.charged_j["gpu"] == pytest.approx(120.0)


def test_an_idle_baseline_adds_nothing_to_a_gpu_the_tree_never_used(tmp_path: Path) -> None:
    # --baseline measured the GPUs' idle power too; GPU charging is by device share, not by CPU share.
    fake = fakes.fake_nvml([{"name": "NVIDIA L4", "energy_mj": 0}, {"name": "NVIDIA L4", "energy_mj": 0}])
    rig = Rig(fake, _proc(tmp_path), {TREE}, idle_w={"gpu": 40.0})
    rig.device(1).processes = [FOREIGN]
    busy = TreeUsage(cpu_s=2.0, rss_bytes=0, reaped_peak_rss_bytes=0, machine_busy_s=2.0, threads=2)
    rig.t = 1.0
    s = rig.update(busy, rig.t)  # the tree kept both CPUs busy
    assert s.machine_j["gpu"] == 0.0 and s.charged_j["gpu"] == 0.0
    rig.device(1).lost_after_s = -1.0  # and a device that stopped answering charges nothing either
    s = rig.update(busy, 2.0)
    assert s.charged_j["gpu"] == 0.0


def test_a_gpu_shared_with_a_foreign_process_is_split_by_sm_utilisation(tmp_path: Path) -> None:
    fake = fakes.fake_nvml([{"name": "NVIDIA H100 80GB HBM3", "energy_mj": 0}])
    rig = Rig(fake, _proc(tmp_path), {TREE, CHILD})
    d = rig.device(0)
    d.processes = [TREE, FOREIGN]
    d.graphics = [CHILD]
    d.sm_util = {str(TREE): 20, str(CHILD): 10, str(FOREIGN): 90}
    s = rig.step(1.0, gpu0=600.0)
    assert s.charged_j["gpu"] == pytest.approx(600.0 * 30 / 120)
    # No SM activity in the interval: an equal split among the processes on the device (2 of 3 are ours).
    d.sm_util = {"*": 0}
    s = rig.step(1.0, gpu0=300.0)
    assert s.charged_j["gpu"] == pytest.approx(200.0)
    # A driver without per-process utilisation: the same equal split.
    d.errors["nvmlDeviceGetProcessUtilization"] = fake.NVML_ERROR_NOT_SUPPORTED
    s = rig.step(1.0, gpu0=300.0)
    assert s.charged_j["gpu"] == pytest.approx(200.0)


def test_a_process_that_left_the_gpu_during_the_interval_still_counts(tmp_path: Path) -> None:
    fake = fakes.fake_nvml([{"name": "NVIDIA H100 80GB HBM3", "energy_mj": 0}])
    rig = Rig(fake, _proc(tmp_path), {TREE})
    rig.device(0).processes = [TREE, FOREIGN]
    rig.device(0).sm_util = {"*": 0}
    rig.step(1.0, gpu0=100.0)
    rig.device(0).processes = [FOREIGN]  # ours finished just before the read, and left the tree too
    rig.tree = set()
    s = rig.step(1.0, gpu0=100.0)
    assert s.charged_j["gpu"] == pytest.approx(50.0)
    s = rig.step(1.0, gpu0=100.0)  # a whole interval without it: nothing more
    assert s.charged_j["gpu"] == pytest.approx(0.0)


def test_pre_volta_gpu_integrates_power(tmp_path: Path) -> None:
    fake = fakes.fake_nvml([{"name": "Tesla P100-PCIE-16GB", "energy_mj": None, "watts": 100.0}])
    rig = Rig(fake, _proc(tmp_path), {TREE})
    rig.device(0).processes = [TREE]
    rig.device(0).watts = 300.0
    s = rig.step(2.0)
    assert s.machine_j["gpu"] == pytest.approx(2.0 * (100.0 + 300.0) / 2)  # trapezoid over the interval
    assert s.charged_j["gpu"] == pytest.approx(400.0)
    assert rig.entries()[0]["method"] == "integrated power"
    assert "integrated" in rig.sensor.info[0].detail and rig.sensor.info[0].method == "measured"


def test_energy_counter_refused_mid_run_switches_to_power(tmp_path: Path) -> None:
    fake = fakes.fake_nvml([{"name": "NVIDIA A10", "energy_mj": 0, "watts": 150.0}])
    rig = Rig(fake, _proc(tmp_path), {TREE})
    rig.device(0).processes = [TREE]
    rig.step(1.0, gpu0=150.0)
    rig.device(0).errors["nvmlDeviceGetTotalEnergyConsumption"] = fake.NVML_ERROR_NO_PERMISSION
    rig.step(1.0)  # the switch: this interval and the next are covered by the power reading
    rig.step(1.0)
    e = rig.entries()[0]
    assert e["method"] == "integrated power"
    # The counter also moves by itself at 150 W in the fake, for the milliseconds the test takes.
    assert e["energy_j"] == pytest.approx(150.0 * 3, rel=1e-3)
    assert any("energy counter refused mid-run (Insufficient Permissions)" in w for w in rig.warnings)


def test_a_gpu_lost_mid_run_degrades_and_the_run_goes_on(tmp_path: Path) -> None:
    fake = fakes.fake_nvml([{"name": "NVIDIA H100 80GB HBM3", "energy_mj": 0}, {"name": "NVIDIA H100 80GB HBM3"}])
    rig = Rig(fake, _proc(tmp_path), {TREE})
    rig.device(0).processes = [TREE]
    rig.device(1).processes = [TREE]
    rig.step(1.0, gpu0=500.0, gpu1=500.0)
    rig.device(0).lost_after_s = -1.0  # fell off the bus
    rig.step(1.0, gpu0=500.0, gpu1=500.0)
    rig.step(1.0, gpu0=500.0, gpu1=500.0)
    e = rig.entries()
    assert e[0]["energy_j"] == pytest.approx(500.0) and "GPU is lost" in str(e[0]["note"])
    assert e[1]["energy_j"] == pytest.approx(1500.0) and e[1]["note"] == ""
    assert sum("gpu gpu0: unreadable at 2.0 s (NVML: GPU is lost)" in w for w in rig.events) == 1
    rig.sensor.close()
    assert fake._state["shutdowns"] == 1


def test_driver_reloaded_mid_run_resets_the_counter_without_a_jump(tmp_path: Path) -> None:
    fake = fakes.fake_nvml([{"name": "NVIDIA H100 80GB HBM3", "energy_mj": 50_000_000}])
    rig = Rig(fake, _proc(tmp_path), {TREE})
    rig.device(0).processes = [TREE]
    rig.step(1.0, gpu0=400.0)
    rig.device(0).energy_mj = 1_000  # the module was reloaded: the counter starts again near zero
    rig.step(1.0)
    rig.step(1.0, gpu0=400.0)
    assert rig.meter.machine_j["gpu"] == pytest.approx(800.0)
    assert any("counter reset" in w for w in rig.events)


def test_no_process_information_charges_by_who_holds_the_device(tmp_path: Path) -> None:
    proc = _proc(
        tmp_path,
        {
            TREE: {"fds": ["/dev/nvidiactl", "/dev/nvidia0"]},
            CHILD: {"fds": ["/dev/nvidia1"]},
            FOREIGN: {"fds": ["/dev/nvidia1"]},
            900: {"fds": ["/dev/null"]},
        },
    )
    no_info = {
        "nvmlDeviceGetComputeRunningProcesses": 4,  # NVML_ERROR_NO_PERMISSION
        "nvmlDeviceGetGraphicsRunningProcesses": 4,
        "nvmlDeviceGetProcessUtilization": 3,  # NVML_ERROR_NOT_SUPPORTED
    }
    fake = fakes.fake_nvml([{"name": "NVIDIA A100", "energy_mj": 0, "errors": no_info} for _ in range(3)])
    rig = Rig(fake, proc, {TREE, CHILD})
    s = rig.step(1.0, gpu0=100.0, gpu1=100.0, gpu2=100.0)
    # gpu0 only ours, gpu1 ours and a foreign process's, gpu2 nobody's.
    assert s.charged_j["gpu"] == pytest.approx(100.0 + 50.0)
    e = rig.entries()
    assert [e[i]["charged_j"] for i in range(3)] == pytest.approx([100.0, 50.0, 0.0])
    assert any("GPU 0" in w and "whole device is charged" in w and "/dev/nvidia0" in w for w in rig.warnings)
    assert any("GPU 1" in w and "equal split" in w for w in rig.warnings)
    rig.step(1.0, gpu0=100.0)
    assert len(rig.warnings) == 2  # once per device, not once per sample


def test_mig_never_crashes_and_charges_per_device(tmp_path: Path) -> None:
    proc = _proc(tmp_path, {TREE: {"fds": ["/dev/nvidia0"]}})
    mig = {
        "name": "NVIDIA A100-SXM4-40GB",
        "energy_mj": 0,
        "mig": True,
        "errors": {"nvmlDeviceGetComputeRunningProcesses": 4, "nvmlDeviceGetProcessUtilization": 3},
    }
    fake = fakes.fake_nvml([mig])
    rig = Rig(fake, proc, {TREE})
    s = rig.step(1.0, gpu0=250.0)
    assert s.charged_j["gpu"] == pytest.approx(250.0)
    assert rig.entries()[0]["mig"] is True
    assert any("MIG mode" in w and "not per MIG instance" in w for w in rig.warnings)


def test_pids_of_a_nested_pid_namespace_map_through_nspid(tmp_path: Path) -> None:
    # The command entered its own PID namespace, where it is pid 7; this driver reports that pid.
    proc = _proc(tmp_path, {TREE: {"nspid": [TREE, 7]}})
    fake = fakes.fake_nvml([{"name": "NVIDIA H100 80GB HBM3", "energy_mj": 0}])
    rig = Rig(fake, proc, {TREE})
    rig.device(0).processes = [7, FOREIGN]
    rig.device(0).sm_util = {"7": 60, str(FOREIGN): 20}
    s = rig.step(1.0, gpu0=800.0)
    assert s.charged_j["gpu"] == pytest.approx(600.0)


def test_host_pids_seen_from_a_container_are_not_silently_zero(tmp_path: Path) -> None:
    # carbonwrap in a container with its own /proc: the driver speaks host pids it cannot see.
    proc = _proc(tmp_path, {TREE: {"fds": ["/dev/nvidia0"]}})
    fake = fakes.fake_nvml([{"name": "NVIDIA H100 80GB HBM3", "energy_mj": 0}])
    rig = Rig(fake, proc, {TREE})
    rig.device(0).processes = [912345, 912999]  # ours and a neighbour container's, by host pid
    s = rig.step(1.0, gpu0=800.0)
    assert s.charged_j["gpu"] == pytest.approx(400.0)
    assert any("own PID namespace" in w and "--pid=host" in w for w in rig.warnings)


def test_a_device_nvml_cannot_measure_at_all_is_left_out_with_a_warning(tmp_path: Path) -> None:
    broken = {"name": "GRID K520", "energy_mj": None, "errors": {"nvmlDeviceGetPowerUsage": 3}}
    fake = fakes.fake_nvml([broken, {"name": "NVIDIA T4", "energy_mj": 0}])
    rig = Rig(fake, _proc(tmp_path), {TREE})
    assert [g.info.index for g in rig.sensor.gpus] == [1]
    assert any("GPU 0: cannot be measured (Not Supported)" in w for w in rig.warnings)


def test_any_exception_from_one_device_degrades_that_device_only(tmp_path: Path) -> None:
    # nvidia-ml-py's NVMLLibraryMismatchError is no NVMLError; nor is whatever a broken binding raises.
    fake = fakes.fake_nvml([{"name": "NVIDIA A100", "energy_mj": 0}, {"name": "NVIDIA A100", "energy_mj": 0}])
    rig = Rig(fake, _proc(tmp_path), {TREE})
    rig.device(0).processes = [TREE]
    rig.device(1).processes = [TREE]
    real = fake.nvmlDeviceGetTotalEnergyConsumption

    def energy(handle: Any) -> int:
        if handle is rig.device(0):
            raise RuntimeError("binding broke")
        return int(real(handle))

    fake.nvmlDeviceGetTotalEnergyConsumption = energy
    rig.step(1.0, gpu0=100.0, gpu1=100.0)
    e = rig.entries()
    assert "binding broke" in str(e[0]["note"]) and e[1]["energy_j"] == pytest.approx(100.0)


def test_carbonwrap_itself_is_never_a_holder_of_the_device(tmp_path: Path) -> None:
    # NVML keeps /dev/nvidia0 open in the process that called nvmlInit: carbonwrap, not the command.
    me = __import__("os").getpid()
    proc = _proc(tmp_path, {TREE: {"fds": ["/dev/nvidia0"]}, me: {"fds": ["/dev/nvidiactl", "/dev/nvidia0"]}})
    denied = {"nvmlDeviceGetComputeRunningProcesses": 4, "nvmlDeviceGetProcessUtilization": 3}
    fake = fakes.fake_nvml([{"name": "NVIDIA A100", "energy_mj": 0, "errors": denied}])
    rig = Rig(fake, proc, {TREE})
    s = rig.step(1.0, gpu0=100.0)
    assert s.charged_j["gpu"] == pytest.approx(100.0)


def test_the_last_sm_distribution_is_carried_forward(tmp_path: Path) -> None:
    fake = fakes.fake_nvml([{"name": "NVIDIA H100 80GB HBM3", "energy_mj": 0}])
    rig = Rig(fake, _proc(tmp_path), {TREE})
    d = rig.device(0)
    d.processes = [TREE, FOREIGN]
    d.sm_util = {str(TREE): 25, str(FOREIGN): 75}
    assert rig.step(1.0, gpu0=100.0).charged_j["gpu"] == pytest.approx(25.0)
    d.errors["nvmlDeviceGetProcessUtilization"] = fake.NVML_ERROR_NOT_FOUND  # no fresh sample
    assert rig.step(1.0, gpu0=100.0).charged_j["gpu"] == pytest.approx(25.0)
