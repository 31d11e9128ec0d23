"""RAPL energy counters through Linux powercap (Documentation/power/powercap/powercap.rst)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from carbonwrap.errors import SensorError
from carbonwrap.meter import safe_period_s
from carbonwrap.model import Reading, SensorInfo, TreeUsage

Reader = Callable[[Path], str]
# powercap counters are u64 microjoules (struct powercap_zone_ops.get_energy_uj): anything larger is garbage.
MAX_UJ = 2**64 - 1


class Standby(Protocol):
    """The model that stands in for a counter that cannot be read (an EstimateSensor)."""

    def read(self, tree: TreeUsage | None = None) -> Sequence[Reading]: ...

    def mark(self) -> None: ...

    def model_idle_w(self) -> dict[str, float]: ...


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


def _parse_uj(text: str, what: Path, limit: float = MAX_UJ) -> int:
    digits = text.strip()
    try:
        value = int(digits) if len(digits) <= 40 else None  # int() of thousands of digits is slow
    except ValueError:
        raise SensorError(f"{what} holds {digits[:40]!r}, not a number") from None
    if value is None or value > limit:
        raise SensorError(f"{what} holds a {len(digits)}-digit value, beyond the counter's range")
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
    """A positive u64 from a zone's file, or None when it is missing, garbage or out of range."""
    try:
        value = _parse_uj(reader(path), path)
    except (OSError, SensorError):
        return None
    return value or None


class RaplSensor:
    """Reads the energy_uj counter of each zone; raises SensorError where a counter can't be read at start.

    A counter that becomes unreadable later gives an error reading that carries the `standby` model's power
    for the zone (the domain's estimate split evenly over its zones), until and including the first good
    read after it: the meter counts that as estimated time, never as 0 J measured.
    """

    def __init__(self, zones: Sequence[Zone], reader: Reader = read_text, standby: Standby | None = None) -> None:
        self.zones = list(zones)
        self._reader = reader
        self._standby = standby
        self._failed: set[str] = set()  # zones whose previous read failed
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

    @property
    def max_read_period_s(self) -> float | None:
        """The longest gap between reads at which no zone can wrap twice unseen (SPEC.md section 3)."""
        periods = [safe_period_s(z.wrap_j, z.max_power_w) for z in self.zones if z.wrap_j]
        return min(periods) if periods else None

    def model_idle_w(self) -> dict[str, float]:
        """The model's idle power for the domains measured here: the cap on the lowest power seen."""
        if self._standby is None:
            return {}
        try:
            return self._standby.model_idle_w()
        except Exception:  # the model is a fallback: without it the lowest power seen is used alone
            return {}

    def _read_uj(self, z: Zone) -> int:
        path = z.path / "energy_uj"
        limit = z.wrap_j * 1e6 + 1 if z.wrap_j else MAX_UJ
        try:
            return _parse_uj(self._reader(path), path, limit)
        except PermissionError:
            raise SensorError(fix_for_permission(path)) from None
        except OSError as e:
            raise SensorError(f"cannot read {path}: {e.strerror or e}") from None

    def read(self, tree: TreeUsage | None = None) -> list[Reading]:
        """The counters; a RAPL zone is the whole socket, so the tree is not needed to read it."""
        out = []
        for z in self.zones:
            try:
                energy = self._read_uj(z) / 1e6  # µJ -> J
            except SensorError as e:
                out.append(Reading(z.domain, z.name, error=str(e)))
                continue
            out.append(Reading(z.domain, z.name, energy_j=energy, wrap_j=z.wrap_j, max_power_w=z.max_power_w))
        failed = {r.name for r in out if r.error is not None}
        covered = failed | self._failed  # failing now, or the first good read after a failure
        self._failed = failed
        if self._standby is None:
            return out
        if not covered:
            self._standby.mark()  # keeps the model's window equal to the interval between reads
            return out
        watts = self._standby_w()
        counts = {d: sum(z.domain == d for z in self.zones) for d in watts}
        return [
            r if r.name not in covered or r.domain not in watts else _with_power(r, watts[r.domain] / counts[r.domain])
            for r in out
        ]

    def _standby_w(self) -> dict[str, float]:
        assert self._standby is not None
        try:
            return {r.domain: r.power_w for r in self._standby.read() if r.power_w is not None}
        except Exception:  # the model failing too leaves the error reading as it is
            return {}

    def close(self) -> None:
        pass


def _with_power(r: Reading, power_w: float) -> Reading:
    return replace(r, power_w=power_w)
