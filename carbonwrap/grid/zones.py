"""Which provider and zone serve a region code (SPEC.md section 8). Pure; reads the bundled table only."""

from __future__ import annotations

import re
from typing import Any

from carbonwrap.grid.series import Zone

NESO = ("neso", "NESO", "average, direct, consumption")
ENERGINET = ("energinet", "Energi Data Service", "average, direct, production")
EMAPS = ("electricitymaps", "Electricity Maps", "average, lifecycle")

# Locations of cloud regions and US states whose grid is one Electricity Maps zone. A short list on purpose:
# where a location is not here, a region falls back to its country's zone, and `em:<zone>` names any zone.
_US_LOCATIONS = {
    "virginia": "US-MIDA-PJM",
    "ohio": "US-MIDA-PJM",
    "oregon": "US-NW-BPAT",
    "california": "US-CAL-CISO",
    "iowa": "US-MIDW-MISO",
    "texas": "US-TEX-ERCO",
}
_US_STATES = {"US-CA": "US-CAL-CISO", "US-TX": "US-TEX-ERCO", "US-VA": "US-MIDA-PJM", "US-OR": "US-NW-BPAT"}
_POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?$")


def _zone(kind: tuple[str, str, str], zone: str, note: str = "") -> Zone:
    return Zone(kind[0], zone, kind[1], kind[2], note)


def live_zone(region: str | None, table: Any = None) -> Zone | None:
    """The live provider for a region code, or None where no provider serves it without more detail."""
    if not region:
        return None
    code = region.strip()
    up = code.upper()
    if up.startswith("EM:") and len(code) > 3:
        return _zone(EMAPS, code[3:])
    if up in ("GB", "UK", "GBR"):
        return _zone(NESO, "GB")
    if up.startswith(("GB-", "UK-")):
        rest = up[3:].replace(" ", "")
        if rest.isdigit() and 1 <= int(rest) <= 17:
            return _zone(NESO, f"GB-{int(rest)}")
        if _POSTCODE.match(rest):
            return _zone(NESO, f"GB-{rest}")
        return None
    if up in ("DK-DK1", "DK-DK2"):
        return _zone(ENERGINET, up)
    if up in ("DK", "DNK"):
        return _zone(ENERGINET, "DK", "DK: the mean of DK1 and DK2 per period")
    if up in _US_STATES:
        return _zone(EMAPS, _US_STATES[up])
    return _table_zone(code, table)


def _table_zone(code: str, table: Any) -> Zone | None:
    from carbonwrap import intensity

    table = table if table is not None else intensity.Table.load()
    row = table.get(code)
    if row is None:
        return None
    if row.kind == "country":
        return _zone(EMAPS, row.code) if len(row.code) == 2 else None
    if row.kind == "cloud":
        name = row.name.lower()
        for place, zone in _US_LOCATIONS.items():
            if place in name:
                return _zone(EMAPS, zone)
        m = re.search(r"value for ([A-Z]{2})\b", row.source)
        country = m.group(1) if m else None
        if country is None:  # "Paris, France": the last part of the location names the country
            last = table.get(row.name.rsplit(",", 1)[-1].strip())
            country = last.code if last is not None and last.kind == "country" else None
        if country == "GB":
            return _zone(NESO, "GB")
        if country == "DK":
            return _zone(ENERGINET, "DK", "DK: the mean of DK1 and DK2 per period")
        return _zone(EMAPS, country) if country and country != "US" else None
    return None


def table_region(region: str) -> str | None:
    """The bundled-table row that prices what a live-only zone can't: GB-13 -> GB, DK-DK1 -> DK, em:FR -> FR."""
    up = region.strip().upper()
    if up.startswith(("GB-", "UK-")):
        return "GB"
    if up.startswith("DK-"):
        return "DK"
    if up.startswith("EM:"):
        zone = up[3:]
        return zone.split("-", 1)[0] if len(zone.split("-", 1)[0]) == 2 else None
    return None


def live_marker(code: str, table: Any = None) -> str:
    """'live: NESO' for `carbonwrap regions`; '' where no live provider serves the region."""
    zone = live_zone(code, table)
    if zone is None:
        return ""
    return f"live: {zone.name}" + (" (token)" if zone.provider == "electricitymaps" else "")
