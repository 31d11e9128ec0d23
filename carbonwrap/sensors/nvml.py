"""NVIDIA GPUs through NVML (nvidia-ml-py's `pynvml`). The only module that touches pynvml, and lazily.

The module is a parameter (`NvmlSensor(nvml, ...)`), so tests hand in a fake with the real names and units.
NVML reports energy in millijoules and power in milliwatts; they become joules and watts here and nowhere else.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from carbonwrap.model import Device as GpuDevice
from carbonwrap.model import Reading, SensorInfo

# From nvml.h. Read off the module where it has them, so a fake or a newer binding decides.
_NOT_SUPPORTED, _NO_PERMISSION, _NOT_FOUND = 3, 4, 6
_FI_DEV_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT, driver 530 and newer
_MIG_ENABLE = 1  # NVML_DEVICE_MIG_ENABLE


def load() -> ModuleType:
    """Import pynvml; raises ImportError where nvidia-ml-py is not installed."""
    return importlib.import_module("pynvml")


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
                nvml.nvmlDeviceGetComputeRunningProcesses(h)
                procs = ""
            except nvml.NVMLError as e:
                procs = str(e)
            devices.append(Device(i, _text(nvml.nvmlDeviceGetName(h)), ok, why, procs, _mig(nvml, h)))
        return _text(nvml.nvmlSystemGetDriverVersion()), devices
    finally:
        nvml.nvmlShutdown()


def _mig(nvml: ModuleType, handle: Any) -> bool:
    """Whether the device is in MIG mode now; False for pre-Ampere GPUs and bindings without MIG."""
    try:
        return bool(nvml.nvmlDeviceGetMigMode(handle)[0] == getattr(nvml, "NVML_DEVICE_MIG_ENABLE", _MIG_ENABLE))
    except (nvml.NVMLError, AttributeError):
        return False


def init_error_hint(code: int | None) -> str:
    """What to do when nvmlInit fails, by NVML's return code."""
    hints = {
        9: "the NVIDIA kernel module is not loaded: check 'nvidia-smi', or load it with 'sudo modprobe nvidia'",
        12: "libnvidia-ml.so.1 was not found: install the NVIDIA driver, or add its library directory to "
        "LD_LIBRARY_PATH (in a container, run it with the NVIDIA container toolkit, e.g. 'docker run --gpus all')",
        4: "no permission to open /dev/nvidia*: add the user to the group that owns them (often 'video')",
    }
    return hints.get(code or 0, "run 'carbonwrap doctor' for details")


class _Gpu:
    """What the sensor keeps about one device between reads."""

    def __init__(self, info: GpuDevice, handle: Any, minor: int | None, since_us: int) -> None:
        self.info = info
        self.handle = handle
        self.minor = minor
        self.counter = info.method == "energy counter"
        self.instant_field = True  # until the driver says it has no instant power field
        self.last_power_w: float | None = None
        self.last_seen_us = since_us  # utilisation samples older than this were counted already
        self.prev_users: set[int] = set()
        self.warned: set[str] = set()


