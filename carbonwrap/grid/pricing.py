"""Energy-weighted pricing of a run's intervals with provider periods (SPEC.md sections 3 and 8). Pure."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from typing import Any

from carbonwrap.grid.series import Period, iso
from carbonwrap.summarise import co2e_g, kwh


def _overlaps(ps: Sequence[Period], ends: list[float], start: float, end: float) -> Iterator[tuple[int, float]]:
    """(index, fraction of the interval) for each period the interval overlaps; an instant, its own period."""
    i = bisect.bisect_right(ends, start)  # the first period that ends after the interval starts
    if end <= start:
        if i < len(ps) and ps[i].start_s <= start:
            yield i, 1.0
        return
    while i < len(ps) and ps[i].start_s < end:
        frac = (min(ps[i].end_s, end) - max(ps[i].start_s, start)) / (end - start)
        if frac > 0:
            yield i, frac
        i += 1


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

    `intervals` are (start_wall_s, end_wall_s, charged_energy_j). Each interval's energy is split across the
    periods it overlaps in proportion to the time of overlap; a period's value is constant over it. Energy
    no period covers is priced at `table_g_per_kwh`. `coverage` and `actual_share` are fractions of the
    charged energy (of the time, for a run charged no energy), `g_per_kwh` the energy-weighted mean over all.
    """
    ps = sorted(periods, key=lambda p: p.start_s)
    ends = [p.end_s for p in ps]
    per_period = [0.0] * len(ps)
    touched = [False] * len(ps)
    grams = live_w = actual_w = total_w = total_j = 0.0
    time_g = time_w = 0.0  # the time-weighted figure, for a run that was charged nothing
    for start, end, raw in intervals:
        energy = max(float(raw), 0.0)
        span = max(end - start, 0.0)
        live_frac = actual_frac = 0.0
        for i, frac in _overlaps(ps, ends, start, end):
            touched[i] = True
            per_period[i] += energy * frac
            grams += co2e_g(energy * frac, 1.0, ps[i].g_per_kwh)
            time_g += span * frac * ps[i].g_per_kwh
            live_frac += frac
            if ps[i].kind == "actual":
                actual_frac += frac
        live_frac = min(live_frac, 1.0)
        grams += co2e_g(energy * (1.0 - live_frac), 1.0, table_g_per_kwh)
        time_g += span * (1.0 - live_frac) * table_g_per_kwh
        time_w += span
        w = energy if energy > 0 else span
        total_w += w
        total_j += energy
        live_w += w * live_frac
        actual_w += w * min(actual_frac, 1.0)
    mean = grams / kwh(total_j) if total_j > 0 else time_g / time_w if time_w > 0 else table_g_per_kwh
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
            for p, e, t in zip(ps, per_period, touched, strict=True)
            if t
        ],
    }
    return fields, grams
