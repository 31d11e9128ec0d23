"""Where records go: .json, .jsonl, .csv, .prom files. Appends are locked; replacements are atomic."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import re
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from carbonwrap.report.record import CSV_COLUMNS, to_row


class SinkError(Exception):
    """A record could not be written; the message names the path and the reason."""


def write(path: str, rec: dict[str, Any]) -> None:
    """Write one record to `path`, in the format its suffix names."""
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".json":
            _replace(p, json.dumps(rec, indent=2, ensure_ascii=False) + "\n")
        elif suffix == ".jsonl":
            _append(p, json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n", header=None)
        elif suffix == ".csv":
            _append(p, _csv_line(to_row(rec)), header=_csv_line(list(CSV_COLUMNS)))
        elif suffix == ".prom":
            _replace(p, prometheus_text(rec))
        else:
            raise SinkError(f"{path}: unknown format")
    except OSError as e:
        where = e.filename or path
        raise SinkError(f"cannot write {where}: {e.strerror or e}") from None


def _replace(p: Path, text: str) -> None:
    """Write to a temporary file beside `p`, then rename over it: readers never see half a record."""
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _append(p: Path, text: str, header: str | None) -> None:
    """Append under an exclusive lock, so that concurrent runs never interleave or double the header."""
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if header is not None and size == 0:
            text = header + text
        data = text.encode("utf-8")
        try:
            while data:
                data = data[os.write(fd, data) :]
        except OSError:
            # A disk that fills mid-write would leave half a line: cut back to the last whole record.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)  # closing releases the lock


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value: object) -> object:
    """A text cell a spreadsheet would run as a formula gets a leading apostrophe (OWASP CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv_line(cells: list[object]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([escape_cell(c) for c in cells])
    return buf.getvalue()


_LABEL_NAME = re.compile(r"[^a-zA-Z0-9_]")


def _label_value(v: object) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


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
    base = prometheus_labels(rec)
    lines: list[str] = []

    def family(name: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} gauge")
        for extra, value in samples:
            lines.append(f"{name}{{{_labels({**base, **extra})}}} {value!r}")

    # method="estimated" wherever a modelled domain is in the figure, as the summary and the CSV say.
    modelled = {s["domain"] for s in rec["sensors"] if s["method"] == "estimated"}
    present = [d for d in ("cpu", "dram", "gpu") if rec["energy_j"][d] is not None]
    method = {d: "estimated" if d in modelled else "measured" for d in present}
    method["total"] = "estimated" if modelled & set(present) else "measured"
    energy: list[tuple[dict[str, str], float]] = []
    for domain in ("cpu", "dram", "gpu", "total"):
        charged, machine = rec["energy_j"][domain], rec["machine_energy_j"][domain]
        how = {"method": method.get(domain, "measured")}
        if charged is not None:
            energy.append(({"domain": domain, "scope": rec["scope"], **how}, float(charged)))
        if machine is not None and rec["scope"] != "machine":
            energy.append(({"domain": domain, "scope": "machine", **how}, float(machine)))
    family("carbonwrap_energy_joules", "Energy of the last run, before PUE.", energy)
    gpus: list[tuple[dict[str, str], float]] = []
    for g in rec.get("gpus", []):
        device = {"gpu": str(g["index"]), "name": str(g["name"]), "uuid": str(g["uuid"])}
        gpus.append(({**device, "scope": rec["scope"]}, float(g["charged_j"])))
        if rec["scope"] != "machine":
            gpus.append(({**device, "scope": "machine"}, float(g["energy_j"])))
    if gpus:
        family("carbonwrap_gpu_energy_joules", "Energy of each GPU during the last run, before PUE.", gpus)
    co2e = [({"method": method["total"]}, float(rec["co2e_g"]))]
    family("carbonwrap_co2e_grams", "CO2e of the last run in grams.", co2e)
    family("carbonwrap_duration_seconds", "Wall time of the last run.", [({}, float(rec["duration_s"]))])
    family("carbonwrap_cpu_seconds", "CPU time of the command's process tree.", [({}, float(rec["cpu_time_s"]))])
    if rec.get("exit_code") is not None:  # a run still going (a periodic push) has neither yet
        family("carbonwrap_exit_code", "Exit status of the last run.", [({}, float(rec["exit_code"]))])
        ended = datetime.fromisoformat(rec["ended_at"].replace("Z", "+00:00")).timestamp()
        family("carbonwrap_last_run_timestamp_seconds", "When the last run ended (Unix time).", [({}, ended)])
    return "\n".join(lines) + "\n"


def write_page(path: str, text: str) -> None:
    """Replace `path` with a whole page (the run's HTML report), atomically, as the records are."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        _replace(p, text)
    except OSError as e:
        raise SinkError(f"cannot write {e.filename or path}: {e.strerror or e}") from None
