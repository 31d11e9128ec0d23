"""The bundled grid-intensity table: lookup, close matches for typos, the time-zone guess, resolution."""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from carbonwrap.errors import UsageError
from carbonwrap.model import Intensity

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


class Table:
    """The packaged regions, indexed by code, alias (ISO alpha-3) and unique name, case-insensitively."""

    def __init__(self, regions: list[Region]) -> None:
        self.regions = regions
        self._by_key: dict[str, Region] = {}
        names: dict[str, list[Region]] = {}
        for r in regions:
            self._by_key[r.code.upper()] = r
            if r.alias:
                self._by_key.setdefault(r.alias.upper(), r)
            names.setdefault(r.name.upper(), []).append(r)
        self._by_name = {k: v[0] for k, v in names.items() if len(v) == 1}

    @classmethod
    def load(cls, path: Path = DATA) -> Table:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return cls([Region(**row) for row in doc["regions"]])

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
        codes = [r.code.upper() for r in self.regions]
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
            if q in (code, (r.alias or "").lower()):
                return 0
            return 1 if code.startswith(q) else 2

        found = [r for r in self.regions if q in r.code.lower() or q in r.name.lower() or rank(r) == 0]
        return sorted(found, key=rank)  # stable: table order within a rank


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


def guess_country(
    env: Mapping[str, str], etc: Path = Path("/etc"), zoneinfo: Path = Path("/usr/share/zoneinfo")
) -> tuple[str, str] | None:
    """(ISO alpha-2 country, zone) from TZ, /etc/localtime or /etc/timezone, via the system zone.tab."""
    zone = _zone_name(env, etc)
    if not zone:
        return None
    try:
        lines = (zoneinfo / "zone.tab").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) >= 3 and parts[2] == zone:
            return parts[0], zone
    return None


def _from_region(r: Region, how: str, note: str = "") -> Intensity:
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
    guess = guess_country(env, etc, zoneinfo)
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
