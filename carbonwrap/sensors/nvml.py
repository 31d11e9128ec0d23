"""NVIDIA GPUs through NVML (nvidia-ml-py's `pynvml`). The only module that touches pynvml, and lazily.

What is here now: the probe `carbonwrap doctor` reports. Measuring GPU energy during a run is issue 3.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


def load() -> ModuleType:
    """Import pynvml; raises ImportError where nvidia-ml-py is not installed."""
    return importlib.import_module("pynvml")


@dataclass(frozen=True, slots=True)
class Device:
    index: int
    name: str
    energy_counter: bool  # nvmlDeviceGetTotalEnergyConsumption works (Volta and newer)
    why_not: str = ""  # NVML's reason when it does not


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
            devices.append(Device(i, _text(nvml.nvmlDeviceGetName(h)), ok, why))
        return _text(nvml.nvmlSystemGetDriverVersion()), devices
    finally:
        nvml.nvmlShutdown()
