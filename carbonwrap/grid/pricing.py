"""Energy-weighted pricing of a run's intervals with provider periods (SPEC.md sections 3 and 8). Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from carbonwrap.grid.series import Period, iso

J_PER_KWH = 3.6e6


def price(
    intervals: Sequence[tuple[float, float, float]],
    periods: Sequence[Period],
    table_g_per_kwh: float,
    *,
    provider: str | None = None,
    zone: str | None = None,
    basis: str | None = None,
) -> tuple[dict[str, Any], float]:
    """(the record's live `intensity` fields, grams CO2e at PUE 1).

    Each interval's energy is split across the periods it overlaps, in proportion to the time of overlap;
    a period's value is constant over it. Energy no period covers is priced at `table_g_per_kwh`.
    `coverage` and `actual_share` are fractions of the charged energy (of the time, for a run that used none).
    """
    ps = sorted(periods, key=lambda p: p.start_s)
    per_period = [0.0] * len(ps)
    grams = live_w = actual_w = total_w = 0.0
    for start, end, energy in intervals:
        energy = max(float(energy), 0.0)
        span = end - start
        live_j = 0.0
        live_frac = actual_frac = 0.0
        for i, p in enumerate(ps):
            if span > 0:
                frac = max(0.0, min(p.end_s, end) - max(p.start_s, start)) / span
            else:  # an instant belongs to the period that contains it
                frac = 1.0 if p.start_s <= start < p.end_s else 0.0
            if frac <= 0:
                continue
            part = energy * frac
            per_period[i] += part
            grams += part / J_PER_KWH * p.g_per_kwh
            live_j += part
            live_frac += frac
            if p.kind == "actual":
                actual_frac += frac
        grams += max(energy - live_j, 0.0) / J_PER_KWH * table_g_per_kwh
        # Weights for the shares: the energy, or the time where there is none, so an idle run still says
        # how much of it the live figures covered.
        w = energy if energy > 0 else max(span, 0.0)
        total_w += w
        live_w += w * min(live_frac, 1.0)
        actual_w += w * min(actual_frac, 1.0)
    total_j = sum(max(float(e), 0.0) for _, _, e in intervals)
    mean = grams / (total_j / J_PER_KWH) if total_j > 0 else _time_mean(intervals, ps, table_g_per_kwh)
    fields: dict[str, Any] = {
        "grid": "live",
        "provider": provider,
        "zone": zone,
        "basis": basis,
        "g_per_kwh": mean,
        "table_g_per_kwh": table_g_per_kwh,
        "coverage": live_w / total_w if total_w > 0 else 0.0,
        "actual_share": actual_w / total_w if total_w > 0 else 0.0,
        "periods": [
            {"from": iso(p.start_s), "to": iso(p.end_s), "g_per_kwh": p.g_per_kwh, "kind": p.kind, "energy_j": e}
            for p, e in zip(ps, per_period, strict=True)
            if _touches(p, intervals)
        ],
    }
    return fields, grams


def _touches(p: Period, intervals: Sequence[tuple[float, float, float]]) -> bool:
    return any(min(p.end_s, e) > max(p.start_s, s) or (e <= s and p.start_s <= s < p.end_s) for s, e, _ in intervals)


def _time_mean(intervals: Sequence[tuple[float, float, float]], ps: Sequence[Period], table: float) -> float:
    """The time-weighted mean, for a run that was charged no energy at all (the figure still means something)."""
    total = weight = 0.0
    for s, e, _ in intervals:
        span = e - s
        if span <= 0:
            continue
        live = 0.0
        for p in ps:
            o = max(0.0, min(p.end_s, e) - max(p.start_s, s))
            total += o * p.g_per_kwh
            live += o
        total += (span - live) * table
        weight += span
    return total / weight if weight > 0 else table
