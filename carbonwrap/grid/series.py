"""Provider periods as frozen values, and the times they are written in. Pure; no third-party imports."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

HALF_HOUR_S = 1800.0


@dataclass(frozen=True, slots=True)
class Period:
    """One provider period [start_s, end_s) in wall-clock seconds, its intensity treated as constant."""

    start_s: float
    end_s: float
    g_per_kwh: float
    kind: str  # "actual" | "forecast"


@dataclass(frozen=True, slots=True)
class Zone:
    """Where a region's live figures come from."""

    provider: str  # "neso" | "energinet" | "electricitymaps"
    zone: str  # "GB", "GB-13", "GB-RG10", "DK-DK1", "DK", "DE", "US-CAL-CISO"
    name: str  # the provider as people know it: "NESO", "Energi Data Service", "Electricity Maps"
    basis: str  # what the figure counts: "average, direct, consumption"
    note: str = ""  # "DK: mean of DK1 and DK2 per period"


def parse_time(text: str) -> float:
    """Wall seconds for '2023-03-14T12:00Z', '2024-03-05T20:00:00.000Z' or a naive UTC '2023-01-01T22:55:00'."""
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def iso(wall_s: float) -> str:
    """'2026-12-01T23:30:00Z' (UTC, whole seconds)."""
    return datetime.fromtimestamp(round(wall_s), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def floor_to(wall_s: float, step_s: float = HALF_HOUR_S) -> float:
    return math.floor(wall_s / step_s) * step_s


def ceil_to(wall_s: float, step_s: float = HALF_HOUR_S) -> float:
    return math.ceil(wall_s / step_s) * step_s


def clean(periods: list[Period]) -> list[Period]:
    """Sorted by start, one period per start (an actual wins over a forecast), only finite, sane values."""
    best: dict[float, Period] = {}
    for p in periods:
        if not (math.isfinite(p.g_per_kwh) and 0 <= p.g_per_kwh < 1e5 and p.end_s > p.start_s):
            continue
        old = best.get(p.start_s)
        if old is None or (p.kind == "actual" or old.kind != "actual"):
            best[p.start_s] = p
    return [best[k] for k in sorted(best)]


def covered_s(periods: list[Period], start_s: float, end_s: float) -> float:
    """Seconds of [start_s, end_s] that some period covers (periods sorted, non-overlapping)."""
    return sum(max(0.0, min(p.end_s, end_s) - max(p.start_s, start_s)) for p in periods)


def mean_over(periods: list[Period], start_s: float, end_s: float) -> float | None:
    """Overlap-weighted mean g/kWh over [start_s, end_s], or None where the periods don't cover all of it."""
    total = 0.0
    weight = 0.0
    for p in periods:
        w = min(p.end_s, end_s) - max(p.start_s, start_s)
        if w > 0:
            total += w * p.g_per_kwh
            weight += w
    if weight <= 0 or weight < (end_s - start_s) - 1e-6:
        return None
    return total / weight
