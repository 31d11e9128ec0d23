"""Every figure of a run, made in one place from what the run gathered. Pure: no I/O, no clock.

The record, the periodic pushes, the panel's and progress lines' totals, the phases and the live price all
take their figures from here: CO2e from `co2e_g` (one interval or the whole run at one intensity; a time-
varying intensity is priced interval by interval through it), the energy fields and their total from
`energy_fields`, "measured" or "estimated" from `decide_methods`, and the RunReport from `summarise`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from carbonwrap.model import DOMAINS, J_PER_KWH, Device, Event, Method, RunOptions, SensorInfo

if TYPE_CHECKING:
    from carbonwrap.runreport import RunReport

ENERGY_KEYS = (*DOMAINS, "total")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def co2e_g(energy_j: float, pue: float, g_per_kwh: float) -> float:
    """Grams of CO2e for `energy_j` joules at the meter, before PUE, at `g_per_kwh` (SPEC.md section 3)."""
    return energy_j * pue / J_PER_KWH * g_per_kwh


def kwh(energy_j: float, pue: float = 1.0) -> float:
    """The energy the grid delivered for `energy_j` joules at the meter."""
    return energy_j * pue / J_PER_KWH


def energy_fields(by_domain: Mapping[str, float]) -> dict[str, float | None]:
    """The record's energy object: every domain (None where it was not measured at all) and their total."""
    out: dict[str, float | None] = {d: (float(by_domain[d]) if d in by_domain else None) for d in DOMAINS}
    out["total"] = sum(v for v in out.values() if v is not None)
    return out


def decide_methods(
    domain_methods: Mapping[str, Iterable[str]], energy_j: Mapping[str, float | None]
) -> dict[str, Method | None]:
    """The one rule for 'measured' / 'estimated' (SPEC.md section 3), which every renderer reads.

    A domain that is absent (energy None) is None; a present domain is measured only when every part of it
    was measured. The total is estimated when a present domain that was charged anything is estimated (when
    nothing was charged, when any present domain is); None when no domain is present.
    """
    out: dict[str, Method | None] = {}
    for d in DOMAINS:
        if energy_j.get(d) is None:
            out[d] = None
            continue
        seen = set(domain_methods.get(d, ()))
        out[d] = "measured" if seen == {"measured"} else "estimated"
    present = [d for d in DOMAINS if out[d] is not None]
    charged = [d for d in present if energy_j.get(d)] or present
    if not present:
        out["total"] = None
    else:
        out["total"] = "estimated" if any(out[d] == "estimated" for d in charged) else "measured"
    return out


def methods_from_sensors(
    sensors: Iterable[Mapping[str, Any]], energy_j: Mapping[str, float | None]
) -> dict[str, Method | None]:
    """decide_methods over the record's `sensors` entries."""
    per_domain: dict[str, set[str]] = {}
    for s in sensors:
        per_domain.setdefault(str(s["domain"]), set()).add(str(s["method"]))
    return decide_methods(per_domain, energy_j)


class Totals(NamedTuple):
    """The run so far, as observers see it: a snapshot, not the meter. (NamedTuple, not a dataclass: it is
    made after the launch, where a millisecond of class creation shows in carbonwrap's own time.)"""

    t_s: float
    machine_j: Mapping[str, float]
    charged_j: Mapping[str, float]
    cpu_s: float  # the tree's CPU seconds since the launch
    co2e_g: float

    @property
    def energy_j(self) -> float:
        return sum(self.charged_j.values())


def totals(
    t_s: float, machine_j: Mapping[str, float], charged_j: Mapping[str, float], cpu_s: float, pue: float, g: float
) -> Totals:
    charged = MappingProxyType(dict(charged_j))
    return Totals(t_s, MappingProxyType(dict(machine_j)), charged, cpu_s, co2e_g(sum(charged.values()), pue, g))


def gpu_entries(
    devices: Sequence[Device], channel_j: Mapping[tuple[str, str], Sequence[float]]
) -> list[dict[str, Any]]:
    """The record's `gpus`: each device with its whole energy and the part charged to the scope."""
    out: list[dict[str, Any]] = []
    for d in devices:
        machine_j, charged_j = channel_j.get(("gpu", d.channel), (0.0, 0.0))
        out.append(
            {
                "index": d.index,
                "name": d.name,
                "uuid": d.uuid,
                "energy_j": machine_j,
                "charged_j": charged_j,
                "method": d.method,
                "mig": d.mig,
                "note": d.note,
            }
        )
    return out


class RunFacts(NamedTuple):
    """What one run gathered, as the session hands it over; `status` None for a run still going."""

    options: RunOptions
    id: str
    started_at: str
    ended_at: str
    duration_s: float
    status: tuple[int, int | None] | None
    cpu_time_s: float
    machine_j: Mapping[str, float]
    charged_j: Mapping[str, float]
    sensors: tuple[SensorInfo, ...]
    warnings: tuple[str, ...] = ()  # noted before the launch
    events: tuple[Event, ...] = ()  # noted during the run, in order
    late: tuple[str, ...] = ()  # noted after the command: the tree's leftovers, signals passed on, failures
    gpus: tuple[dict[str, Any], ...] = ()
    baseline_w: Mapping[str, float] = _EMPTY
    idle_w: Mapping[str, dict[str, object]] = _EMPTY
    budget: Mapping[str, object] = _EMPTY
    phases: tuple[dict[str, object], ...] = ()
    prediction: dict[str, float] | None = None
    cwd: str = ""
    host: str = ""
    parent_id: str | None = None
    host_info: Mapping[str, object] = _EMPTY


def summarise(f: RunFacts) -> RunReport:
    """The RunReport, every figure in it made here; the record is its serialisation (report.record)."""
    from carbonwrap.runreport import RunReport  # after the command: its class costs milliseconds to make

    o = f.options
    energy = energy_fields(f.charged_j)
    exit_code, sig = f.status if f.status is not None else (None, None)
    # A budget passed is in the record's `budget` and the signals passed on are listed once at the end (in
    # `late`); everything else that happened is a warning.
    notes = (*f.warnings, *(e.text for e in f.events if e.kind not in ("budget", "signal")), *f.late)
    total = energy["total"] or 0.0
    return RunReport(
        id=f.id,
        label=o.label,
        command=o.command,
        cwd=f.cwd,
        host=f.host,
        started_at=f.started_at,
        ended_at=f.ended_at,
        duration_s=f.duration_s,
        exit_code=exit_code,
        signal=sig,
        cpu_time_s=max(f.cpu_time_s, 0.0) if math.isfinite(f.cpu_time_s) else 0.0,
        scope=o.scope,
        pue=o.pue,
        energy_j=energy,
        machine_energy_j=energy_fields(f.machine_j),
        co2e_g=co2e_g(total, o.pue, o.intensity.g_per_kwh),
        intensity=o.intensity,
        sensors=f.sensors,
        gpus=f.gpus,
        warnings=notes,
        tags=dict(o.tags),
        baseline_w=dict(f.baseline_w),
        budget=dict(f.budget),
        phases=f.phases,
        prediction=f.prediction,
        idle_w=dict(f.idle_w) if o.scope == "tree" else {},
        parent_id=f.parent_id,
        host_info=dict(f.host_info),
    )


def so_far(options: RunOptions, t: Totals, sensors: tuple[SensorInfo, ...], run_id: str) -> RunReport:
    """The report of a run still going (a periodic push): its totals so far, no exit status yet."""
    facts = RunFacts(options, run_id, "", "", t.t_s, None, t.cpu_s, t.machine_j, t.charged_j, sensors)
    return summarise(facts)
