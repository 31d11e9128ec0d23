"""Faithful fakes of hardware this machine lacks: a powercap sysfs tree of real files and symlinks, the fake
NVML module, and a /proc of real files for what the GPU sensor reads there."""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from carbonwrap.meter import Meter
from carbonwrap.model import Sample

FAKE_NVML = Path(__file__).resolve().parent / "fake_nvml"
_instances = itertools.count()

INTEL_PACKAGE_RANGE_UJ = 262143328850
INTEL_DRAM_RANGE_UJ = 65712999613
AMD_PACKAGE_RANGE_UJ = 65532610987


class FakePowercap:
    """A sysfs root laid out like the kernel's: zones live under devices/virtual/powercap/<type>/ and
    class/powercap/<zone> is a symlink to them. Counters are advanced by the test at known joules."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cls = root / "class" / "powercap"
        self.dev = root / "devices" / "virtual" / "powercap"
        self.cls.mkdir(parents=True, exist_ok=True)
        self.ranges: dict[str, int] = {}

    def zone(
        self,
        zone_id: str,
        name: str,
        range_uj: int,
        energy_uj: int = 0,
        max_power_uw: int | None = None,
        parent: str | None = None,
    ) -> Path:
        ctype = zone_id.split(":")[0]  # intel-rapl or intel-rapl-mmio
        base = self.dev / ctype
        if parent is not None:
            base = self.zone_dir(parent)
        d = base / zone_id
        d.mkdir(parents=True)
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text(f"{energy_uj}\n")
        (d / "max_energy_range_uj").write_text(f"{range_uj}\n")
        if max_power_uw is not None:
            (d / "constraint_0_max_power_uw").write_text(f"{max_power_uw}\n")
        os.symlink(os.path.relpath(d, self.cls), self.cls / zone_id)
        self.ranges[zone_id] = range_uj
        return d

    def zone_dir(self, zone_id: str) -> Path:
        return (self.cls / zone_id).resolve()

    def energy_uj(self, zone_id: str) -> int:
        return int((self.zone_dir(zone_id) / "energy_uj").read_text())

    def advance(self, zone_id: str, joules: float) -> None:
        """Add `joules` to the counter, wrapping past max_energy_range_uj as the hardware does."""
        rng = self.ranges[zone_id]
        value = self.energy_uj(zone_id) + round(joules * 1e6)
        if value > rng:
            value -= rng + 1
        self.write_raw(zone_id, f"{value}\n")

    def write_raw(self, zone_id: str, text: str) -> None:
        # sysfs reads are atomic; replacing the file keeps a concurrent reader from seeing it empty.
        d = self.zone_dir(zone_id)
        (d / ".energy_uj.tmp").write_text(text)
        os.replace(d / ".energy_uj.tmp", d / "energy_uj")


def intel_server(root: Path) -> FakePowercap:
    """2-socket Intel: directory numbers do not follow package names; core zones; dram zones at :N:1;
    package-1 starts 300 J below its wrap (the whole range is only 262 kJ)."""
    fp = FakePowercap(root)
    fp.zone(
        "intel-rapl:0",
        "package-1",
        INTEL_PACKAGE_RANGE_UJ,
        energy_uj=INTEL_PACKAGE_RANGE_UJ - 300_000_000,
        max_power_uw=205_000_000,
    )  # 300 J below
    fp.zone("intel-rapl:0:0", "core", INTEL_PACKAGE_RANGE_UJ, 5_000_000, parent="intel-rapl:0")
    fp.zone("intel-rapl:0:1", "dram", INTEL_DRAM_RANGE_UJ, 7_000_000, parent="intel-rapl:0")
    fp.zone("intel-rapl:1", "package-0", INTEL_PACKAGE_RANGE_UJ, 123_456_789, max_power_uw=205_000_000)
    fp.zone("intel-rapl:1:0", "core", INTEL_PACKAGE_RANGE_UJ, 1_000_000, parent="intel-rapl:1")
    fp.zone("intel-rapl:1:1", "dram", INTEL_DRAM_RANGE_UJ, 9_000_000, parent="intel-rapl:1")
    return fp


def intel_laptop(root: Path) -> FakePowercap:
    """Intel laptop: psys above the package, and an intel-rapl-mmio duplicate of package-0."""
    fp = FakePowercap(root)
    fp.zone("intel-rapl:0", "package-0", INTEL_PACKAGE_RANGE_UJ, 1_000_000, max_power_uw=28_000_000)
    fp.zone("intel-rapl:0:0", "core", INTEL_PACKAGE_RANGE_UJ, 500_000, parent="intel-rapl:0")
    fp.zone("intel-rapl:0:1", "uncore", INTEL_PACKAGE_RANGE_UJ, 100_000, parent="intel-rapl:0")
    fp.zone("intel-rapl:1", "psys", INTEL_PACKAGE_RANGE_UJ, 2_000_000)
    fp.zone("intel-rapl-mmio:0", "package-0", INTEL_PACKAGE_RANGE_UJ, 1_000_000, max_power_uw=28_000_000)
    return fp


def amd_epyc(root: Path) -> FakePowercap:
    """2-socket AMD EPYC: package zones only, no dram, the AMD energy range."""
    fp = FakePowercap(root)
    fp.zone("intel-rapl:0", "package-0", AMD_PACKAGE_RANGE_UJ, 10_000_000)
    fp.zone("intel-rapl:1", "package-1", AMD_PACKAGE_RANGE_UJ, 20_000_000)
    return fp


def empty(root: Path) -> Path:
    """Like this VM and most CI runners: no powercap tree at all."""
    root.mkdir(parents=True, exist_ok=True)
    return root


# A wrapped command that plays the hardware: it advances fake counters by known joules in equal steps while it
# runs, wrapping as RAPL does and replacing each file whole (sysfs reads are atomic), so a run's measured
# energy must equal exactly what it added.
ADVANCE = r"""
import os, sys, time
from pathlib import Path
steps, pause = int(sys.argv[1]), float(sys.argv[2])
zones = {Path(p): float(j) for p, j in (a.rsplit("=", 1) for a in sys.argv[3:])}
for _ in range(steps):
    for path, joules in zones.items():
        rng = int((path / "max_energy_range_uj").read_text())
        v = int((path / "energy_uj").read_text()) + round(joules / steps * 1e6)
        if v > rng:
            v -= rng + 1
        (path / ".energy_uj.tmp").write_text(f"{v}\n")
        os.replace(path / ".energy_uj.tmp", path / "energy_uj")
    time.sleep(pause)
