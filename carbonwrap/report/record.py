"""The run record of SPEC.md section 5, as a dict and as a flat CSV row, and back. No third-party imports."""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, get_args

from carbonwrap.model import DOMAINS, How, Intensity, Method, SensorInfo
from carbonwrap.report.text import clean_text, escape_control, sanitise
from carbonwrap.summarise import ENERGY_KEYS as _ENERGY_KEYS
from carbonwrap.summarise import decide_methods, methods_from_sensors

if TYPE_CHECKING:
    from carbonwrap.runreport import RunReport

__all__ = [
    "CSV_COLUMNS",
    "SCHEMA",
    "escape_control",
    "from_record",
    "from_row",
    "record_methods",
    "to_record",
    "to_row",
]

SCHEMA = "carbonwrap.run/1"


def record_methods(rec: Mapping[str, Any]) -> dict[str, Any]:
    """The record's `methods`; for a record without them (older, or a run still going), by the same rule."""
    m = rec.get("methods")
    if isinstance(m, dict) and set(m) >= set(_ENERGY_KEYS):
        return m
    listed = rec.get("sensors")
    sensors = (
        [x for x in listed if isinstance(x, Mapping) and {"domain", "method"} <= x.keys()]
        if isinstance(listed, list)
        else []
    )
    energy = rec.get("energy_j")
    return methods_from_sensors(sensors, energy if isinstance(energy, Mapping) else {})


def estimated_domains(sensors: Iterable[Mapping[str, Any]]) -> set[str]:
    """Before any energy is known (the live panel): the domains the rule will call estimated."""
    ms = methods_from_sensors(sensors, {d: 1.0 for d in DOMAINS})
    names = {str(s["domain"]) for s in sensors}
    return {d for d in DOMAINS if d in names and ms[d] == "estimated"}


def to_record(r: RunReport) -> dict[str, Any]:
    """The record as strict JSON can hold it: finite numbers, valid UTF-8 (SPEC.md section 5.1)."""
    it = r.intensity
    energy = {k: r.energy_j.get(k) for k in _ENERGY_KEYS}
    sensors = [asdict(s) for s in r.sensors]
    rec = {
        "schema": SCHEMA,
        "id": r.id,
        "parent_id": r.parent_id,
        "label": r.label,
        "command": list(r.command),
        "cwd": r.cwd,
        "host": r.host,
        "started_at": r.started_at,
        "ended_at": r.ended_at,
        "duration_s": r.duration_s,
        "exit_code": r.exit_code,
        "signal": r.signal,
        "cpu_time_s": r.cpu_time_s,
        "scope": r.scope,
        "pue": r.pue,
        "energy_j": energy,
        "machine_energy_j": {k: r.machine_energy_j.get(k) for k in _ENERGY_KEYS},
        "methods": methods_from_sensors(sensors, energy),
        "co2e_g": r.co2e_g,
        "intensity": {
            "region": it.region,
            "name": it.name,
            "g_per_kwh": it.g_per_kwh,
            "year": it.year,
            "source": it.source,
            "how": it.how,
            "note": it.note,
            "grid": "table",
            **r.live,
        },
        "sensors": sensors,
        "gpus": [dict(g) for g in r.gpus],
        "host_info": dict(r.host_info),
        "warnings": list(r.warnings),
        "tags": dict(r.tags),
        "baseline_w": dict(r.baseline_w),
        "idle_w": {k: dict(v) for k, v in r.idle_w.items()},
        "budget": dict(r.budget) or None,
        "schedule": dict(r.schedule) if r.schedule is not None else None,
        "phases": [dict(p) for p in r.phases],
        "prediction": dict(r.prediction) if r.prediction is not None else None,
    }
    out: dict[str, Any] = sanitise(rec)
    return out


_TABLE_KEYS = ("region", "name", "year", "source", "how", "note")  # of `intensity`, the live fields aside


def _text(v: Any, what: str, nullable: bool = False) -> Any:
    if v is None and nullable:
        return None
    if not isinstance(v, str):
        raise TypeError(f"{what} is not a string")
    return v


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TypeError(f"{what} is not a number")
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"{what} is not finite")
    return f


