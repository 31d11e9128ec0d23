"""The bundled grid-intensity table: lookup, close matches for typos, the time-zone guess, resolution."""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from carbonwrap.errors import UsageError
from carbonwrap.model import How, Intensity

DATA = Path(__file__).resolve().parent / "data" / "regions.json"
WORLD = "WLD"


@dataclass(frozen=True, slots=True)
class Region:
    code: str
    alias: str | None
    kind: str
    name: str
    g_per_kwh: float
    year: int
    source: str
    also: tuple[str, ...] = ()  # common English names: UK, Britain, Turkey, Vietnam


class Table:
    """The packaged regions, indexed by code, alias (ISO alpha-3), unique name and common name,
    case-insensitively; `zones` maps a time zone to the subregion most of its people live in."""

    def __init__(self, regions: list[Region], zones: Mapping[str, str] | None = None) -> None:
        self.regions = regions
        self.zones = dict(zones or {})
        self._by_key: dict[str, Region] = {}
        names: dict[str, list[Region]] = {}
        for r in regions:
            self._by_key[r.code.upper()] = r
            if r.alias:
                self._by_key.setdefault(r.alias.upper(), r)
            names.setdefault(r.name.upper(), []).append(r)
        for r in regions:
            for n in r.also:
                self._by_key.setdefault(n.upper(), r)
        self._by_name = {k: v[0] for k, v in names.items() if len(v) == 1}

    @classmethod
    def load(cls, path: Path = DATA) -> Table:
        doc = json.loads(path.read_text(encoding="utf-8"))
        rows = [Region(**{**row, "also": tuple(row.get("also", ()))}) for row in doc["regions"]]
        return cls(rows, doc.get("zones", {}))

    def get(self, query: str) -> Region | None:
        key = query.strip().upper()
        return self._by_key.get(key) or self._by_name.get(key)

    def lookup(self, query: str) -> Region:
        """The region for a code or name, or a UsageError that lists close matches."""
        found = self.get(query)
        if found is not None:
            return found
        hint = self.suggest(query)
        tip = f"did you mean {', '.join(hint)}? " if hint else ""
        raise UsageError(
            f"unknown region '{query}': {tip}List the codes with 'carbonwrap regions [QUERY]', "
            "or give a fixed figure with --intensity G_PER_KWH."
        )

    def suggest(self, query: str, n: int = 5) -> list[str]:
        key = query.strip().upper()
        codes = [r.code.upper() for r in self.regions] + [a.upper() for r in self.regions for a in r.also]
        close = difflib.get_close_matches(key, codes + list(self._by_name), n=n, cutoff=0.6)
        out: list[str] = []
        for c in close:
            r = self._by_key.get(c) or self._by_name[c]
            if r.code not in out:
                out.append(r.code)
        if not out:  # a word from the name: "germ" -> DE
            out = [r.code for r in self.search(query)][:n]
        return out

    def search(self, query: str) -> list[Region]:
        """Rows whose code or name contains QUERY: exact codes first, then code prefixes, then the rest."""
        q = query.strip().lower()

        def rank(r: Region) -> int:
            code = r.code.lower()
            if q in (code, (r.alias or "").lower()) or q in (a.lower() for a in r.also):
                return 0
            return 1 if code.startswith(q) else 2

        def matches(r: Region) -> bool:
            return q in r.code.lower() or q in r.name.lower() or any(q in a.lower() for a in r.also) or rank(r) == 0

        return sorted((r for r in self.regions if matches(r)), key=rank)  # stable: table order within a rank


def _zone_name(env: Mapping[str, str], etc: Path) -> str | None:
    tz = env.get("TZ", "").lstrip(":")
    if tz and "/" in tz and not tz.startswith("/"):
        return tz
    if tz.startswith("/") and "zoneinfo/" in tz:
        return tz.split("zoneinfo/", 1)[1]
    try:
        target = os.readlink(etc / "localtime")
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    except OSError:
        pass
    try:
        name = (etc / "timezone").read_text(encoding="utf-8").strip()
        return name or None
    except OSError:
        return None


