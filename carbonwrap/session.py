"""One run: counters read before the launch, the drift-free tick loop, the final read. Owns the clock."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from carbonwrap import hostinfo
from carbonwrap.budget import Budget
from carbonwrap.meter import Meter
from carbonwrap.model import DOMAINS, Device, Reading, RunOptions, RunReport, Sample, SensorInfo, co2e_g
from carbonwrap.runner import Child
from carbonwrap.sensors import Sensor


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


KILL_GRACE_S = 10.0  # --on-budget kill: SIGTERM, then SIGKILL this long after


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:  # the directory was removed while the command ran
        return os.environ.get("PWD", "")


def read_all(sensors: Sequence[Sensor]) -> list[Reading]:
    return [r for s in sensors for r in s.read()]


def measure_idle(
    sensors: Sequence[Sensor],
    child: Child,
    duration_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, float]:
    """Mean machine power per domain over `duration_s` before anything is launched (--baseline)."""
    meter = Meter("machine")
    t0 = clock()
    meter.prime(read_all(sensors), child.usage(scan=False), 0.0)
    sleep(duration_s)
    dt = clock() - t0
    meter.update(read_all(sensors), child.usage(scan=False), dt)
    return {d: e / dt for d, e in meter.machine_j.items()} if dt > 0 else {}


def run(
    options: RunOptions,
    sensors: Sequence[Sensor],
    child: Child,
    *,
    idle_w: dict[str, float] | None = None,
    warnings: Sequence[str] = (),
    budget: Budget | None = None,
    notify: Callable[[str], None] | None = None,
    on_sample: Callable[[Sample, Meter], None] | None = None,
    devices: Callable[[], Sequence[Device]] | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> RunReport:
    """Launch the command, sample every interval until it exits, and return the report.

    `devices` lists the GPUs as they stand at the end; the record gives each its own energy.
    """
    meter = Meter(options.scope, idle_w)
    t0 = clock()  # the meter counts seconds from here, just before the launch
    usage0 = child.usage(scan=False)
    meter.prime(read_all(sensors), usage0, 0.0)
    started = wall()
    child.spawn()  # raises LaunchError: nothing measured
    k = 1
    failure: str | None = None
    exceeded: str | None = None
    kill_at: float | None = None

    def check_budget(now: float) -> None:
        nonlocal exceeded, kill_at
        if budget is None or exceeded is not None:
            return
        total = sum(meter.charged_j.values())
        exceeded = budget.exceeded(total, co2e_g(total, options.pue, options.intensity.g_per_kwh))
        if exceeded is None:
            return
        if notify is not None:
            notify(exceeded)
        if budget.on_budget == "kill" and child.status is None:
            child.send(signal.SIGTERM)
            kill_at = now + KILL_GRACE_S
            meter.warnings.append(f"{exceeded} at {now - t0:.1f} s: sent SIGTERM to the command (--on-budget kill)")

    while True:
        tick = t0 + k * options.interval_s
        if child.wait((tick if kill_at is None else min(tick, kill_at)) - clock()):
            break
        now = clock()
        if kill_at is not None and now >= kill_at:
            child.send(signal.SIGKILL)
            meter.warnings.append(f"the command outlived SIGTERM by {KILL_GRACE_S:g} s: sent SIGKILL")
            kill_at = None
        if now < tick:
            continue  # woken by a signal or the kill deadline before the tick
        k = int((now - t0) / options.interval_s) + 1  # a late tick skips ahead, it does not drift
        if failure is not None:
            continue  # measurement broke: keep waiting for the command, whose status must pass through
        try:
            usage = child.usage()  # first: a GPU's share needs the tree as it is now
            sample = meter.update(read_all(sensors), usage, now - t0)
        except Exception as e:  # carbonwrap's failure must not cost the command
            failure = f"measurement stopped at {now - t0:.1f} s: {e!r}; the totals cover the run until then"
            continue
        check_budget(now)
        if on_sample is not None:
            try:
                on_sample(sample, meter)
            except Exception as e:
                on_sample = None
                meter.warnings.append(f"live output stopped: {e!r}")
    t_end = clock()
    final = None
    if failure is None:
        try:
            usage = child.usage()
            final = meter.update(read_all(sensors), usage, t_end - t0)
        except Exception as e:
            failure = f"the final read failed: {e!r}; the totals cover the run until the last sample"
    ended = wall()
    check_budget(t_end)
    if failure is not None:
        meter.warnings.append(failure)
    cpu_s = (final.tree_cpu_s if final else child.usage().cpu_s) - usage0.cpu_s
    report = _report(options, sensors, child, meter, (started, ended, t_end - t0), cpu_s, idle_w, warnings)
    if devices is not None:
        report = replace(report, gpus=tuple(gpu_entries(devices(), meter)))
    if budget is None:
        return report
    limits = {"max_co2e_g": budget.max_co2e_g, "max_energy_j": budget.max_energy_j, "on_budget": budget.on_budget}
    return replace(report, budget={**limits, "exceeded": exceeded})


def gpu_entries(devices: Sequence[Device], meter: Meter) -> list[dict[str, object]]:
    """The record's `gpus`: each device with its whole energy and the part charged to the scope."""
    out: list[dict[str, object]] = []
    for d in devices:
        machine_j, charged_j = meter.channel_j.get(("gpu", d.channel), (0.0, 0.0))
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


def _report(
    options: RunOptions,
    sensors: Sequence[Sensor],
    child: Child,
    meter: Meter,
    times: tuple[float, float, float],
    cpu_time_s: float,
    idle_w: dict[str, float] | None,
    warnings: Sequence[str],
) -> RunReport:
    assert child.status is not None
    started, ended, duration = times
    exit_code, sig = child.status
    notes = list(warnings) + meter.warnings
    if not child.subreaper:
        notes.append("could not become a child subreaper: orphaned descendants may be missed")
    left = child.leftovers()
    if left:
        names = ", ".join(f"{p.comm} (pid {p.pid})" for p in left[:10])
        more = f" and {len(left) - 10} more" if len(left) > 10 else ""
        notes.append(
            f"{len(left)} descendant(s) still running when the command exited, measured until then: {names}{more}"
        )
    if child.forwarded:
        notes.append(f"forwarded to the command: {', '.join(child.forwarded)}")
    present = {r for r in meter.machine_j}
    energy = {d: (meter.charged_j[d] if d in present else None) for d in DOMAINS}
    machine = {d: (meter.machine_j[d] if d in present else None) for d in DOMAINS}
    energy["total"] = sum(v for v in energy.values() if v is not None)
    machine["total"] = sum(v for v in machine.values() if v is not None)
    info: list[SensorInfo] = [i for s in sensors for i in s.info]
    it = options.intensity
    return RunReport(
        id=uuid.uuid4().hex,
        label=options.label,
        command=options.command,
        cwd=_cwd(),
        host=os.uname().nodename,
        started_at=_utc(started),
        ended_at=_utc(ended),
        duration_s=duration,
        exit_code=exit_code,
        signal=sig,
        cpu_time_s=max(cpu_time_s, 0.0),
        scope=options.scope,
        pue=options.pue,
        energy_j=energy,
        machine_energy_j=machine,
        co2e_g=co2e_g(energy["total"] or 0.0, options.pue, it.g_per_kwh),
        intensity=it,
        sensors=tuple(info),
        warnings=tuple(notes),
        tags=dict(options.tags),
        baseline_w=dict(idle_w or {}),
        parent_id=os.environ.get("CARBONWRAP_PARENT_ID") or None,  # i14: set by the enclosing run
        host_info=hostinfo.collect(),  # i14
    )
