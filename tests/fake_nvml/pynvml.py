"""A fake of nvidia-ml-py's `pynvml` with the real API's names, return types, units and error codes.

Energy is in millijoules and power in milliwatts, as NVML reports them. Devices come from `configure()` or,
for a subprocess that finds this module first on PYTHONPATH, from the JSON file named by FAKE_NVML_CONFIG:
{"driver": "550.54.15", "devices": [{"name": ..., "uuid": ..., "energy_mj": int or null,
"power_mw": int, "watts": float, "processes": [pid, ...], "lost_after_s": float or null}]}.
A device's energy counter advances at `watts` from the moment nvmlInit is called.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_UNKNOWN = 999

_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_NOT_FOUND: "Not Found",
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


@dataclass
class _Device:
    index: int
    name: str
    uuid: str
    energy_mj: int | None
    watts: float
    processes: list[int]
    lost_after_s: float | None


_state: dict[str, Any] = {"devices": [], "driver": "550.54.15", "init": 0, "t0": 0.0, "shutdowns": 0}


def configure(devices: list[dict[str, Any]], driver: str = "550.54.15") -> None:
    _state["devices"] = [
        _Device(
            i,
            d["name"],
            d.get("uuid", f"GPU-{i:08x}-fake"),
            d.get("energy_mj", 0),
            d.get("watts", 0.0),
            list(d.get("processes", [])),
            d.get("lost_after_s"),
        )
        for i, d in enumerate(devices)
    ]
    _state["driver"] = driver


def _load_env() -> None:
    path = os.environ.get("FAKE_NVML_CONFIG")
    if path:
        with open(path) as f:
            cfg = json.load(f)
        configure(cfg.get("devices", []), cfg.get("driver", "550.54.15"))


_load_env()


def _check() -> None:
    if _state["init"] <= 0:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)


def _dev(handle: Any) -> _Device:
    _check()
    if not isinstance(handle, _Device):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    if handle.lost_after_s is not None and time.monotonic() - _state["t0"] > handle.lost_after_s:
        raise NVMLError(NVML_ERROR_GPU_IS_LOST)
    return handle


def nvmlInit() -> None:
    _state["init"] += 1
    _state["t0"] = time.monotonic()


def nvmlShutdown() -> None:
    _check()
    _state["init"] -= 1
    _state["shutdowns"] += 1


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
    return _dev(handle).name


def nvmlDeviceGetUUID(handle: Any) -> str:
    return _dev(handle).uuid


def nvmlDeviceGetTotalEnergyConsumption(handle: Any) -> int:
    """Millijoules since the driver was loaded (Volta and newer)."""
    d = _dev(handle)
    if d.energy_mj is None:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    return int(d.energy_mj + d.watts * (time.monotonic() - _state["t0"]) * 1000)


def nvmlDeviceGetPowerUsage(handle: Any) -> int:
    """Milliwatts."""
    return int(_dev(handle).watts * 1000)
