"""RunReport, the outcome of one run: summarise makes it after the command has exited, report.record writes
it as the record and reads it back. No module imported before the launch imports this one: a frozen
dataclass of thirty fields takes milliseconds to create. No third-party imports."""

from __future__ import annotations

from dataclasses import dataclass, field

from carbonwrap.model import Intensity, Scope, SensorInfo


@dataclass(frozen=True, slots=True)
class RunReport:
    """The outcome of one run; the record of SPEC.md section 5 is built from it."""

    id: str
    label: str
    command: tuple[str, ...]
    cwd: str
    host: str
    started_at: str
    ended_at: str
    duration_s: float
    exit_code: int | None  # None only while the run is still going (a periodic push)
    signal: int | None
    cpu_time_s: float
    scope: Scope
    pue: float
    energy_j: dict[str, float | None]
    machine_energy_j: dict[str, float | None]
    co2e_g: float
    intensity: Intensity
    sensors: tuple[SensorInfo, ...]
    gpus: tuple[dict[str, object], ...] = ()
    warnings: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    baseline_w: dict[str, float] = field(default_factory=dict)
    budget: dict[str, object] = field(default_factory=dict)  # limits, policy and what happened
    phases: tuple[dict[str, object], ...] = ()  # SPEC section 10.2: the run starts in `main`
    prediction: dict[str, float] | None = None  # from the latest progress mark
    schedule: dict[str, object] | None = None  # SPEC section 9.1, when the start waited for a cleaner grid
    live: dict[str, object] = field(default_factory=dict)  # SPEC section 8's intensity fields, with --grid live
    idle_w: dict[str, dict[str, object]] = field(default_factory=dict)  # {domain: {w, source}} (SPEC.md §3)
    parent_id: str | None = None  # the enclosing carbonwrap run's id (CARBONWRAP_PARENT_ID), if any
    host_info: dict[str, object] = field(default_factory=dict)  # hostinfo.collect()
