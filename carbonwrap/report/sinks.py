"""Where records go: .json, .jsonl, .csv, .prom files. Appends are locked; replacements are atomic.

Every format is written from the sanitised record (record.to_record): strict JSON, valid UTF-8. One output
that fails raises SinkError and costs nothing to the others.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from carbonwrap.report import files
from carbonwrap.report.record import CSV_COLUMNS, escape_cell, record_methods, to_row
from carbonwrap.report.text import clean_text, sanitise
from carbonwrap.summarise import ENERGY_KEYS

__all__ = ["SinkError", "escape_cell", "prometheus_text", "write"]


class SinkError(Exception):
    """A record could not be written; the message names the path and the reason."""


def strict_json(rec: dict[str, Any], indent: int | None = None) -> str:
    """RFC 8259 JSON of any record: non-finite numbers become null, bytes that were not UTF-8 are escaped."""
    separators = None if indent else (",", ":")
    return json.dumps(sanitise(rec), indent=indent, ensure_ascii=False, allow_nan=False, separators=separators)


def write(path: str, rec: dict[str, Any]) -> None:
    """Write one record to `path`, in the format its suffix names."""
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if suffix == ".json":
            data = (strict_json(rec, indent=2) + "\n").encode()
        elif suffix == ".jsonl":
            data = (strict_json(rec) + "\n").encode()
        elif suffix == ".csv":
            row = to_row(sanitise(rec))
        elif suffix == ".prom":
            data = prometheus_text(rec).encode()
        else:
            raise SinkError(f"{clean_text(path)}: unknown format")
        files.make_parent(p)
        if suffix in (".json", ".prom"):
            files.replace(p, data)
        elif suffix == ".jsonl":
            files.append(p, lambda _fd, _size: data)
        else:
            files.append(p, lambda fd, size: _csv_bytes(fd, size, row))
    except OSError as e:
        where = clean_text(str(e.filename or path))
        raise SinkError(f"cannot write {where}: {clean_text(str(e.strerror or e))}") from None
    except (ValueError, TypeError, KeyError, UnicodeError) as e:  # a record we could not encode: never fatal
        raise SinkError(f"cannot write {clean_text(path)}: {clean_text(repr(e))}") from None


def csv_line(cells: list[object]) -> str:
    """One CSV line. Every cell with a line break, \\r or \\n, is quoted: the writer quotes the characters of
    its line terminator, so it is given CRLF and the line then ends in a plain newline."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(cells)
    return buf.getvalue()[:-2] + "\n"


def _csv_bytes(fd: int, size: int, row: dict[str, object]) -> bytes:
    """The row in the file's own column order when it has an older header; a header first in a new file."""
    if size == 0:
        return (csv_line(list(CSV_COLUMNS)) + csv_line([row[c] for c in CSV_COLUMNS])).encode()
    header = files.read_head(fd).decode("utf-8", "replace").rstrip("\r")
    columns = next(csv.reader([header]), [])
    if columns and columns[0] == "schema" and columns != list(CSV_COLUMNS):
        return csv_line([row.get(c, "") for c in columns]).encode()
    return csv_line([row[c] for c in CSV_COLUMNS]).encode()


_LABEL_NAME = re.compile(r"[^a-zA-Z0-9_]")


def _label_value(v: object) -> str:
    return clean_text(str(v)).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: dict[str, str]) -> str:
    return ",".join(f'{k}="{_label_value(v)}"' for k, v in pairs.items())


def prometheus_labels(rec: dict[str, Any]) -> dict[str, str]:
    """The run's label, then its tags, with tag names made valid Prometheus label names."""
    out = {"label": str(rec["label"])}
    for k, v in rec["tags"].items():
        name = _LABEL_NAME.sub("_", k)
        if not name or name[0].isdigit():
            name = "_" + name
        if name.startswith("__"):
            name = "tag" + name
        out.setdefault(name, str(v))
    return out


def prometheus_text(rec: dict[str, Any]) -> str:
    """The run as Prometheus text exposition format (one gauge family per quantity)."""
    rec = sanitise(rec)
    base = prometheus_labels(rec)
    lines: list[str] = []

    def family(name: str, help_: str, samples: list[tuple[dict[str, str], float | None]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} gauge")
        for extra, value in samples:
            if value is not None:  # a value the sanitiser emptied (it was not finite) is left out
                lines.append(f"{name}{{{_labels({**base, **extra})}}} {float(value)!r}")

    # method="estimated" wherever a modelled domain is in the figure: the record's one rule.
    method = record_methods(rec)
    energy: list[tuple[dict[str, str], float | None]] = []
    for domain in ENERGY_KEYS:
        charged, machine = rec["energy_j"][domain], rec["machine_energy_j"][domain]
        how = {"method": method.get(domain) or "measured"}
        if charged is not None:
            energy.append(({"domain": domain, "scope": rec["scope"], **how}, charged))
        if machine is not None and rec["scope"] != "machine":
            energy.append(({"domain": domain, "scope": "machine", **how}, machine))
    family("carbonwrap_energy_joules", "Energy of the last run, before PUE.", energy)
    gpus: list[tuple[dict[str, str], float | None]] = []
    for g in rec.get("gpus", []):
        device = {"gpu": str(g["index"]), "name": str(g["name"]), "uuid": str(g["uuid"])}
        gpus.append(({**device, "scope": rec["scope"]}, g["charged_j"]))
        if rec["scope"] != "machine":
            gpus.append(({**device, "scope": "machine"}, g["energy_j"]))
    if gpus:
        family("carbonwrap_gpu_energy_joules", "Energy of each GPU during the last run, before PUE.", gpus)
    co2e: list[tuple[dict[str, str], float | None]] = [({"method": method["total"] or "measured"}, rec["co2e_g"])]
    family("carbonwrap_co2e_grams", "CO2e of the last run in grams.", co2e)
    family("carbonwrap_duration_seconds", "Wall time of the last run.", [({}, rec["duration_s"])])
    family("carbonwrap_cpu_seconds", "CPU time of the command's process tree.", [({}, rec["cpu_time_s"])])
    if rec.get("exit_code") is not None:  # a run still going (a periodic push) has neither yet
        family("carbonwrap_exit_code", "Exit status of the last run.", [({}, rec["exit_code"])])
        ended = datetime.fromisoformat(rec["ended_at"].replace("Z", "+00:00")).timestamp()
        family("carbonwrap_last_run_timestamp_seconds", "When the last run ended (Unix time).", [({}, ended)])
    return "\n".join(lines) + "\n"


def write_page(path: str, text: str) -> None:
    """Replace `path` with a whole page (the run's HTML report), atomically, as the records are."""
    p = Path(path)
    try:
        files.make_parent(p)
        files.replace(p, text.encode("utf-8", "backslashreplace"))
    except OSError as e:
        where = clean_text(str(e.filename or path))
        raise SinkError(f"cannot write {where}: {clean_text(str(e.strerror or e))}") from None
