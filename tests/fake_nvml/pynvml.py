"""A fake of nvidia-ml-py's `pynvml` with the real API's names, return types, units and error codes.

Energy is in millijoules, power in milliwatts and timestamps in microseconds, as NVML reports them. Devices
come from `configure()` or, for a subprocess that finds this module first on PYTHONPATH, from the JSON file
named by FAKE_NVML_CONFIG: {"driver": "550.54.15", "devices": [DEVICE, ...]}, where a DEVICE has

  name, uuid, minor            identity (minor: the N of /dev/nvidiaN)
  energy_mj                    the counter at nvmlInit; null for a pre-Volta GPU without one
  watts                        the counter advances at this power from nvmlInit; the power reading reports it
  instant_watts                what the instant power field reports (default: watts)
  processes, graphics          pids with a compute / graphics context on the device
  pid_file                     a file of pids, one per line, read at every call: processes that "opened" the
                               device while the fake runs (a wrapped child writes its own pid there)
  sm_util                      {"PID" or "*": percent}: each listed process's SM utilisation per sample
  mig                          true / false; absent: nvmlDeviceGetMigMode is not supported (pre-Ampere)
  instant_field                false: the instant power field reports NVML_ERROR_NOT_SUPPORTED
  errors                       {"nvmlDeviceGet...": code}: that call always fails with that code
  errors_after_s               {"nvmlDeviceGet...": [seconds, code]}: it fails from then on
  lost_after_s                 every call on the device fails with NVML_ERROR_GPU_IS_LOST from then on

"init_error": CODE at the top level makes nvmlInit fail with that code (no driver, no library).
FAKE_NVML_LOG, when set, names a file that gets "init T" and "shutdown T" lines (T: time.time()).
FAKE_NVML_IMPORT_LOG, when set, names a file that gets an "import T" line when this module is imported.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999

NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1
NVML_FI_DEV_POWER_INSTANT = 186
NVML_VALUE_TYPE_UNSIGNED_INT = 1

_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_INSUFFICIENT_SIZE: "Insufficient Size",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """As in pynvml: `value` holds the NVML return code; str() gives NVML's message."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML error {self.value}")


