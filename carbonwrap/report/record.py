"""The run record of SPEC.md section 5, as a dict and as a flat CSV row. No third-party imports."""

from __future__ import annotations

import shlex
from dataclasses import asdict
from typing import Any

from carbonwrap.model import RunReport

SCHEMA = "carbonwrap.run/1"
_ENERGY_KEYS = ("cpu", "dram", "gpu", "total")


def to_record(r: RunReport) -> dict[str, Any]:
    it = r.intensity
    return {
        "schema": SCHEMA,
        "id": r.id,
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
        "energy_j": {k: r.energy_j.get(k) for k in _ENERGY_KEYS},
        "machine_energy_j": {k: r.machine_energy_j.get(k) for k in _ENERGY_KEYS},
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
        "sensors": [asdict(s) for s in r.sensors],
        "gpus": [dict(g) for g in r.gpus],
        "warnings": list(r.warnings),
        "tags": dict(r.tags),
        "baseline_w": dict(r.baseline_w),
        "idle_w": {k: dict(v) for k, v in r.idle_w.items()},
        "budget": dict(r.budget) or None,
        "schedule": dict(r.schedule) if r.schedule is not None else None,
        "phases": [dict(p) for p in r.phases],
        "prediction": dict(r.prediction) if r.prediction is not None else None,
    }


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
    "warnings",
    "tags",
)


def _methods(rec: dict[str, Any], domain: str) -> str:
    methods = sorted({s["method"] for s in rec["sensors"] if s["domain"] == domain})
    return "+".join(methods)


def to_row(rec: dict[str, Any]) -> list[object]:
    """The record flattened in CSV_COLUMNS order; None becomes an empty cell."""
    flat: dict[str, object] = {k: rec[k] for k in CSV_COLUMNS if k in rec}
    flat["command"] = shlex.join(rec["command"])  # unambiguous, and pastes back into a shell
    for k in _ENERGY_KEYS:
        flat[f"energy_{k}_j"] = rec["energy_j"][k]
        flat[f"machine_energy_{k}_j"] = rec["machine_energy_j"][k]
    for k, v in rec["intensity"].items():
        flat[f"intensity_{k}"] = v
    for d in ("cpu", "dram", "gpu"):
        flat[f"method_{d}"] = _methods(rec, d)
    flat["warnings"] = " | ".join(rec["warnings"])
    flat["tags"] = ";".join(f"{k}={v}" for k, v in rec["tags"].items())
    return ["" if flat.get(c) is None else flat[c] for c in CSV_COLUMNS]