class NvmlSensor:
    """GPU energy per device, and the tree's share of each, from NVML.

    `tree` returns the pids of the command's process tree as last scanned. Everything that goes wrong with
    one device after the start (lost, driver reloaded, a call refused) degrades that device with a warning
    appended to `warnings`; the run goes on.
    """

    def __init__(
        self,
        nvml: ModuleType,
        tree: Callable[[], Collection[int]],
        warnings: list[str],
        proc: Path = Path("/proc"),
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.nvml = nvml
        self.tree = tree
        self.warnings = warnings
        self.proc = proc
        self._closed = False
        self._tree_before: set[int] = set()
        nvml.nvmlInit()  # raises the module's NVMLError: nothing to shut down then
        try:
            self.driver = _text(nvml.nvmlSystemGetDriverVersion())
            since = int(wall() * 1e6)  # NVML stamps utilisation samples in microseconds of CPU wall time
            self.gpus: list[_Gpu] = []
            for i in range(nvml.nvmlDeviceGetCount()):
                try:
                    self.gpus.append(self._open(i, since))
                except nvml.NVMLError as e:
                    warnings.append(
                        f"GPU {i}: cannot be measured ({e}): it has neither an energy counter nor "
                        "a power reading NVML will give; its energy is not in the totals"
                    )
        except BaseException:
            nvml.nvmlShutdown()
            raise

    def _code(self, name: str, default: int) -> int:
        return int(getattr(self.nvml, name, default))

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
        except (nvml.NVMLError, AttributeError):
            minor = None
        if mig:
            self.warnings.append(
                f"GPU {index} ({name}) is in MIG mode: carbonwrap measures the whole GPU and charges per device, "
                "not per MIG instance"
            )
        info = GpuDevice(index, name, uuid, f"gpu{index}", method, mig)
        return _Gpu(info, h, minor, since_us)

    @property
    def info(self) -> Sequence[SensorInfo]:
        out = []
        for g in self.gpus:
            if g.counter:
                how = "NVML total energy counter (nvmlDeviceGetTotalEnergyConsumption), differenced each interval"
            else:
                how = "NVML power (nvmlDeviceGetPowerUsage) integrated over each interval: no energy counter"
            out.append(SensorInfo("gpu", g.info.channel, "measured", f"{g.info.name}: {how}; driver {self.driver}"))
        return out

    def devices(self) -> list[GpuDevice]:
        """The devices as they stand now (a method switched or a note added mid-run shows here)."""
        return [g.info for g in self.gpus]

    def read(self) -> Sequence[Reading]:
        tree = set(self.tree())
        # A process seen in the tree at the previous scan may have finished with the GPU since.
        members = tree | self._tree_before
        self._tree_before = tree
        holders: dict[int, set[int]] | None = None
        out = []
        for g in self.gpus:
            try:
                reading = self._read(g)
                share, fallback = self._share(g, members)
                if fallback:
                    if holders is None:
                        holders = self._holders()
                    share = self._share_by_holders(g, members, holders)
                out.append(replace(reading, share=share))
            except self.nvml.NVMLError as e:
                # The meter's warning says when; the device's entry in the record says why.
                g.info = replace(g.info, note=f"stopped answering during the run ({e}): energy until then")
                # share 0: nothing of this device is charged by CPU share instead (nor its idle power).
                out.append(Reading("gpu", g.info.channel, share=0.0, error=f"NVML: {e}"))
        return out

    def _read(self, g: _Gpu) -> Reading:
        nvml = self.nvml
        if g.counter:
            try:
                energy_mj = nvml.nvmlDeviceGetTotalEnergyConsumption(g.handle)
                return Reading("gpu", g.info.channel, energy_j=energy_mj / 1000.0, power_now_w=self._power_now(g))
            except nvml.NVMLError as e:
                if e.value not in (
                    self._code("NVML_ERROR_NOT_SUPPORTED", _NOT_SUPPORTED),
                    self._code("NVML_ERROR_NO_PERMISSION", _NO_PERMISSION),
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
            except (nvml.NVMLError, AttributeError, IndexError):
                pass
            g.instant_field = False
        try:
            return float(nvml.nvmlDeviceGetPowerUsage(g.handle)) / 1000.0
        except nvml.NVMLError:
            return None  # the live view shows the interval's mean instead

    def _processes(self, g: _Gpu) -> set[int] | None:
        """Pids with a compute or graphics context on the device; None where the driver won't list compute
        processes (MIG without privileges, some vGPUs): an empty graphics list then says nothing."""
        nvml = self.nvml
        lost = self._code("NVML_ERROR_GPU_IS_LOST", 15)
        try:
            pids = {int(p.pid) for p in nvml.nvmlDeviceGetComputeRunningProcesses(g.handle)}
        except nvml.NVMLError as e:
            if e.value == lost:
                raise
            return None
        try:
            pids.update(int(p.pid) for p in nvml.nvmlDeviceGetGraphicsRunningProcesses(g.handle))
        except nvml.NVMLError as e:
            if e.value == lost:
                raise
        return pids

    def _utilisation(self, g: _Gpu) -> dict[int, float] | None:
        """SM utilisation summed per pid over the samples since the last read; None where unsupported."""
        nvml = self.nvml
        try:
            samples = nvml.nvmlDeviceGetProcessUtilization(g.handle, g.last_seen_us)
        except nvml.NVMLError as e:
            if e.value in (self._code("NVML_ERROR_NOT_FOUND", _NOT_FOUND), 0):
                return {}  # no sample since the last read
            if e.value == self._code("NVML_ERROR_GPU_IS_LOST", 15):
                raise
            return None
        sm: dict[int, float] = {}
        for s in samples:
            if s.timeStamp > g.last_seen_us:
                g.last_seen_us = int(s.timeStamp)
            sm[int(s.pid)] = sm.get(int(s.pid), 0.0) + float(s.smUtil)
        return sm

    def _share(self, g: _Gpu, members: set[int]) -> tuple[float, bool]:
        """(the tree's share of the interval, whether process information was missing)."""
        procs = self._processes(g)
        sm = self._utilisation(g)
        if procs is None and not sm:
            return 0.0, True
        users = (procs or set()) | g.prev_users
        g.prev_users = procs or set()
        known = users | set(sm or {})
        mine = self._match(known, members)
        if not mine and members and known:
            unmatched = {p for p in known if not (self.proc / str(p)).exists()}
            held = self._tree_holding(members, g.minor) if unmatched else 0
            if held:
                # The tree holds the device open, yet none of the driver's pids is ours: the driver speaks host
                # pids into a container's PID namespace. Count the tree's holders among the device's processes.
                self._note(
                    g,
                    "pidns",
                    f"NVML reports pids ({', '.join(str(p) for p in sorted(unmatched)[:5])}) that this /proc does "
                    "not show while the command holds the device open: carbonwrap seems to run in a container with "
                    "its own PID namespace. Charged by an equal split among the device's processes; run the "
                    "container with --pid=host for utilisation shares",
                )
                return min(1.0, held / max(len(users), 1)), False
        # Samples count only for pids the process list knows, or the tree's: some drivers list processes in
        # the caller's PID namespace but stamp samples with host pids, and those cannot be told apart.
        usable = {p: v for p, v in (sm or {}).items() if procs is None or p in users or p in mine}
        total = sum(usable.values())
        if total > 0:
            return sum(v for p, v in usable.items() if p in mine) / total, False
        if users:
            return len(users & mine) / len(users), False  # no samples: an equal split among its processes
        return 0.0, False  # nobody on the device: the tree did not use it

    def _match(self, pids: set[int], members: set[int]) -> set[int]:
        """The pids in `pids` that belong to the tree, directly or through NSpid (a process in a nested PID
        namespace is known by one pid per namespace; the driver may use any one of them)."""
        mine = pids & members
        rest = pids - members
        if not rest:
            return mine
        for pid in members:
            for alias in _nspids(self.proc, pid)[1:]:
                # An inner pid that is also a live pid here would be ambiguous: it is not taken.
                if alias in rest and not (self.proc / str(alias)).exists():
                    mine.add(alias)
        return mine

    def _tree_holding(self, members: set[int], minor: int | None) -> int:
        """How many of the tree's processes hold /dev/nvidiaN open."""
        if minor is None:
            return 0
        node = f"/dev/nvidia{minor}"
        return sum(1 for pid in members if node in _open_files(self.proc, pid))

    def _holders(self) -> dict[int, set[int]]:
        """Which pids hold each /dev/nvidiaN open, for devices whose driver won't list processes."""
        wanted = {f"/dev/nvidia{g.minor}": g.minor for g in self.gpus if g.minor is not None}
        out: dict[int, set[int]] = {m: set() for m in wanted.values()}
        for name in os.listdir(self.proc):
            if name.isdigit():
                for path in _open_files(self.proc, int(name)) & wanted.keys():
                    out[wanted[path]].add(int(name))
        return out

    def _share_by_holders(self, g: _Gpu, members: set[int], holders: dict[int, set[int]]) -> float:
        """No process information from the driver: decide from who holds the device node open."""
        if g.minor is None:
            self._note(
                g,
                "noinfo",
                "no process information and no device number: the whole device is charged, and it may include "
                "other processes",
            )
            return 1.0 if members else 0.0
        node = f"/dev/nvidia{g.minor}"
        held = holders.get(g.minor, set())
        mine, others = held & members, held - members
        unseen = "" if os.geteuid() == 0 else " (other users' processes are visible only to root)"
        if not mine:
            return 0.0
        if not others:
            self._note(
                g,
                "noinfo",
                "no process information from the driver: the whole device is charged, as no other process was "
                f"seen holding {node} open{unseen}",
            )
            return 1.0
        self._note(
            g,
            "noinfo-split",
            f"no process information from the driver: charged by an equal split among the processes holding "
            f"{node} open{unseen}",
        )
        return len(mine) / len(held)

    def _note(self, g: _Gpu, key: str, text: str) -> None:
        """A warning for the record, once per device and kind; the device's own note keeps the latest."""
        g.info = replace(g.info, note=text)
        if key not in g.warned:
            g.warned.add(key)
            self.warnings.append(f"GPU {g.info.index} ({g.info.name}): {text}")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.nvml.nvmlShutdown()


def _nspids(proc: Path, pid: int) -> list[int]:
    """The pid in each PID namespace it belongs to, outermost first (NSpid in /proc/PID/status, Linux 4.1+)."""
    try:
        with open(proc / str(pid) / "status", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return [int(v) for v in line.split()[1:]]
    except (OSError, ValueError):
        pass
    return [pid]


def _open_files(proc: Path, pid: int) -> set[str]:
    """What a process's descriptors point at; empty when it is gone or not ours to look at."""
    fd_dir = proc / str(pid) / "fd"
    out = set()
    try:
        for fd in os.listdir(fd_dir):
            try:
                out.add(os.readlink(fd_dir / fd))
            except OSError:
                continue  # closed between listdir and readlink
    except OSError:
        pass  # gone, or another user's: only root sees its descriptors
    return out
