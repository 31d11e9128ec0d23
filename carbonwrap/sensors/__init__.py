"""Energy sensors behind one small protocol."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from carbonwrap.model import Reading, SensorInfo, TreeUsage

if TYPE_CHECKING:
    from carbonwrap.sensors.nvml import NvmlSensor


class Sensor(Protocol):
    """A source of readings. `info` says how each channel is measured, for the record.

    `read` gets the tree as scanned for this read: a channel that knows who used it (a GPU) takes the
    tree's share from it. A sensor with something to say (a device that degraded) lists it in `notes`,
    which the session empties after every read."""

    @property
    def info(self) -> Sequence[SensorInfo]: ...

    def read(self, tree: TreeUsage) -> Sequence[Reading]: ...

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
        from carbonwrap.sensors.estimate import EstimateSensor

        # The model that stands in should the counter become unreadable during the run (SPEC.md section 3).
        standby = EstimateSensor((domain,), proc=proc, cpu_watts=cpu_watts)
        try:
            sensors.append(rapl.RaplSensor(mine, read, standby=standby))
        except SensorError as e:
            reasons[domain] = f"RAPL unreadable: {e}"
            warnings.append(f"{domain}: {e}. Falling back to the estimate")
    missing = tuple(d for d in ("cpu", "dram") if d in reasons)
    if missing:
        from carbonwrap.sensors.estimate import EstimateSensor

        sensors.append(EstimateSensor(missing, proc=proc, cpu_watts=cpu_watts, reasons=reasons))
    return sensors, warnings


def read_period_s(sensors: Sequence[object]) -> float | None:
    """The longest gap between two reads of the counters at which none can wrap twice unseen.

    min over the measured zones of max_energy_range / (2 x maximum power); None when no sensor has a
    counter that wraps. The session reads at least this often, whatever --interval says.
    """
    periods = [p for s in sensors if (p := getattr(s, "max_read_period_s", None)) is not None and p > 0]
    return min(periods) if periods else None


def model_idle_w(sensors: Sequence[object]) -> dict[str, float]:
    """The model's idle power per domain, for the charging rule's P_idle (SPEC.md section 3)."""
    out: dict[str, float] = {}
    for s in sensors:
        get = getattr(s, "model_idle_w", None)
        if get is None:
            continue
        try:
            figures = get()
        except Exception:  # a fallback figure: the meter then uses the lowest power seen
            continue
        for domain, w in figures.items():
            if isinstance(w, int | float) and math.isfinite(w) and w >= 0:
                out[domain] = out.get(domain, 0.0) + float(w)
    return out


# Beyond any real machine: a GPU or socket counter above this (joules) or power above this (watts) is garbage.
_MAX_J = 2.0**64 / 1e3
_MAX_W = 1e6


def _checked(r: Reading) -> Reading:
    """The reading, or an error reading when a value is not a finite, plausible figure."""
    for name, value, limit in (
        ("energy", r.energy_j, _MAX_J),
        ("power", r.power_w, _MAX_W),
        ("instant power", r.power_now_w, _MAX_W),
    ):
        if value is not None and not (isinstance(value, int | float) and math.isfinite(value) and 0 <= value <= limit):
            why = f"implausible {name} value {str(value)[:40]}"
            return Reading(r.domain, r.name, policy=r.policy, error=why)
    if r.policy == "own share" and not (math.isfinite(r.share) and 0.0 <= r.share <= 1.0):
        return Reading(r.domain, r.name, policy="own share", error=f"implausible share {str(r.share)[:40]}")
    return r


def read_all(sensors: Sequence[Sensor], tree: TreeUsage) -> list[Reading]:
    """Every sensor's readings; one that raises or returns garbage gives error readings for its own
    channels only, so the other domains go on (SPEC.md section 2)."""
    out: list[Reading] = []
    for s in sensors:
        try:
            readings = list(s.read(tree))
        except Exception as e:
            why = f"{type(e).__name__}: {e}"[:200]
            try:
                infos = list(s.info)
            except Exception:
                infos = []
            # A GPU channel carries its own share: 0 keeps a broken one from being charged by CPU share.
            readings = [
                Reading(
                    i.domain,
                    i.name,
                    policy="own share" if i.domain == "gpu" else "cpu share",
                    error=f"read failed ({why})",
                )
                for i in infos
            ]
        out += [_checked(r) for r in readings]
    return out


def take_notes(sensors: Sequence[object]) -> list[str]:
    """What the sensors noted since the last call (a device that degraded), emptied as it is taken."""
    out: list[str] = []
    for s in sensors:
        notes = getattr(s, "notes", None)
        if isinstance(notes, list) and notes:
            out += [str(n) for n in notes]
            notes.clear()
    return out


def open_gpu(forced: bool, warnings: list[str], proc: Path = Path("/proc")) -> NvmlSensor | None:
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
        sensor = nvml.NvmlSensor(module, proc=proc)
    except module.NVMLError as e:
        code = getattr(e, "value", None)
        warnings.append(f"GPU: NVML could not start ({e}): {nvml.init_error_hint(code)}; GPU energy is not measured")
        return None
    except Exception as e:  # a broken binding must not stop the command from running
        warnings.append(f"GPU: NVML failed at start ({e!r}); GPU energy is not measured")
        return None
    warnings += take_notes([sensor])  # what it found while opening (MIG mode, a device it cannot measure)
    if not sensor.gpus:
        sensor.close()
        if forced:
            warnings.append("GPU: NVML works but lists no GPU; GPU energy is not measured")
        return None
    return sensor
