"""RAPL energy counters through Linux powercap (Documentation/power/powercap/powercap.rst)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from carbonwrap.errors import SensorError
from carbonwrap.model import Reading, SensorInfo

Reader = Callable[[Path], str]


def read_text(path: Path) -> str:
    return path.read_text(encoding="ascii", errors="replace")


@dataclass(frozen=True, slots=True)
class Zone:
    """A powercap zone that counts toward a domain."""

    domain: str  # "cpu" for package-N, "dram" for dram
    name: str  # "package-0", "package-0/dram"
    path: Path  # the zone's directory as found under class/powercap
    wrap_j: float | None
    max_power_w: float | None


def _parse_uj(text: str, what: Path) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise SensorError(f"{what} holds {text.strip()[:40]!r}, not a number") from None
    if value < 0:
        raise SensorError(f"{what} holds a negative value")
    return value


def fix_for_permission(path: Path) -> str:
    return (
        f"{path} is readable by root only (Linux 5.10 and later, CVE-2020-8694). "
        "Run 'carbonwrap doctor' for a udev rule that lets a group read it"
    )


def discover(root: Path, reader: Reader = read_text) -> tuple[list[Zone], list[str]]:
    """Find the package and dram zones under ROOT/class/powercap by their `name` files.

    core, uncore and psys are skipped (inside or above a package), and so is the intel-rapl-mmio
    interface, which duplicates the MSR package zone on recent Intel laptops.
    """
    base = root / "class" / "powercap"
    notes: list[str] = []
    if not base.is_dir():
        return [], [f"no powercap tree at {base}"]
    entries = sorted(p for p in base.iterdir() if p.name.startswith("intel-rapl"))
    if not entries:
        notes.append(f"no RAPL zones under {base}")
    zones: list[Zone] = []
    packages: dict[Path, str] = {}  # resolved package dir -> its name
    for p in entries:
        if p.name.startswith("intel-rapl-mmio"):
            notes.append(f"{p.name}: skipped (duplicate of the MSR interface)")
            continue
        if ":" not in p.name:
            continue  # the control type directory itself
        try:
            name = reader(p / "name").strip()
        except OSError as e:
            notes.append(f"{p.name}: no readable name ({e.strerror or e})")
            continue
        if name.startswith("package-"):
            packages[p.resolve()] = name
        if name.startswith("package-") or name == "dram":
            zones.append(_zone(p, name, reader))
        else:
            notes.append(f"{p.name} ({name}): not added (counted inside or above a package)")
    # Name each dram zone by the package it sits under (two sockets have two zones called "dram").
    named: list[Zone] = []
    for z in zones:
        if z.domain == "dram":
            parent = packages.get(z.path.resolve().parent)
            label = f"{parent}/dram" if parent else f"{z.path.name}/dram"
            z = Zone(z.domain, label, z.path, z.wrap_j, z.max_power_w)
        named.append(z)
    return sorted(named, key=lambda z: (z.domain, z.name)), notes


def _zone(p: Path, name: str, reader: Reader) -> Zone:
    domain = "cpu" if name.startswith("package-") else "dram"
    wrap = _optional_number(reader, p / "max_energy_range_uj")
    power = _optional_number(reader, p / "constraint_0_max_power_uw")
    return Zone(
        domain,
        name,
        p,
        wrap / 1e6 if wrap is not None else None,
        power / 1e6 if power else None,
    )


def _optional_number(reader: Reader, path: Path) -> int | None:
    try:
        return int(reader(path).strip())
    except (OSError, ValueError):
        return None


class RaplSensor:
    """Reads the energy_uj counter of each zone; raises SensorError where a counter can't be read."""

    def __init__(self, zones: Sequence[Zone], reader: Reader = read_text) -> None:
        self.zones = list(zones)
        self._reader = reader
        for z in self.zones:  # fail now, before the launch, rather than mid-run
            self._read_uj(z)
        self.info = [
            SensorInfo(
                z.domain,
                z.name,
                "measured",
                f"RAPL powercap {z.path.name}"
                + (f", wraps at {z.wrap_j:.0f} J" if z.wrap_j else ", no wrap range published"),
            )
            for z in self.zones
        ]

    def _read_uj(self, z: Zone) -> int:
        path = z.path / "energy_uj"
        try:
            return _parse_uj(self._reader(path), path)
        except PermissionError:
            raise SensorError(fix_for_permission(path)) from None
        except OSError as e:
            raise SensorError(f"cannot read {path}: {e.strerror or e}") from None

    def read(self) -> list[Reading]:
        out = []
        for z in self.zones:
            try:
                energy = self._read_uj(z) / 1e6  # µJ -> J
            except SensorError as e:
                out.append(Reading(z.domain, z.name, error=str(e)))
                continue
            out.append(Reading(z.domain, z.name, energy_j=energy, wrap_j=z.wrap_j, max_power_w=z.max_power_w))
        return out

    def close(self) -> None:
        pass
