"""Durations, `--finish-by` times and the expected duration of a job (SPEC.md sections 1 and 9.1). Pure."""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DEFAULT_EXPECT_S = 3600.0
HISTORY_RUNS = 10
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([smhd]?)\s*$")
_CLOCK = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")


def parse_duration(text: str) -> float:
    """Seconds from '90s', '1.5h', '2d', '30m' or a bare number of seconds; finite, not negative."""
    m = _DURATION.match(text)
    if m is None:
        raise ValueError(f"'{text}' is not a duration; write e.g. 90s, 30m, 1.5h or 2d")
    value = float(m.group(1)) * UNITS[m.group(2) or "s"]
    if not math.isfinite(value) or value > 3.2e9:
        raise ValueError(f"'{text}' is too large a duration")
    return value


def parse_finish_by(text: str, now_s: float, tz: tzinfo | None = None) -> float:
    """Wall seconds for an ISO 8601 time, or 'HH:MM' local time: the next such time after now.

    `tz` is the local zone (None: the system's). A naive ISO time is local too. On the day a DST change
    skips HH:MM, the time is read with the offset before the change (Python's fold=0), i.e. an hour later
    on the clock; on the day it repeats, the first of the two.
    """
    t = text.strip()
    m = _CLOCK.match(t)
    if m is not None:
        now = datetime.fromtimestamp(now_s, tz) if tz is not None else datetime.fromtimestamp(now_s).astimezone()
        zone = tz if tz is not None else now.tzinfo
        day = now.date()
        for _ in range(3):
            naive = datetime(day.year, day.month, day.day, int(m.group(1)), int(m.group(2)))
            when = _localize(naive, zone, tz is None)
            if when > now_s:
                return when
            day += timedelta(days=1)
        raise ValueError(f"cannot place {t} after now")
    try:
        dt = datetime.fromisoformat(t[:-1] + "+00:00" if t.endswith(("Z", "z")) else t)
    except ValueError:
        raise ValueError(f"'{text}' is not a time; write HH:MM (local) or ISO 8601, e.g. 2026-12-02T06:00Z") from None
    if dt.tzinfo is None:
        return _localize(dt, tz, tz is None)
    return dt.timestamp()


def _localize(naive: datetime, zone: tzinfo | None, system: bool) -> float:
    if system or zone is None:
        return naive.timestamp()  # a naive datetime is the system's local time (mktime, is_dst=-1)
    return naive.replace(tzinfo=zone).timestamp()


def latest_start(
    now_s: float, start_within_s: float | None, finish_by_s: float | None, expected_s: float
) -> float | None:
    """The latest start the flags allow (the earlier of the two), never before now; None without either."""
    ends = []
    if start_within_s is not None:
        ends.append(now_s + start_within_s)
    if finish_by_s is not None:
        ends.append(finish_by_s - expected_s)
    return max(min(ends), now_s) if ends else None


def history_durations(label: str, outputs: Sequence[str]) -> list[float]:
    """Durations of the runs with this label in the .jsonl and .csv outputs, oldest first (by end time)."""
    found: list[tuple[str, float]] = []
    for out in outputs:
        path = Path(out)
        try:
            if path.suffix == ".jsonl":
                with path.open(encoding="utf-8", errors="replace") as f:
                    rows = [_json(line) for line in f]
                found += [_pick(r) for r in rows if r is not None and str(r.get("label") or "") == label]
            elif path.suffix == ".csv":
                with path.open(encoding="utf-8", errors="replace", newline="") as f:
                    found += [_pick(r) for r in csv.DictReader(f) if _csv_label(r) == label]
        except (OSError, csv.Error):
            continue
    good = [(end, d) for end, d in found if math.isfinite(d) and d >= 0]
    return [d for _, d in sorted(good, key=lambda x: x[0])]


def _json(line: str) -> dict[str, object] | None:
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _csv_label(row: dict[str, str]) -> str:
    """The label as the run had it: the CSV escapes a cell that a spreadsheet would run as a formula."""
    from carbonwrap.report.record import unescape_cell

    return unescape_cell(row.get("label") or "")


def _pick(row: dict[str, object] | dict[str, str]) -> tuple[str, float]:
    try:
        return str(row.get("ended_at") or ""), float(str(row.get("duration_s")))
    except ValueError:
        return "", math.nan


def expected_duration(expect_s: float | None, label: str, outputs: Sequence[str]) -> tuple[float, str, str | None]:
    """(seconds, 'flag' | 'history' | 'default', a line to say when it is the default)."""
    if expect_s is not None:
        return expect_s, "flag", None
    past = history_durations(label, outputs)[-HISTORY_RUNS:]
    if past:
        return statistics.median(past), "history", None
    return (
        DEFAULT_EXPECT_S,
        "default",
        f"no earlier run of '{label}' in the outputs: expecting it to take 1 h (set --expect D)",
    )