def _maybe_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _energies(obj: Any, what: str, strict: bool) -> dict[str, float | None]:
    """An energy object: a number or null per key; a malformed figure raises when `strict`, else is null."""
    out: dict[str, float | None] = {}
    for k in _ENERGY_KEYS:
        v = obj.get(k) if isinstance(obj, dict) else None
        if v is None:
            out[k] = None
        elif strict and k != "total":  # the total is made again from the domains where it is unreadable
            out[k] = _number(v, f"{what}.{k}")
        else:
            out[k] = _figure(v)
    return out


def _figure(v: Any) -> float | None:
    """A finite number as a float; None for anything else (text, a bool, NaN, an integer beyond a float)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _dicts(v: Any) -> tuple[dict[str, Any], ...]:
    return tuple(dict(x) for x in v if isinstance(x, dict)) if isinstance(v, list) else ()


def _sensor(s: dict[str, Any]) -> SensorInfo:
    method: Method = next((m for m in get_args(Method) if m == s.get("method")), "estimated")
    return SensorInfo(str(s.get("domain", "")), str(s.get("name", "")), method, str(s.get("detail", "")))


def _object(v: Any) -> dict[str, Any] | None:
    """A copy of a JSON object, or None for anything else."""
    return dict(v) if isinstance(v, dict) else None


def _intensity(it: dict[str, Any]) -> tuple[Intensity, dict[str, Any]]:
    """The yearly table's Intensity and the live fields. With --grid live the record's figure is the live
    one, and the table's is kept beside it."""
    priced = _number(it["g_per_kwh"], "intensity.g_per_kwh")
    live = {k: v for k, v in it.items() if k not in _TABLE_KEYS} if it.get("grid") == "live" else {}
    table_g = _figure(live.get("table_g_per_kwh"))
    name = it.get("name")
    intensity = Intensity(
        region=_text(it.get("region") or None, "intensity.region", nullable=True),
        name=name if isinstance(name, str) else None,
        g_per_kwh=table_g if table_g is not None else priced,
        year=_maybe_int(it.get("year")),
        source=str(it.get("source") or ""),
        how=next((h for h in get_args(How) if h == it.get("how")), "flag"),
        note=str(it.get("note") or ""),
    )
    return intensity, live


def _shape(rec: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], list[Any]]:
    """A record's energy, intensity, tags and command, once its schema and their types are checked."""
    if not isinstance(rec, dict):
        raise TypeError("not a JSON object")
    if rec.get("schema") != SCHEMA:
        raise ValueError(f"not a {SCHEMA} record")
    energy_in, it, tags = rec["energy_j"], rec["intensity"], rec["tags"]
    if not isinstance(energy_in, dict) or not isinstance(it, dict) or not isinstance(tags, dict):
        raise TypeError("energy_j, intensity and tags must be objects")
    command = rec.get("command") or []
    if not isinstance(command, list):
        raise TypeError("command is not a list")
    return energy_in, it, tags, command


def from_record(rec: Any) -> RunReport:
    """The RunReport of a record dict (from JSON, or from a CSV row by from_row): to_record's inverse.

    Raises TypeError, ValueError or KeyError on anything malformed that a report totals (the energy charged,
    the times, the intensity, the labels); what an older record or a CSV row lacks takes its default."""
    from carbonwrap.runreport import RunReport

    energy_in, it, tags, command = _shape(rec)
    intensity, live = _intensity(it)
    energy = _energies(energy_in, "energy_j", strict=True)
    if energy["total"] is None:
        energy["total"] = sum(v for k, v in energy.items() if k != "total" and v is not None)
    warnings = rec.get("warnings")
    idle = _object(rec.get("idle_w")) or {}
    return RunReport(
        id=_text(rec.get("id") or "", "id"),
        label=_text(rec["label"], "label"),
        command=tuple(_text(c, "command") for c in command),
        cwd=str(rec.get("cwd") or ""),
        host=_text(rec["host"], "host"),
        started_at=_text(rec["started_at"], "started_at"),
        ended_at=str(rec.get("ended_at") or ""),
        duration_s=_number(rec["duration_s"], "duration_s"),
        exit_code=_maybe_int(rec.get("exit_code")),
        signal=_maybe_int(rec.get("signal")),
        cpu_time_s=_number(rec["cpu_time_s"], "cpu_time_s"),
        scope=_text(rec.get("scope") or "tree", "scope"),  # as the record says, for grouping
        pue=_number(rec["pue"], "pue"),
        energy_j=energy,
        machine_energy_j=_energies(rec.get("machine_energy_j"), "machine_energy_j", strict=False),
        co2e_g=_number(rec["co2e_g"], "co2e_g"),
        intensity=intensity,
        sensors=tuple(_sensor(s) for s in _dicts(rec.get("sensors")) if "domain" in s),
        gpus=_dicts(rec.get("gpus")),
        warnings=tuple(str(w) for w in warnings) if isinstance(warnings, list) else (),
        tags={_text(k, "tag"): str(v) for k, v in tags.items()},
        baseline_w=_object(rec.get("baseline_w")) or {},
        budget=_object(rec.get("budget")) or {},
        phases=_dicts(rec.get("phases")),
        prediction=_object(rec.get("prediction")),
        schedule=_object(rec.get("schedule")),
        live=live,
        idle_w={k: dict(v) for k, v in idle.items() if isinstance(v, dict)},
        parent_id=_text(rec.get("parent_id") or None, "parent_id", nullable=True),
        host_info=_object(rec.get("host_info")) or {},
    )


