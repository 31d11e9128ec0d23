"""`carbonwrap report`: read run records (JSON, JSONL, CSV) from many files and hosts, and total them by group.

Pure apart from reading the files; a malformed line is counted and skipped, never fatal.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carbonwrap.report.record import SCHEMA

DOMAINS = ("cpu", "dram", "gpu")
_ESCAPED = ("'=", "'+", "'-", "'@", "'\t", "'\r")


@dataclass(frozen=True, slots=True)
class Run:
    """The fields of one record that reports total."""

    label: str
    host: str
    started_at: str
    tags: dict[str, str]
    duration_s: float
    cpu_time_s: float
    energy_j: dict[str, float]  # charged, per domain present, before PUE
    pue: float
    co2e_g: float
    g_per_kwh: float
    estimated: bool  # some domain of this run was modelled, not measured


@dataclass(slots=True)
class Loaded:
    runs: list[Run] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)  # "file:line: why"


def _num(v: Any) -> float:
    if v is None or v == "":
        return 0.0
    return float(v)


def _from_record(rec: dict[str, Any]) -> Run:
    if rec.get("schema") != SCHEMA:
        raise ValueError(f"not a {SCHEMA} record")
    energy = {d: _num(rec["energy_j"][d]) for d in DOMAINS if rec["energy_j"].get(d) is not None}
    return Run(
        str(rec["label"]),
        str(rec["host"]),
        str(rec["started_at"]),
        {str(k): str(v) for k, v in rec["tags"].items()},
        _num(rec["duration_s"]),
        _num(rec["cpu_time_s"]),
        energy,
        _num(rec["pue"]),
        _num(rec["co2e_g"]),
        _num(rec["intensity"]["g_per_kwh"]),
        any(s["method"] == "estimated" for s in rec["sensors"]),
    )


def _unescape(cell: str) -> str:
    return cell[1:] if cell.startswith(_ESCAPED) else cell


def _from_row(row: dict[str, str]) -> Run:
    if row.get("schema") != SCHEMA:
        raise ValueError(f"not a {SCHEMA} row")
    tags: dict[str, str] = {}
    for pair in filter(None, _unescape(row["tags"]).split(";")):
        k, _, v = pair.partition("=")
        tags[k] = v
    energy = {d: _num(row[f"energy_{d}_j"]) for d in DOMAINS if row.get(f"energy_{d}_j")}
    return Run(
        _unescape(row["label"]),
        _unescape(row["host"]),
        row["started_at"],
        tags,
        _num(row["duration_s"]),
        _num(row["cpu_time_s"]),
        energy,
        _num(row["pue"]),
        _num(row["co2e_g"]),
        _num(row["intensity_g_per_kwh"]),
        "estimated" in (row.get("method_cpu", "") + row.get("method_dram", "") + row.get("method_gpu", "")),
    )


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8", errors="replace") as f:
        yield from enumerate(f, 1)


def load(paths: list[Path]) -> Loaded:
    out = Loaded()
    for path in paths:
        if path.suffix.lower() == ".csv":
            with path.open(newline="", encoding="utf-8", errors="replace") as f:
                for n, row in enumerate(csv.DictReader(f), 2):
                    try:
                        out.runs.append(_from_row(row))
                    except (KeyError, ValueError, TypeError, AttributeError) as e:
                        out.malformed.append(f"{path}:{n}: {e!r}")
            continue
        if path.suffix.lower() == ".json":
            try:
                out.runs.append(_from_record(json.loads(path.read_text(encoding="utf-8", errors="replace"))))
            except (KeyError, ValueError, TypeError, AttributeError) as e:
                out.malformed.append(f"{path}:1: {e!r}")
            continue
        for n, line in _lines(path):
            if not line.strip():
                continue
            try:
                out.runs.append(_from_record(json.loads(line)))
            except (KeyError, ValueError, TypeError, AttributeError) as e:
                out.malformed.append(f"{path}:{n}: {e!r}")
    return out


def group_key(run: Run, by: str) -> str:
    if by == "label":
        return run.label
    if by == "host":
        return run.host
    if by == "day":
        return run.started_at[:10]
    if by.startswith("tag:"):
        return run.tags.get(by[4:], "(none)")
    raise ValueError(f"cannot group by '{by}': use label, host, day or tag:KEY")


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
)


def totals(runs: list[Run], by: str, since: str | None = None) -> list[dict[str, Any]]:
    """One row per group, largest CO2e first. Mean intensity is weighted by energy at the meter (x PUE)."""
    groups: dict[str, dict[str, Any]] = {}
    for r in runs:
        if since and r.started_at < since:
            continue
        g = groups.setdefault(group_key(r, by), {c: 0.0 for c in COLUMNS[1:]} | {"_kwh": 0.0, "_g": 0.0})
        for d in DOMAINS:  # a domain no run had (no GPU anywhere) stays None: absent, not a measured 0
            g.setdefault(f"_{d}", False)
        g["runs"] += 1
        g["estimated_runs"] += r.estimated
        g["duration_s"] += r.duration_s
        g["cpu_time_s"] += r.cpu_time_s
        for d, e in r.energy_j.items():
            g[f"energy_{d}_j"] += e
            g[f"_{d}"] = True
        total = sum(r.energy_j.values())
        g["energy_total_j"] += total
        g["co2e_g"] += r.co2e_g
        g["_kwh"] += total * r.pue / 3.6e6
        g["_g"] += r.g_per_kwh
    rows = []
    for name, g in groups.items():
        kwh, plain = g.pop("_kwh"), g.pop("_g")
        for d in DOMAINS:
            if not g.pop(f"_{d}"):
                g[f"energy_{d}_j"] = None
        g["mean_g_per_kwh"] = g["co2e_g"] / kwh if kwh > 0 else plain / g["runs"]
        g["runs"] = int(g["runs"])
        g["estimated_runs"] = int(g["estimated_runs"])
        rows.append({"group": name, **g})
    rows.sort(key=lambda row: (-row["co2e_g"], row["group"]))
    return rows


def render(rows: list[dict[str, Any]], fmt: str, by: str) -> str:
    """The totals as table (for people), markdown, csv or json."""
    if fmt == "json":
        return json.dumps({"by": by, "groups": rows}, indent=2) + "\n"
    if fmt == "csv":
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        from carbonwrap.report.sinks import escape_cell

        for row in rows:
            w.writerow({k: escape_cell(v) for k, v in row.items()})
        return buf.getvalue()
    from carbonwrap.report.summary import format_duration, format_energy, format_mass

    def energy(j: float | None) -> str:
        return "-" if j is None else format_energy(j)

    head = [by, "runs", "estimated", "duration", "CPU time", "cpu", "dram", "gpu", "total", "CO2e", "g/kWh"]
    body = [
        [
            row["group"],
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
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            for r in [head, *body]
        )
        + "\n"
    )
