"""Energy sensors behind one small protocol."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from carbonwrap.model import Reading, SensorInfo

if TYPE_CHECKING:
    from carbonwrap.sensors.nvml import NvmlSensor


class Sensor(Protocol):
    """A source of readings. `info` says how each channel is measured, for the record."""

    @property
    def info(self) -> Sequence[SensorInfo]: ...

    def read(self) -> Sequence[Reading]: ...

    def close(self) -> None: ...


def nvidia_driver_present(proc: Path = Path("/proc")) -> bool:
    """Cheap probe, no import: the NVIDIA kernel module publishes /proc/driver/nvidia/version."""
    return (proc / "driver" / "nvidia" / "version").exists()


def open_sensors(
    sysfs: Path,
    cpu_watts: tuple[float, float] | None = None,
    proc: Path = Path("/proc"),
    reader: Callable[[Path], str] | None = None,
) -> tuple[list[Sensor], list[str]]:
    """The sensors for cpu and dram: RAPL where it reads, the labelled estimate for the rest.

    Returns the sensors and the warnings that explain every fallback.
    """
    from carbonwrap.errors import SensorError
    from carbonwrap.sensors import rapl

    read = reader or rapl.read_text
    zones, _notes = rapl.discover(sysfs, read)
    sensors: list[Sensor] = []
    warnings: list[str] = []
    reasons: dict[str, str] = {}
    for domain in ("cpu", "dram"):
        mine = [z for z in zones if z.domain == domain]
        if not mine:
            where = sysfs / "class" / "powercap"
            reasons[domain] = f"no RAPL {'package' if domain == 'cpu' else 'dram'} zone under {where}"
            continue
        try:
            sensors.append(rapl.RaplSensor(mine, read))
        except SensorError as e:
            reasons[domain] = f"RAPL unreadable: {e}"
            warnings.append(f"{domain}: {e}. Falling back to the estimate")
    missing = tuple(d for d in ("cpu", "dram") if d in reasons)
    if missing:
        from carbonwrap.sensors.estimate import EstimateSensor

        sensors.append(EstimateSensor(missing, proc=proc, cpu_watts=cpu_watts, reasons=reasons))
    return sensors, warnings


def open_gpu(
    tree: Callable[[], Collection[int]], forced: bool, warnings: list[str], proc: Path = Path("/proc")
) -> NvmlSensor | None:
    """The NVML sensor, or None where there is no GPU to measure (a warning says why when one was expected).

    Called before the launch and only when --gpu is given or the driver probe finds a driver: a GPU counter
    must cover the whole run, and without a driver pynvml is never imported.
    """
    from carbonwrap.sensors import nvml

    try:
        module = nvml.load()
    except ImportError:
        warnings.append("GPU: nvidia-ml-py is not installed (pip install nvidia-ml-py); GPU energy is not measured")
        return None
    try:
        sensor = nvml.NvmlSensor(module, tree, warnings, proc=proc)
    except module.NVMLError as e:
        code = getattr(e, "value", None)
        warnings.append(f"GPU: NVML could not start ({e}): {nvml.init_error_hint(code)}; GPU energy is not measured")
        return None
    except Exception as e:  # a broken binding must not stop the command from running
        warnings.append(f"GPU: NVML failed at start ({e!r}); GPU energy is not measured")
        return None
    if not sensor.gpus:
        sensor.close()
        if forced:
            warnings.append("GPU: NVML works but lists no GPU; GPU energy is not measured")
        return None
    return sensor
