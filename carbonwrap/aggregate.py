"""`carbonwrap report`: the fields of a record that reports total, and the totals by group. Pure.

Reading the files is history.py's part. Scopes are never summed together: every row is one group in one scope,
and the grand total has a row per scope.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from carbonwrap.model import DOMAINS
from carbonwrap.report import record
from carbonwrap.summarise import kwh as to_kwh

GROUPINGS = ("label", "host", "day", "month", "region", "scope")
FORMATS = ("table", "json", "csv", "markdown", "html")  # html: report/html.py draws it (SPEC.md section 10.3)
TOTAL = "(all)"


@dataclass(frozen=True, slots=True)
class Run:
    """The fields of one record that reports total."""

    id: str
    parent_id: str | None
    label: str
    host: str
    started_ts: float  # Unix time; started_at with any offset applied
    scope: str
    region: str | None
    command: tuple[str, ...]
    tags: tuple[tuple[str, str], ...]
    duration_s: float
    cpu_time_s: float
    energy_j: tuple[tuple[str, float], ...]  # charged, per domain present, before PUE
    pue: float
    co2e_g: float
    g_per_kwh: float
    estimated: bool  # the record's methods say its total is an estimate


def parse_time(text: str) -> float:
    """Unix time of an ISO 8601 time; without an offset it is UTC."""
    t = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def from_record(rec: Any) -> Run:
    """The Run of a record dict (from JSON, or from a CSV row by record.from_row); raises on anything malformed."""
    r = record.from_record(rec)
    methods = record.record_methods(rec)
    return Run(
        id=r.id,
        parent_id=r.parent_id,
        label=r.label,
        host=r.host,
        started_ts=parse_time(r.started_at),
        scope=r.scope,
        region=r.intensity.region,
        command=r.command,
        tags=tuple(sorted(r.tags.items())),
        duration_s=r.duration_s,
        cpu_time_s=r.cpu_time_s,
        energy_j=tuple((d, v) for d in DOMAINS if (v := r.energy_j.get(d)) is not None),
        pue=r.pue,
        co2e_g=r.co2e_g,
        g_per_kwh=float(g) if isinstance(g := r.live.get("g_per_kwh"), int | float) else r.intensity.g_per_kwh,
        estimated=methods.get("total") == "estimated",
    )


def valid_grouping(by: str) -> bool:
    return by in GROUPINGS or (by.startswith("tag:") and len(by) > 4)


def group_key(run: Run, by: str) -> str:
    if by in ("label", "host", "scope"):
        return str(getattr(run, by))
    if by in ("day", "month"):
        return datetime.fromtimestamp(run.started_ts, UTC).strftime("%Y-%m-%d" if by == "day" else "%Y-%m")
    if by == "region":
        return run.region or "(none)"
    if by.startswith("tag:"):
        return dict(run.tags).get(by[4:], "(none)")
    raise ValueError(f"cannot group by '{by}': use {', '.join(GROUPINGS)} or tag:KEY")


def not_nested(runs: list[Run]) -> tuple[list[Run], int]:
    """The runs without those whose parent run is among them (already counted in the parent's figures)."""
    ids = {r.id for r in runs if r.id}
    kept = [r for r in runs if not (r.parent_id and r.parent_id in ids)]
    return kept, len(runs) - len(kept)


def select(runs: Iterable[Run], since: float | None = None, until: float | None = None) -> list[Run]:
    """Runs started at or after `since` and before `until` (Unix times)."""
    return [r for r in runs if (since is None or r.started_ts >= since) and (until is None or r.started_ts < until)]


COLUMNS = (
    "group",
    "runs",
    "estimated_runs",  # how many of the runs have a modelled domain in their totals
    "duration_s",
    "cpu_time_s",
    "energy_cpu_j",
    "energy_dram_j",
    "energy_gpu_j",
    "energy_total_j",
    "co2e_g",
    "mean_g_per_kwh",
    "scope",  # tree and machine figures are never added together
)


def _sum(runs: Iterable[Run], keyed: Any) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for r in runs:
        key = (keyed(r), r.scope)
        g = groups.get(key)
        if g is None:
            g = groups[key] = {c: 0.0 for c in COLUMNS[1:-1]} | {"_kwh": 0.0, "_g": 0.0, "_seen": set()}
        g["runs"] += 1
        g["estimated_runs"] += r.estimated
        g["duration_s"] += r.duration_s
        g["cpu_time_s"] += r.cpu_time_s
        total = 0.0
        for d, e in r.energy_j:
            g[f"energy_{d}_j"] += e
            g["_seen"].add(d)
            total += e
        g["energy_total_j"] += total
        g["co2e_g"] += r.co2e_g
        g["_kwh"] += to_kwh(total, r.pue)
        g["_g"] += r.g_per_kwh
    rows = []
    for (name, scope), g in groups.items():
        kwh, plain, seen = g.pop("_kwh"), g.pop("_g"), g.pop("_seen")
        for d in DOMAINS:  # a domain no run had (no GPU anywhere) stays None: absent, not a measured 0
            if d not in seen:
                g[f"energy_{d}_j"] = None
        g["mean_g_per_kwh"] = g["co2e_g"] / kwh if kwh > 0 else plain / g["runs"]
        g["runs"] = int(g["runs"])
        g["estimated_runs"] = int(g["estimated_runs"])
        rows.append({"group": name, **g, "scope": scope})
    return rows


def totals(runs: list[Run], by: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(one row per group and scope, largest CO2e first; the grand total, one row per scope).
    Mean intensity is weighted by energy at the meter (x PUE)."""
    if by in ("day", "month"):  # one strftime per UTC day, not per run
        days: dict[int, str] = {}

        def keyed(r: Run) -> str:
            day = int(r.started_ts // 86400)
            if day not in days:
                days[day] = group_key(r, by)
            return days[day]

        rows = _sum(runs, keyed)
    else:
        rows = _sum(runs, lambda r: group_key(r, by))
    rows.sort(key=lambda row: (-row["co2e_g"], row["group"], row["scope"]))
    grand = sorted(_sum(runs, lambda r: TOTAL), key=lambda row: row["scope"])
    return rows, grand


def render(rows: list[dict[str, Any]], fmt: str, by: str, grand: list[dict[str, Any]] | None = None) -> str:
    """The totals as table (for people), markdown, csv or json; the grand total ends each. Times are UTC."""
    grand = grand or []
    if fmt == "json":
        from carbonwrap.report.text import sanitise  # finite records can still sum past the largest float

        doc = sanitise({"by": by, "times": "UTC", "groups": rows, "total": grand})
        return json.dumps(doc, indent=2, allow_nan=False) + "\n"
    if fmt == "csv":
        from carbonwrap.report.record import escape_cell

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        for row in [*rows, *grand]:
            w.writerow({k: escape_cell(v) for k, v in row.items()})
        return buf.getvalue()
    return _text_table([*rows, *grand], fmt, by)


def _text_table(rows: list[dict[str, Any]], fmt: str, by: str) -> str:
    from carbonwrap.report.summary import format_duration, format_energy, format_mass
    from carbonwrap.report.text import escape_control

    def energy(j: float | None) -> str:
        return "-" if j is None else format_energy(j)

    head = [f"{by} (UTC)" if by in ("day", "month") else by, "scope", "runs", "estimated", "duration", "CPU time"]
    head += [*DOMAINS, "total", "CO2e", "g/kWh"]
    body = [
        [
            escape_control(row["group"]),
            row["scope"],
            str(row["runs"]),
            f"{row['estimated_runs']} of {row['runs']}",
            format_duration(row["duration_s"]),
            format_duration(row["cpu_time_s"]),
            *(energy(row[f"energy_{d}_j"]) for d in DOMAINS),
            format_energy(row["energy_total_j"]),
            format_mass(row["co2e_g"]),
            f"{row['mean_g_per_kwh']:.1f}",
        ]
        for row in rows
    ]
    if fmt == "markdown":
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in body]
        return "\n".join(lines) + "\n"
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    return (
        "\n".join(
            "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            for r in [head, *body]
        )
        + "\n"
    )
