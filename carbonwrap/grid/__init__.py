"""Live grid intensity (SPEC.md section 8) and the carbon-aware start (section 9).

The entry points the rest of carbonwrap calls: `live_intensity` after the command has exited,
`current_intensity` for the live panel, and `schedule.plan_start` before the launch. None of them raises;
every failure becomes the table's figure and one warning line. No third-party imports.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from carbonwrap.grid.cache import Cache, cache_root
from carbonwrap.grid.http import FetchError
from carbonwrap.grid.pricing import price
from carbonwrap.grid.providers import FETCHERS, Request
from carbonwrap.grid.series import HALF_HOUR_S, Period, Zone, ceil_to, floor_to
from carbonwrap.grid.zones import live_zone, table_region

__all__ = ["current_intensity", "describe", "fetch_periods", "live_intensity", "live_zone", "probe", "table_region"]


def fetch_periods(
    zone: Zone,
    start_s: float,
    end_s: float,
    *,
    env: Mapping[str, str],
    now_s: float,
    deadline_s: float,
    cancel: threading.Event | None,
    forecast: bool = False,
    get: Callable[..., bytes] | None = None,
) -> tuple[list[Period], int]:
    """(periods around [start_s, end_s] from the cache or the provider, requests made); FetchError on failure."""
    key = "forecast" if forecast else "history"
    # What a request covers, for the cache: a forecast is one per half hour; history is asked for padded out
    # to the half hours around the run (NESO's periods), so a second run in the same half hour asks nothing.
    slot = floor_to(now_s)
    span = (slot, slot) if forecast else (floor_to(start_s), max(ceil_to(end_s), floor_to(start_s) + HALF_HOUR_S))
    cache = Cache(cache_root(env), zone.provider, zone.zone)
    cached = cache.lookup(key, start_s, end_s, now_s, span)
    if cached is not None:
        return cached, 0
    req = Request(env, deadline_s, cancel) if get is None else Request(env, deadline_s, cancel, get)
    periods = FETCHERS[zone.provider](zone, start_s, end_s, req, forecast=forecast)
    if not periods:
        raise FetchError(f"{zone.name} returned no figures for {zone.zone} in that time")
    cache.store(key, span, now_s, periods)
    return cache.periods(start_s, end_s) or periods, req.count


def live_intensity(
    region: str | None,
    intervals: Sequence[tuple[float, float, float]],
    table_g_per_kwh: float,
    *,
    env: Mapping[str, str] = os.environ,
    now: Callable[[], float] = time.time,
    deadline_s: float = 10.0,
    cancel: threading.Event | None = None,
) -> tuple[dict[str, Any], float, list[str]]:
    """(the record's `intensity` live fields, grams CO2e at PUE 1, warnings): never raises.

    `intervals` are (start_wall_s, end_wall_s, charged_energy_j) before PUE; multiply the grams by the PUE.
    Whatever can't be priced live is priced at `table_g_per_kwh`, and one warning line says why.
    """
    intervals = [(float(s), float(e), float(j)) for s, e, j in intervals]
    zone = live_zone(region)
    table_fig = f"{table_g_per_kwh:.0f} g/kWh"
    if zone is None:
        fields, grams = price(intervals, [], table_g_per_kwh)
        return (
            fields,
            grams,
            [
                f"live intensity: no live provider for region {region or '(none set)'}; priced with the yearly table "
                f"({table_fig}). Use --region em:<zone> with {_token_var()} set, or --grid table"
            ],
        )
    meta = {"provider": zone.name, "zone": zone.zone, "basis": zone.basis}
    if not intervals:
        fields, grams = price([], [], table_g_per_kwh, **meta)
        return fields, grams, []
    start = min(s for s, _, _ in intervals)
    end = max(e for _, e, _ in intervals)
    try:
        periods, _ = fetch_periods(zone, start, end, env=env, now_s=now(), deadline_s=deadline_s, cancel=cancel)
    except FetchError as e:
        fields, grams = price(intervals, [], table_g_per_kwh, **meta)
        return fields, grams, [f"live intensity: {zone.name}: {e}; priced with the yearly table ({table_fig})"]
    except Exception as e:  # a bug of ours must not cost the record
        fields, grams = price(intervals, [], table_g_per_kwh, **meta)
        why = f"internal error {type(e).__name__}"
        return fields, grams, [f"live intensity: {why}; priced with the yearly table ({table_fig})"]
    fields, grams = price(intervals, periods, table_g_per_kwh, **meta)
    warnings = []
    if zone.note:
        fields["note"] = zone.note
    if fields["coverage"] < 1 - 1e-9:
        missing = 100 * (1 - fields["coverage"])
        warnings.append(
            f"live intensity: {zone.name} has no figure for {missing:.0f} % of the run (a hole in its series); "
            f"that part priced with the yearly table ({table_fig})"
        )
    return fields, grams, warnings


def current_intensity(
    region: str | None,
    *,
    env: Mapping[str, str] = os.environ,
    now: Callable[[], float] = time.time,
    deadline_s: float = 10.0,
    cancel: threading.Event | None = None,
) -> tuple[float | None, str | None]:
    """(g/kWh now, or None; a warning or None), for the live panel's background fetch. Never raises."""
    zone = live_zone(region)
    if zone is None:
        return None, f"live intensity: no live provider for region {region}"
    t = now()
    try:
        periods, _ = fetch_periods(zone, t - 1, t, env=env, now_s=t, deadline_s=deadline_s, cancel=cancel)
    except FetchError as e:
        return None, f"live intensity: {zone.name}: {e}"
    except Exception as e:
        return None, f"live intensity: internal error {type(e).__name__}"
    here = [p for p in periods if p.start_s <= t < p.end_s] or [p for p in periods if p.start_s <= t]
    return (here[-1].g_per_kwh, None) if here else (None, f"live intensity: {zone.name} has no figure for now")


def probe(
    region: str | None,
    *,
    env: Mapping[str, str] = os.environ,
    now: Callable[[], float] = time.time,
    deadline_s: float = 10.0,
) -> dict[str, Any]:
    """For `carbonwrap doctor --grid live`: one request for the last hour, bypassing the cache. Never raises.

    {region, provider, zone, basis, ok, latency_s, g_per_kwh, kind, error}
    """
    zone = live_zone(region)
    out: dict[str, Any] = {"region": region, "provider": None, "zone": None, "basis": None, "ok": False}
    out.update(latency_s=None, g_per_kwh=None, kind=None, error=None)
    if zone is None:
        out["error"] = f"no live provider for region {region or '(none set)'}"
        return out
    out.update(provider=zone.name, zone=zone.zone, basis=zone.basis)
    t = now()
    began = time.monotonic()
    try:
        periods = FETCHERS[zone.provider](zone, t - 3600, t, Request(env, deadline_s))
    except FetchError as e:
        out.update(latency_s=time.monotonic() - began, error=str(e))
        return out
    except Exception as e:
        out.update(latency_s=time.monotonic() - began, error=f"internal error {type(e).__name__}")
        return out
    out["latency_s"] = time.monotonic() - began
    if not periods:
        out["error"] = f"{zone.name} returned no figures for the last hour"
        return out
    last = periods[-1]
    out.update(ok=True, g_per_kwh=last.g_per_kwh, kind=last.kind)
    return out


def describe(fields: Mapping[str, Any], region: str | None = None) -> str:
    """`GB live 182 g/kWh (NESO, average, direct, consumption, 92 % actual) vs 213 yearly` for the summary."""
    where = region or fields.get("zone") or "grid"
    basis = f", {fields['basis']}" if fields.get("basis") else ""
    share = f", {100 * float(fields.get('actual_share') or 0):.0f} % actual"
    cover = (
        "" if float(fields.get("coverage") or 0) >= 1 else f", {100 * float(fields.get('coverage') or 0):.0f} % live"
    )
    return (
        f"{where} live {float(fields['g_per_kwh']):.0f} g/kWh ({fields.get('provider') or 'no provider'}{basis}"
        f"{share}{cover}) vs {float(fields['table_g_per_kwh']):.0f} yearly"
    )


def _token_var() -> str:
    from carbonwrap.grid.providers import TOKEN_VAR

    return TOKEN_VAR