# The CSV row: the same data flattened, in a fixed order. New columns go at the end (older files keep theirs).
CSV_COLUMNS = (
    "schema",
    "id",
    "label",
    "command",
    "cwd",
    "host",
    "started_at",
    "ended_at",
    "duration_s",
    "exit_code",
    "signal",
    "cpu_time_s",
    "scope",
    "pue",
    "energy_cpu_j",
    "energy_dram_j",
    "energy_gpu_j",
    "energy_total_j",
    "machine_energy_cpu_j",
    "machine_energy_dram_j",
    "machine_energy_gpu_j",
    "machine_energy_total_j",
    "co2e_g",
    "intensity_region",
    "intensity_g_per_kwh",
    "intensity_year",
    "intensity_source",
    "intensity_how",
    "intensity_note",
    "method_cpu",
    "method_dram",
    "method_gpu",
    "warnings",  # a JSON array
    "tags",  # a JSON object
    "parent_id",
    "method_total",
)
_FLOATS = frozenset(
    ["duration_s", "cpu_time_s", "pue", "co2e_g", "intensity_g_per_kwh"]
    + [f"{p}energy_{k}_j" for p in ("", "machine_") for k in _ENERGY_KEYS]
)
_INTS = frozenset(["exit_code", "signal", "intensity_year"])
_NULLABLE = frozenset(["parent_id", "intensity_region", "method_cpu", "method_dram", "method_gpu", "method_total"])
# How from_row reads each column: float, int, nullable text, text.
_KIND = tuple((c, "f" if c in _FLOATS else "i" if c in _INTS else "n" if c in _NULLABLE else "t") for c in CSV_COLUMNS)

# A text cell that a spreadsheet would run as a formula gets one leading apostrophe (OWASP CSV injection).
# Apostrophes already in front of such a start are counted in, so that reading strips exactly what was added.
_FORMULA = "=+-@\t\r"  # what a spreadsheet runs as a formula when a cell starts with it
_NEEDS_ESCAPE = re.compile(f"'*[{re.escape(_FORMULA)}]")
_ESCAPED = re.compile(f"'+[{re.escape(_FORMULA)}]")


_STARTS = frozenset("'" + _FORMULA)


def escape_cell(value: object) -> object:
    if isinstance(value, str) and value[:1] in _STARTS and _NEEDS_ESCAPE.match(value):
        return "'" + value
    return value


def unescape_cell(cell: str) -> str:
    return cell[1:] if cell[:1] == "'" and _ESCAPED.match(cell) else cell


def to_row(rec: Mapping[str, Any]) -> dict[str, object]:
    """The record flattened by CSV column; None becomes an empty cell, text is formula-escaped."""
    flat: dict[str, object] = {k: rec[k] for k in CSV_COLUMNS if k in rec}
    flat["command"] = shlex.join(rec["command"])  # unambiguous, and pastes back into a shell
    for k in _ENERGY_KEYS:
        flat[f"energy_{k}_j"] = rec["energy_j"][k]
        flat[f"machine_energy_{k}_j"] = rec["machine_energy_j"][k]
    for k, v in rec["intensity"].items():
        flat[f"intensity_{k}"] = v
    for k, v in record_methods(rec).items():
        flat[f"method_{k}"] = v
    flat["warnings"] = json.dumps(list(rec["warnings"]), ensure_ascii=False)
    flat["tags"] = json.dumps(dict(rec["tags"]), ensure_ascii=False)
    return {c: "" if flat.get(c) is None else escape_cell(_cell(flat[c])) for c in CSV_COLUMNS}


