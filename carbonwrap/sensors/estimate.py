"""The labelled model used where no energy counter can be read: most VMs and CI runners.

CPU: threads x (idle + utilisation x (max - idle)) watts, per-thread figures by microarchitecture from
Cloud Carbon Footprint's SPECpower-derived coefficients. DRAM: 0.392 W per GB of memory in use (the same
source's 0.000392 kWh per GB-hour).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from carbonwrap.cputime import busy_total
from carbonwrap.model import Reading, SensorInfo, TreeUsage

DATA = Path(__file__).resolve().parent.parent / "data" / "cpu_power.json"
DRAM_W_PER_GB = 0.392
GB = 1e9

# Intel family 6 model numbers (Intel SDM vol. 4, table 2-1, and the kernel's intel-family.h).
_INTEL_MODELS = {
    "Sandy Bridge": {0x2A, 0x2D},
    "Ivy Bridge": {0x3A, 0x3E},
    "Haswell": {0x3C, 0x3F, 0x45, 0x46},
    "Broadwell": {0x3D, 0x47, 0x4F, 0x56},
    "Skylake": {0x4E, 0x5E, 0x55},  # 0x55 stepping >= 5 is Cascade Lake, below
    "Coffee Lake": {0x8E, 0x9E, 0xA5, 0xA6},  # Kaby, Coffee and Comet Lake share the Skylake core
}
_NEWEST_AMD = "EPYC 3rd gen (Zen 3)"
_MEDIAN = "(median of all)"


@dataclass(frozen=True, slots=True)
class CpuModel:
    microarchitecture: str
    idle_w: float
    max_w: float
    source: str
    matched: str  # what in /proc/cpuinfo led here, in words


def parse_cpuinfo(text: str) -> dict[str, str]:
    """The first processor block of /proc/cpuinfo as a dict (keys lower-case)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        key, _, value = line.partition(":")
        out.setdefault(key.strip().lower(), value.strip())
    return out


def _int(s: str | None) -> int | None:
    try:
        return int(s, 0) if s else None
    except ValueError:
        return None


def microarchitecture(info: Mapping[str, str]) -> tuple[str, str]:
    """(table row, explanation) for a CPU described by /proc/cpuinfo fields."""
    vendor = info.get("vendor_id", "")
    family, model = _int(info.get("cpu family")), _int(info.get("model"))
    stepping = _int(info.get("stepping")) or 0
    name = info.get("model name") or info.get("hardware") or "unknown CPU"
    seen = f"{name}, {vendor or 'unknown vendor'} family {family} model {model}"
    if vendor == "AuthenticAMD" and family is not None and model is not None:
        if family == 0x17:
            row = "EPYC 1st gen (Zen)" if model < 0x30 else "EPYC 2nd gen (Zen 2)"
            return row, seen
        if family == 0x19 and (0x10 <= model <= 0x1F or 0x60 <= model <= 0xAF):
            return _NEWEST_AMD, f"{seen} (Zen 4; no Zen 4 row, nearest is Zen 3)"
        if family == 0x19:
            return _NEWEST_AMD, seen
        if family >= 0x1A:
            return _NEWEST_AMD, f"{seen} (Zen 5 or later; no row for it, nearest is Zen 3)"
    if vendor == "GenuineIntel" and family == 6 and model is not None:
        if model == 0x55 and stepping >= 5:
            return "Cascade Lake", seen
        for row, models in _INTEL_MODELS.items():
            if model in models:
                return row, seen
    if info.get("cpu implementer") == "0x41" and info.get("cpu part") == "0xd0c":
        return "Graviton2", "Arm Neoverse N1 (cpu part 0xd0c)"
    return _MEDIAN, f"{seen} (not in the table; the median of all rows)"


def load_model(cpuinfo: str, path: Path = DATA) -> CpuModel:
    rows = {r["microarchitecture"]: r for r in json.loads(path.read_text(encoding="utf-8"))["models"]}
    row_name, matched = microarchitecture(parse_cpuinfo(cpuinfo))
    r = rows[row_name]
    return CpuModel(row_name, r["idle_w_per_thread"], r["max_w_per_thread"], r["source"], matched)


class EstimateSensor:
    """Modelled power for the domains given; the readings carry mean watts since the previous read."""

    def __init__(
        self,
        domains: tuple[str, ...] = ("cpu", "dram"),
        *,
        proc: Path = Path("/proc"),
        cpu_watts: tuple[float, float] | None = None,
        reasons: Mapping[str, str] | None = None,
    ) -> None:
        self.domains = domains
        self.threads = psutil.cpu_count() or 1
        try:
            cpuinfo = (proc / "cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
        self.model = load_model(cpuinfo)
        if cpu_watts is not None:
            self.idle_w, self.max_w = cpu_watts
            cpu_detail = f"--cpu-watts {self.idle_w:g}:{self.max_w:g} W per thread x {self.threads} threads"
        else:
            self.idle_w, self.max_w = self.model.idle_w, self.model.max_w
            cpu_detail = (
                f"model {self.model.microarchitecture}, {self.idle_w:g}-{self.max_w:g} W per thread x "
                f"{self.threads} threads x utilisation ({self.model.source}); CPU: {self.model.matched}"
            )
        why = reasons or {}
        details = {
            "cpu": cpu_detail,
            "dram": f"{DRAM_W_PER_GB} W per GB of memory in use (Cloud Carbon Footprint coefficient); "
            "the tree is charged by its resident memory",
        }
        self.info = [
            SensorInfo(d, "estimate", "estimated", details[d] + (f"; {why[d]}" if d in why else "")) for d in domains
        ]
        self._last = psutil.cpu_times()

    def cpu_power_w(self, utilisation: float) -> float:
        return self.threads * (self.idle_w + utilisation * (self.max_w - self.idle_w))

    def model_idle_w(self) -> dict[str, float]:
        """The model's power of each domain at rest: threads x idle watts; memory in use x watts per GB."""
        out = {}
        if "cpu" in self.domains:
            out["cpu"] = self.cpu_power_w(0.0)
        if "dram" in self.domains:
            vm = psutil.virtual_memory()
            out["dram"] = (vm.total - vm.available) / GB * DRAM_W_PER_GB
        return out

    def mark(self) -> None:
        """Start the next utilisation window now (a standby model read only when a counter fails)."""
        self._last = psutil.cpu_times()

    def read(self, tree: TreeUsage | None = None) -> list[Reading]:
        """The model of the whole machine; the meter charges the tree its share."""
        now = psutil.cpu_times()
        (b1, t1), (b0, t0) = busy_total(now), busy_total(self._last)
        busy, total = b1 - b0, t1 - t0
        self._last = now
        util = min(max(busy / total, 0.0), 1.0) if total > 0 else 0.0
        out = []
        if "cpu" in self.domains:
            out.append(Reading("cpu", "estimate", power_w=self.cpu_power_w(util)))
        if "dram" in self.domains:
            vm = psutil.virtual_memory()
            used = vm.total - vm.available
            out.append(
                Reading(
                    "dram", "estimate", power_w=used / GB * DRAM_W_PER_GB, policy="resident share", basis_bytes=used
                )
            )
        return out

    def close(self) -> None:
        pass
