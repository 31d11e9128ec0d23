"""NVIDIA GPUs through NVML (nvidia-ml-py's `pynvml`). The only module that imports pynvml, and lazily.

The module is a parameter (`NvmlSensor(nvml, ...)`), so tests hand in a fake with the real names and units.
NVML reports energy in millijoules and power in milliwatts; they become joules and watts here and nowhere else.
What a process list or a utilisation sample can be trusted for is in carbonwrap.sensors.gpu.queries.
"""

from __future__ import annotations

import importlib
import os
import time
import warnings as _warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from carbonwrap.model import Device as GpuDevice
from carbonwrap.model import Reading, SensorInfo, TreeUsage
from carbonwrap.sensors.gpu import procfs, queries
from carbonwrap.sensors.gpu.share import GpuState, Shares

_NOT_SUPPORTED, _NO_PERMISSION = 3, 4
_FI_DEV_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT, driver 530 and newer
_MIG_ENABLE = 1  # NVML_DEVICE_MIG_ENABLE
GH200_NOTE = (
    "on GH200 the energy counter covers the whole Grace Hopper module (CPU, GPU and memory), not the GPU alone: "
    "the cpu and dram domains count part of it again"
)


def load() -> ModuleType:
    """Import pynvml; raises ImportError where nvidia-ml-py is not installed.

    The deprecated `pynvml` package (13.x), installed beside nvidia-ml-py, warns on import: that warning is
    not the user's business, and never reaches their stderr.
    """
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", FutureWarning)
        return importlib.import_module("pynvml")


def binding(nvml: ModuleType) -> str:
    """'nvidia-ml-py VERSION (PATH)' for the record: which binding read the driver."""
    path = str(getattr(nvml, "__file__", "") or "?")
    version = str(getattr(nvml, "__version__", "") or "")
    if not version:
        from importlib import metadata

        try:
            dist = metadata.distribution("nvidia-ml-py")
            if os.path.realpath(str(dist.locate_file("pynvml.py"))) == os.path.realpath(path):
                version = dist.version
        except metadata.PackageNotFoundError:
            pass
    return f"nvidia-ml-py {version or '(version unknown)'} ({path})"


@dataclass(frozen=True, slots=True)
class Device:
    """What `carbonwrap doctor` says of one GPU."""

    index: int
    name: str
    energy_counter: bool  # nvmlDeviceGetTotalEnergyConsumption works (Volta and newer)
    why_not: str = ""  # NVML's reason when it does not
    processes: str = ""  # NVML's reason when it won't list the processes on the device; "" when it does
    mig: bool = False


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def describe(nvml: ModuleType) -> tuple[str, list[Device]]:
    """(driver version, devices) from an NVML module; nvmlShutdown is called whatever happens after init.

    Raises what nvmlInit raises (the module's NVMLError) when the library cannot be used.
    """
    nvml.nvmlInit()
    try:
        devices = []
        for i in range(nvml.nvmlDeviceGetCount()):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            try:
                nvml.nvmlDeviceGetTotalEnergyConsumption(h)
                ok, why = True, ""
            except nvml.NVMLError as e:
                ok, why = False, str(e)
            try:
                queries.pids(queries.versioned(nvml, "nvmlDeviceGetComputeRunningProcesses", h))
                procs = ""
            except Exception as e:
                procs = str(e) or type(e).__name__
            devices.append(Device(i, _text(nvml.nvmlDeviceGetName(h)), ok, why, procs, _mig(nvml, h)))
        return _text(nvml.nvmlSystemGetDriverVersion()), devices
    finally:
        nvml.nvmlShutdown()


def _mig(nvml: ModuleType, handle: Any) -> bool:
    """Whether the device is in MIG mode now; False for pre-Ampere GPUs and bindings without MIG."""
    try:
        return bool(nvml.nvmlDeviceGetMigMode(handle)[0] == getattr(nvml, "NVML_DEVICE_MIG_ENABLE", _MIG_ENABLE))
    except Exception:
        return False