def _links(zoneinfo: Path) -> dict[str, str]:
    """tzdata's backward links (Asia/Calcutta -> Asia/Kolkata), from tzdata.zi's `L TARGET LINK` lines."""
    try:
        text = (zoneinfo / "tzdata.zi").read_text(encoding="utf-8")
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "L":
            out[parts[2]] = parts[1]
    return out


def _canonical(zone: str, zoneinfo: Path) -> str | None:
    """The zone a link points to, from tzdata.zi, else from the zone file being a symbolic link."""
    target = _links(zoneinfo).get(zone)
    if target:
        return target
    path = zoneinfo / zone
    try:
        if path.is_symlink():
            resolved = path.resolve().relative_to(zoneinfo.resolve())
            return str(resolved)
    except (OSError, ValueError):
        pass
    return None


def _zone_countries(zoneinfo: Path) -> dict[str, str]:
    try:
        lines = (zoneinfo / "zone.tab").read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        parts = line.split("\t")
        if not line.startswith("#") and len(parts) >= 3:
            out[parts[2]] = parts[0]
    return out


def guess_region(
    env: Mapping[str, str],
    etc: Path = Path("/etc"),
    zoneinfo: Path = Path("/usr/share/zoneinfo"),
    zones: Mapping[str, str] | None = None,
) -> tuple[str, str] | None:
    """(region code, zone) from TZ, /etc/localtime or /etc/timezone: the state or province the zone lies in
    (`zones`), else its country from the system's zone.tab; a tzdata link is followed to its zone."""
    zone = _zone_name(env, etc)
    if not zone:
        return None
    zones = zones or {}
    countries = _zone_countries(zoneinfo)
    names = [zone]
    target = _canonical(zone, zoneinfo)
    if target and target != zone:
        names.append(target)
    for name in names:  # the link's own name first: America/Montreal is Quebec, though it links to Toronto
        if name in zones:
            return zones[name], zone
    for name in names:
        if name in countries:
            return countries[name], zone
    return None


def guess_country(
    env: Mapping[str, str], etc: Path = Path("/etc"), zoneinfo: Path = Path("/usr/share/zoneinfo")
) -> tuple[str, str] | None:
    """(ISO alpha-2 country, zone) from TZ, /etc/localtime or /etc/timezone, via the system zone.tab."""
    return guess_region(env, etc, zoneinfo)


def _from_region(r: Region, how: How, note: str = "") -> Intensity:
    if r.g_per_kwh <= 0:
        # Published as 0 (Ember's Central African Republic row): no grid emits nothing over its lifecycle,
        # so the figure is kept but never passed off silently.
        zero = f"the source gives 0 g/kWh for {r.code}, which is implausible; consider --intensity G"
        note = f"{note}; {zero}" if note else zero
    return Intensity(r.code, r.name, r.g_per_kwh, r.year, r.source, how, note)


def resolve(
    table: Table,
    *,
    intensity: float | None,
    region: str | None,
    region_from_env: bool,
    env: Mapping[str, str],
    etc: Path = Path("/etc"),
    zoneinfo: Path = Path("/usr/share/zoneinfo"),
) -> Intensity:
    """SPEC.md section 4: --intensity, --region, CARBONWRAP_REGION, the time zone, else the world average."""
    if intensity is not None:
        r = table.get(region) if region else None
        return Intensity(
            r.code if r else region,
            r.name if r else None,
            intensity,
            None,
            "fixed figure given with --intensity",
            "intensity",
            "fixed figure given with --intensity",
        )
    if region:
        return _from_region(table.lookup(region), "env" if region_from_env else "flag")
    guess = guess_region(env, etc, zoneinfo, table.zones)
    if guess is not None:
        r = table.get(guess[0])
        if r is not None:
            return _from_region(r, "time zone", f"guessed from time zone {guess[1]}")
    world = table.lookup(WORLD)
    return Intensity(
        world.code,
        world.name,
        world.g_per_kwh,
        world.year,
        world.source,
        "default",
        "no region set; world average",
    )