"""


def advance_command(zones: dict[Path, float], steps: int = 10, pause_s: float = 0.1) -> list[str]:
    """The command line of a child that adds `joules` to each zone directory over `steps` steps."""
    return [sys.executable, "-c", ADVANCE, str(steps), str(pause_s), *(f"{d}={j}" for d, j in zones.items())]


def fake_nvml(devices: list[dict[str, Any]], **kw: Any) -> ModuleType:
    """A fresh instance of the fake `pynvml` (its own state), configured with `devices`."""
    spec = importlib.util.spec_from_file_location(f"fake_pynvml_{next(_instances)}", FAKE_NVML / "pynvml.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    module.configure(devices, **kw)
    return module


def fake_proc(root: Path, processes: dict[int, dict[str, Any]]) -> Path:
    """A /proc of real files for the GPU sensor: per pid, `fds` (paths its descriptors point at, as
    symlinks) and `nspid` (its pid in each PID namespace, outermost first)."""
    root.mkdir(parents=True, exist_ok=True)
    for pid, p in processes.items():
        d = root / str(pid)
        (d / "fd").mkdir(parents=True)
        for n, target in enumerate(p.get("fds", [])):
            (d / "fd" / str(n)).symlink_to(target)
        nspid = "\t".join(str(v) for v in p.get("nspid", [pid]))
        (d / "status").write_text(f"Name:\tfake\nPid:\t{pid}\nNSpid:\t{nspid}\n")
    return root


class NotingMeter(Meter):
    """A Meter that keeps the texts of the events its samples carry, as the session's journal does: the
    meter itself keeps no log."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.warnings: list[str] = []

    def update(self, *args: Any, **kwargs: Any) -> Sample:
        sample = super().update(*args, **kwargs)
        self.warnings += [e.text for e in sample.events]
        return sample
