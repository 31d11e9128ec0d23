"""The on-disk cache of provider periods, under $XDG_CACHE_HOME/carbonwrap (SPEC.md section 8).

One JSON file per provider, zone and UTC day of the periods it holds, plus a small log of the requests made.
A published actual replaces a cached forecast, never the reverse. A span asked for within the same half
hour is answered from the cache, so two runs in one half hour make one request. Unreadable or corrupt files
are ignored (and replaced on the next write); every write goes to a temporary file renamed over the old one.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from carbonwrap.grid.series import HALF_HOUR_S, Period, clean, covered_s, floor_to

DAY_S = 86400.0


def cache_root(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    return Path(base) / "carbonwrap" / "grid"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80] or "_"


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None


def _write(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Cache:
    """Periods of one provider and zone; `root` None disables it (nothing read, nothing written)."""

    def __init__(self, root: Path | None, provider: str, zone: str) -> None:
        self.dir = None if root is None else root / _safe(provider) / _safe(zone)

    def _day(self, wall_s: float) -> Path:
        assert self.dir is not None
        return self.dir / (datetime.fromtimestamp(wall_s, UTC).strftime("%Y-%m-%d") + ".json")

    def periods(self, start_s: float, end_s: float) -> list[Period]:
        """Cached periods that overlap [start_s, end_s]."""
        if self.dir is None:
            return []
        out = []
        # A period is filed under the day it starts: one that began yesterday and runs past midnight is in
        # yesterday's file (found at 00:06 on a forecast hour that started at 23:06).
        day = floor_to(start_s, DAY_S) - DAY_S
        while day < end_s + 1:
            doc = _read(self._day(day))
            rows = doc.get("periods") if isinstance(doc, dict) else None
            for row in rows if isinstance(rows, list) else []:
                try:
                    p = Period(float(row[0]), float(row[1]), float(row[2]), str(row[3]))
                except (TypeError, ValueError, IndexError):
                    continue
                if p.kind in ("actual", "forecast") and p.end_s > start_s and p.start_s < end_s:
                    out.append(p)
            day += DAY_S
        return clean(out)

    def asked(self, key: str, start_s: float, end_s: float, now_s: float) -> bool:
        """Whether a request of this kind covering [start_s, end_s] was answered in the current half hour."""
        if self.dir is None:
            return False
        doc = _read(self.dir / "requests.json")
        slot = floor_to(now_s)
        for row in doc if isinstance(doc, list) else []:
            try:
                k, lo, hi, at = str(row[0]), float(row[1]), float(row[2]), float(row[3])
            except (TypeError, ValueError, IndexError):
                continue
            if k == key and lo <= start_s and hi >= end_s and slot <= at < slot + HALF_HOUR_S:
                return True
        return False

    def lookup(
        self, key: str, start_s: float, end_s: float, now_s: float, span: tuple[float, float]
    ) -> list[Period] | None:
        """The cached periods over [start_s, end_s], or None when the provider must be asked.

        `span` is what the provider would be asked for (padded to half hours): a request of this kind that
        covered it in the current half hour is reused as it is.
        """
        if self.dir is None:
            return None
        cached = self.periods(start_s, end_s)
        if self.asked(key, span[0], span[1], now_s):
            return cached
        # Every moment covered by an actual: nothing newer can come, whenever it was fetched.
        actual = [p for p in cached if p.kind == "actual"]
        if end_s > start_s and covered_s(actual, start_s, end_s) >= end_s - start_s - 1e-6:
            return cached
        return None

    def store(self, key: str, span: tuple[float, float], now_s: float, periods: list[Period]) -> None:
        """Merge `periods` in (an actual replaces a forecast) and log the request; errors are ignored."""
        if self.dir is None:
            return
        try:
            by_day: dict[float, list[Period]] = {}
            for p in periods:
                by_day.setdefault(floor_to(p.start_s, DAY_S), []).append(p)
            for day, new in by_day.items():
                old = self.periods(day, day + DAY_S - 1e-3)
                merged = clean([*old, *new])  # clean() keeps an actual over a forecast for the same start
                _write(self._day(day), {"periods": [[p.start_s, p.end_s, p.g_per_kwh, p.kind] for p in merged]})
            log = _read(self.dir / "requests.json")
            recent = [r for r in (log if isinstance(log, list) else []) if _fresh(r, now_s)]
            _write(self.dir / "requests.json", [*recent[-50:], [key, span[0], span[1], now_s]])
        except OSError:
            pass  # a cache that can't be written costs a request next time, nothing else


def _fresh(row: Any, now_s: float) -> bool:
    try:
        return bool(float(row[3]) >= now_s - 2 * HALF_HOUR_S)
    except (TypeError, ValueError, IndexError):
        return False