def _cell(v: object) -> object:
    return clean_text(v) if isinstance(v, str) else v


def _float(cell: str) -> float | None:
    if cell == "":
        return None
    v = float(cell)
    if not math.isfinite(v):
        raise ValueError(f"non-finite number {cell[:20]!r}")
    return v


def _tags(cell: str) -> dict[str, str]:
    if cell.startswith("{"):
        tags = json.loads(cell)
        if not isinstance(tags, dict):
            raise ValueError("tags is not a JSON object")
        return {str(k): str(v) for k, v in tags.items()}
    out: dict[str, str] = {}  # before JSON cells: key=value;key=value
    for pair in filter(None, cell.split(";")):
        k, _, v = pair.partition("=")
        out[k] = v
    return out


def _warnings(cell: str) -> list[str]:
    if cell.startswith("["):
        with_json = json.loads(cell)
        if isinstance(with_json, list):
            return [str(w) for w in with_json]
    return cell.split(" | ") if cell else []  # before JSON cells


# The words of a POSIX shell line as shlex.join writes them, in linear time (shlex.split is quadratic in the
# length of a word, minutes for a command line of a few MB).
_WORD_PIECE = re.compile(r"""'([^']*)'|"((?:[^"\\]|\\.)*)"|\\(.)|([^ \t\r\n'"\\]+)|([ \t\r\n]+)""", re.S)
_DQ_ESCAPE = re.compile(r'\\([\\"])')


def split_command(line: str) -> list[str]:
    """shlex.split(line) for what shlex.join writes (and ordinary quoting); ValueError for an open quote."""
    words: list[str] = []
    word: list[str] | None = None
    pos = 0
    while pos < len(line):
        m = _WORD_PIECE.match(line, pos)
        if m is None:
            raise ValueError("no closing quotation in the command")
        pos = m.end()
        single, double, escaped, plain, space = m.groups()
        if space is not None:
            if word is not None:
                words.append("".join(word))
            word = None
            continue
        word = [] if word is None else word
        if single is not None:
            word.append(single)
        elif double is not None:
            word.append(_DQ_ESCAPE.sub(r"\1", double))
        else:
            word.append(escaped if escaped is not None else plain)
    if word is not None:
        words.append("".join(word))
    return words


def from_row(row: Mapping[str, str | None]) -> dict[str, Any]:
    """A record from a CSV row written by to_row (or by an older carbonwrap): exactly what the row holds."""
    cells: dict[str, Any] = {}
    get = row.get
    for c, kind in _KIND:
        raw = get(c)
        if raw is None:  # a column an older file does not have
            cells[c] = None
        elif kind == "f":
            cells[c] = _float(raw)
        elif kind == "i":
            cells[c] = int(raw) if raw != "" else None
        elif raw == "":
            cells[c] = None if kind == "n" else ""
        else:
            cells[c] = unescape_cell(raw) if raw[0] == "'" else raw
    energy = {k: cells[f"energy_{k}_j"] for k in _ENERGY_KEYS}
    methods = {d: cells[f"method_{d}"] for d in DOMAINS}
    parts = {d: set(str(m).split("+")) for d, m in methods.items() if m}
    decided = decide_methods(parts, energy)
    if cells["method_total"] in ("measured", "estimated"):
        decided["total"] = cells["method_total"]
    return {
        **{k: cells[k] for k in ("schema", "id", "parent_id", "label", "cwd", "host", "started_at", "ended_at")},
        "command": split_command(cells["command"] or ""),
        **{k: cells[k] for k in ("duration_s", "exit_code", "signal", "cpu_time_s", "scope", "pue", "co2e_g")},
        "energy_j": energy,
        "machine_energy_j": {k: cells[f"machine_energy_{k}_j"] for k in _ENERGY_KEYS},
        "methods": decided,
        "intensity": {k: cells[f"intensity_{k}"] for k in ("region", "g_per_kwh", "year", "source", "how", "note")},
        "warnings": _warnings(cells["warnings"] or ""),
        "tags": _tags(cells["tags"] or ""),
    }