class _Struct:
    """Like pynvml's friendly objects: attributes named as the C struct's fields."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__})"


@dataclass
class _Device:
    index: int
    name: str
    uuid: str
    minor: int
    energy_mj: int | None
    watts: float
    processes: list[int]
    graphics: list[int] = field(default_factory=list)
    pid_file: str | None = None
    sm_util: dict[str, int] = field(default_factory=dict)
    mig: bool | None = None
    instant_field: bool = True
    instant_watts: float | None = None
    errors: dict[str, int] = field(default_factory=dict)
    errors_after_s: dict[str, list[float]] = field(default_factory=dict)
    lost_after_s: float | None = None


_state: dict[str, Any] = {"devices": [], "driver": "550.54.15", "init": 0, "t0": 0.0, "shutdowns": 0}


def configure(devices: list[dict[str, Any]], driver: str = "550.54.15", init_error: int | None = None) -> None:
    _state["devices"] = [
        _Device(
            index=i,
            name=d["name"],
            uuid=d.get("uuid", f"GPU-{i:08x}-0000-4000-8000-fakefakefake"),
            minor=d.get("minor", i),
            energy_mj=d.get("energy_mj", 0),
            watts=d.get("watts", 0.0),
            processes=list(d.get("processes", [])),
            graphics=list(d.get("graphics", [])),
            pid_file=d.get("pid_file"),
            sm_util=dict(d.get("sm_util", {})),
            mig=d.get("mig"),
            instant_field=d.get("instant_field", True),
            instant_watts=d.get("instant_watts"),
            errors=dict(d.get("errors", {})),
            errors_after_s=dict(d.get("errors_after_s", {})),
            lost_after_s=d.get("lost_after_s"),
        )
        for i, d in enumerate(devices)
    ]
    _state["driver"] = driver
    _state["init_error"] = init_error


def _load_env() -> None:
    path = os.environ.get("FAKE_NVML_CONFIG")
    if path:
        with open(path) as f:
            cfg = json.load(f)
        configure(cfg.get("devices", []), cfg.get("driver", "550.54.15"), cfg.get("init_error"))


_load_env()
if os.environ.get("FAKE_NVML_IMPORT_LOG"):
    with open(os.environ["FAKE_NVML_IMPORT_LOG"], "a") as _f:
        _f.write(f"import {time.time()!r}\n")


def _log(event: str) -> None:
    path = os.environ.get("FAKE_NVML_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{event} {time.time()!r}\n")


def _check() -> None:
    if _state["init"] <= 0:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)


def _elapsed() -> float:
    return time.monotonic() - _state["t0"]


def _dev(handle: Any, call: str) -> _Device:
    _check()
    if not isinstance(handle, _Device):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    if handle.lost_after_s is not None and _elapsed() > handle.lost_after_s:
        raise NVMLError(NVML_ERROR_GPU_IS_LOST)
    if call in handle.errors:
        raise NVMLError(handle.errors[call])
    after = handle.errors_after_s.get(call)
    if after is not None and _elapsed() > after[0]:
        raise NVMLError(int(after[1]))
    return handle


def nvmlInit() -> None:
    if _state.get("init_error") is not None:
        raise NVMLError(_state["init_error"])
    _state["init"] += 1
    _state["t0"] = time.monotonic()
    _log("init")


def nvmlShutdown() -> None:
    _check()
    _state["init"] -= 1
    _state["shutdowns"] += 1
    _log("shutdown")


def nvmlSystemGetDriverVersion() -> str:
    _check()
    return str(_state["driver"])


def nvmlDeviceGetCount() -> int:
    _check()
    return len(_state["devices"])


def nvmlDeviceGetHandleByIndex(index: int) -> _Device:
    _check()
    try:
        return _state["devices"][index]  # type: ignore[no-any-return]
    except IndexError:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT) from None


def nvmlDeviceGetName(handle: Any) -> str:
    return _dev(handle, "nvmlDeviceGetName").name


def nvmlDeviceGetUUID(handle: Any) -> str:
    return _dev(handle, "nvmlDeviceGetUUID").uuid


def nvmlDeviceGetMinorNumber(handle: Any) -> int:
    return _dev(handle, "nvmlDeviceGetMinorNumber").minor


def nvmlDeviceGetMigMode(handle: Any) -> list[int]:
    """[current, pending]; pre-Ampere GPUs answer NOT_SUPPORTED."""
    d = _dev(handle, "nvmlDeviceGetMigMode")
    if d.mig is None:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    mode = NVML_DEVICE_MIG_ENABLE if d.mig else NVML_DEVICE_MIG_DISABLE
    return [mode, mode]


def nvmlDeviceGetTotalEnergyConsumption(handle: Any) -> int:
    """Millijoules since the driver was loaded (Volta and newer)."""
    d = _dev(handle, "nvmlDeviceGetTotalEnergyConsumption")
    if d.energy_mj is None:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    return int(d.energy_mj + d.watts * _elapsed() * 1000)


def nvmlDeviceGetPowerUsage(handle: Any) -> int:
    """Milliwatts."""
    return int(_dev(handle, "nvmlDeviceGetPowerUsage").watts * 1000)


def nvmlDeviceGetFieldValues(handle: Any, fieldIds: list[int]) -> list[_Struct]:
    """One c_nvmlFieldValue_t per id; a field the device lacks has its own nvmlReturn set, the call succeeds."""
    d = _dev(handle, "nvmlDeviceGetFieldValues")
    out = []
    for fid in fieldIds:
        ok = fid == NVML_FI_DEV_POWER_INSTANT and d.instant_field
        out.append(
            _Struct(
                fieldId=fid,
                scopeId=0,
                timestamp=int(time.time() * 1e6),
                latencyUsec=0,
                valueType=NVML_VALUE_TYPE_UNSIGNED_INT,
                nvmlReturn=NVML_SUCCESS if ok else NVML_ERROR_NOT_SUPPORTED,
                value=_Struct(uiVal=int((d.instant_watts or d.watts) * 1000) if ok else 0, dVal=0.0, ullVal=0),
            )
        )
    return out


def _pids(d: _Device, graphics: bool = False) -> list[int]:
    pids = list(d.graphics if graphics else d.processes)
    if d.pid_file and not graphics:
        try:
            with open(d.pid_file) as f:
                pids += [int(line) for line in f if line.strip()]
        except FileNotFoundError:
            pass
    return pids


def _process_info(pid: int) -> _Struct:
    return _Struct(pid=pid, usedGpuMemory=512 * 2**20, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)


def nvmlDeviceGetComputeRunningProcesses(handle: Any) -> list[_Struct]:
    d = _dev(handle, "nvmlDeviceGetComputeRunningProcesses")
    return [_process_info(p) for p in _pids(d)]


def nvmlDeviceGetGraphicsRunningProcesses(handle: Any) -> list[_Struct]:
    d = _dev(handle, "nvmlDeviceGetGraphicsRunningProcesses")
    return [_process_info(p) for p in _pids(d, graphics=True)]


def nvmlDeviceGetProcessUtilization(handle: Any, timeStamp: int) -> list[_Struct]:
    """Samples newer than `timeStamp` (µs); NVML_ERROR_NOT_FOUND when there are none."""
    d = _dev(handle, "nvmlDeviceGetProcessUtilization")
    now = int(time.time() * 1e6)
    pids = _pids(d) + _pids(d, graphics=True)
    if now <= timeStamp or not pids:
        raise NVMLError(NVML_ERROR_NOT_FOUND)
    default = d.sm_util.get("*", 0)
    return [
        _Struct(pid=p, timeStamp=now, smUtil=d.sm_util.get(str(p), default), memUtil=0, encUtil=0, decUtil=0)
        for p in pids
    ]