def init_error_hint(code: int | None) -> str:
    """What to do when nvmlInit fails, by NVML's return code."""
    hints = {
        9: "the NVIDIA kernel module is not loaded: check 'nvidia-smi', or load it with 'sudo modprobe nvidia'",
        12: "libnvidia-ml.so.1 was not found: install the NVIDIA driver, or add its library directory to "
        "LD_LIBRARY_PATH (in a container, run it with the NVIDIA container toolkit, e.g. 'docker run --gpus all')",
        4: "no permission to open /dev/nvidia*: add the user to the group that owns them (often 'video')",
        18: "the NVIDIA driver was upgraded but the old kernel module is still loaded (library and kernel module "
        "versions differ): reboot, or unload and reload the nvidia kernel modules",
    }
    return hints.get(code or 0, "run 'carbonwrap doctor' for details")


class _Gpu(GpuState):
    """What the sensor keeps about one device between reads."""

    def __init__(self, info: GpuDevice, handle: Any, minor: int | None, since_us: int) -> None:
        super().__init__(info, minor, since_us)
        self.handle = handle
        self.counter = info.method == "energy counter"
        self.instant_field = True  # until the driver says it has no instant power field
        self.last_power_w: float | None = None


class NvmlSensor:
    """GPU energy per device, and the tree's share of each, from NVML.

    Anything that goes wrong with one device, at the start or after it (lost, driver reloaded, a call
    refused, a binding that does not match the driver), degrades that device with a line in `notes`, which
    the session takes after every read; the run goes on.
    """

    def __init__(
        self,
        nvml: ModuleType,
        proc: Path = Path("/proc"),
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.nvml = nvml
        self.notes: list[str] = []
        self.proc = proc
        self._closed = False
        self._tree_before: set[int] = set()
        self._reads = 0
        self.binding = binding(nvml)
        nvml.nvmlInit()  # raises the module's NVMLError: nothing to shut down then
        try:
            self.driver = _text(nvml.nvmlSystemGetDriverVersion())
            since = int(wall() * 1e6)  # NVML stamps utilisation samples in microseconds of CPU wall time
            self.gpus: list[_Gpu] = []
            for i in range(nvml.nvmlDeviceGetCount()):
                try:
                    self.gpus.append(self._open(i, since))
                except Exception as e:
                    self.notes.append(
                        f"GPU {i}: cannot be measured ({e or type(e).__name__}): it has neither an energy counter "
                        "nor a power reading NVML will give; its energy is not in the totals"
                    )
        except BaseException:
            nvml.nvmlShutdown()
            raise
        procfs.close_nvidia_fds_on_exec()
        self.shares = Shares(nvml, proc, self._note, os.getpid())

    def _open(self, index: int, since_us: int) -> _Gpu:
        nvml = self.nvml
        h = nvml.nvmlDeviceGetHandleByIndex(index)
        name = _text(nvml.nvmlDeviceGetName(h))
        try:
            uuid = _text(nvml.nvmlDeviceGetUUID(h))
        except nvml.NVMLError:
            uuid = ""
        try:
            nvml.nvmlDeviceGetTotalEnergyConsumption(h)
            method = "energy counter"
        except nvml.NVMLError:
            nvml.nvmlDeviceGetPowerUsage(h)  # neither: this raises, and the device is left out
            method = "integrated power"
        mig = _mig(nvml, h)
        try:
            minor: int | None = int(nvml.nvmlDeviceGetMinorNumber(h))
        except Exception:
            minor = None
        if mig:
            self.notes.append(
                f"GPU {index} ({name}) is in MIG mode: carbonwrap measures the whole GPU and charges per device, "
                "not per MIG instance"
            )
        info = GpuDevice(index, name, uuid, f"gpu{index}", method, mig, GH200_NOTE if "GH200" in name else "")
        return _Gpu(info, h, minor, since_us)

    @property
    def info(self) -> Sequence[SensorInfo]:
        out = []
        for g in self.gpus:
            if g.counter:
                how = "NVML total energy counter (nvmlDeviceGetTotalEnergyConsumption), differenced each interval"
            else:
                how = "NVML power (nvmlDeviceGetPowerUsage) integrated over each interval: no energy counter"
            gh = f"; {GH200_NOTE}" if "GH200" in g.info.name else ""
            detail = f"{g.info.name}: {how}; driver {self.driver}; {self.binding}{gh}"
            out.append(SensorInfo("gpu", g.info.channel, "measured", detail))
        return out

    def devices(self) -> list[GpuDevice]:
        """The devices as they stand now (a method switched or a note added mid-run shows here)."""
        return [g.info for g in self.gpus]

    def read(self, tree_usage: TreeUsage) -> Sequence[Reading]:
        tree = set(tree_usage.pids)
        # A process seen in the tree at the previous scan may have finished with the GPU since.
        members = tree | self._tree_before
        self._tree_before = tree
        if not self._reads:
            procfs.close_nvidia_fds_on_exec()  # again: a library may open a device's node at its first use
        self._reads += 1
        self.shares.start_read(self.gpus)
        out = []
        for g in self.gpus:
            try:
                reading = self._read(g)
                out.append(replace(reading, policy="own share", share=self.shares.share(g, g.handle, members)))
            except Exception as e:
                why = str(e) or type(e).__name__
                # The meter's warning says when; the device's entry in the record says why.
                g.info = replace(g.info, note=f"stopped answering during the run ({why}): energy until then")
                # share 0: nothing of this device is charged by CPU share instead (nor its idle power).
                out.append(Reading("gpu", g.info.channel, policy="own share", error=f"NVML: {why}"))
        return out

    def _read(self, g: _Gpu) -> Reading:
        nvml = self.nvml
        if g.counter:
            try:
                energy_mj = nvml.nvmlDeviceGetTotalEnergyConsumption(g.handle)
                return Reading("gpu", g.info.channel, energy_j=energy_mj / 1000.0, power_now_w=self._power_now(g))
            except nvml.NVMLError as e:
                if e.value not in (
                    queries.code(nvml, "NVML_ERROR_NOT_SUPPORTED", _NOT_SUPPORTED),
                    queries.code(nvml, "NVML_ERROR_NO_PERMISSION", _NO_PERMISSION),
                ):
                    raise
                g.counter = False
                g.info = replace(g.info, method="integrated power")
                self._note(g, "method", f"energy counter refused mid-run ({e}): power integrated from then on")
        watts = nvml.nvmlDeviceGetPowerUsage(g.handle) / 1000.0
        # The mean of the two ends of the interval (trapezoid rule); the first interval has only its end.
        mean = watts if g.last_power_w is None else (watts + g.last_power_w) / 2
        g.last_power_w = watts
        return Reading("gpu", g.info.channel, power_w=mean, power_now_w=watts)

    def _power_now(self, g: _Gpu) -> float | None:
        """Instant power for the live view: the instant field where the driver has it, else the power reading."""
        nvml = self.nvml
        if g.instant_field:
            try:
                field = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", _FI_DEV_POWER_INSTANT)
                v = nvml.nvmlDeviceGetFieldValues(g.handle, [field])[0]
                if v.nvmlReturn == 0:
                    return float(v.value.uiVal) / 1000.0
            except Exception:
                pass
            g.instant_field = False
        try:
            return float(nvml.nvmlDeviceGetPowerUsage(g.handle)) / 1000.0
        except nvml.NVMLError:
            return None  # the live view shows the interval's mean instead

    def _note(self, g: GpuState, key: str, text: str) -> None:
        """A warning for the record, once per device and kind; the device's own note keeps the latest."""
        g.info = replace(g.info, note=text)
        if key not in g.warned:
            g.warned.add(key)
            self.notes.append(f"GPU {g.info.index} ({g.info.name}): {text}")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.nvml.nvmlShutdown()
