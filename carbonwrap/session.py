"""One run: counters read before the launch, the drift-free tick loop, the final read. Owns the clock."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from carbonwrap import attribution
from carbonwrap.budget import Budget
from carbonwrap.marks import Mark, MarksReader
from carbonwrap.meter import Meter
from carbonwrap.model import DOMAINS, Device, RunOptions, RunReport, Sample, SensorInfo, co2e_g
from carbonwrap.phases import Phases
from carbonwrap.runner import KILL_GRACE_S, Child
from carbonwrap.sensors import Sensor, model_idle_w, read_all, read_period_s


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


MIN_READ_PERIOD_S = 0.05  # the shortest --interval: a counter that claims to need more is not plausible


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:  # the directory was removed while the command ran
        return os.environ.get("PWD", "")


def measure_idle(
    sensors: Sequence[Sensor],
    child: Child,
    duration_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    warnings: list[str] | None = None,
) -> dict[str, float]:
    """Mean machine power per domain over `duration_s` before anything is launched (--baseline).

    A machine busy with other work meanwhile makes a poor idle figure: `warnings` gets a line saying so."""
    meter = Meter("machine")
    t0 = clock()
    before = child.usage(scan=False)
    meter.prime(read_all(sensors), before, 0.0)
    sleep(duration_s)
    dt = clock() - t0
    after = child.usage(scan=False)
    meter.update(read_all(sensors), after, dt)
    idle = {d: e / dt for d, e in meter.machine_j.items()} if dt > 0 else {}
    busy = attribution.baseline_warning(after.machine_busy_s - before.machine_busy_s, after.threads * dt, idle)
    if busy and warnings is not None:
        warnings.append(busy)
    return idle


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
    run_id: str | None = None,
    kill_grace_s: float = KILL_GRACE_S,
    on_clock: Callable[[], None] | None = None,
    marks: MarksReader | None = None,
    phases: Phases | None = None,
    on_exit: Callable[[], None] | None = None,
) -> RunReport:
    """Launch the command, sample every interval until it exits, and return the report.

    `devices` lists the GPUs as they stand at the end; the record gives each its own energy. `on_clock` is
    called about once a second between samples (the live panel's clock). With `marks`, the counters are also
    read when a mark arrives, so `phases` gets its boundaries exact to that read. `on_sample` sees every
    sample, the final partial interval included.
    """
    meter = Meter(options.scope, idle_w, model_idle_w(sensors))
    t0 = clock()  # the meter counts seconds from here, just before the launch
    usage0 = child.usage(scan=False)
    meter.prime(read_all(sensors), usage0, 0.0)
    started = wall()
    child.spawn()  # raises LaunchError: nothing measured
    k = 1
    failure: str | None = None
    exceeded: str | None = None
    kill_at: float | None = None
    last: Sample | None = None
    g_table = options.intensity.g_per_kwh

    def check_budget(now: float) -> None:
        nonlocal exceeded, kill_at
        if budget is None or exceeded is not None:
            return
        total = sum(meter.charged_j.values())
        exceeded = budget.exceeded(total, co2e_g(total, options.pue, g_table))
        if exceeded is None:
            return
        if notify is not None:
            notify(exceeded)
        if budget.on_budget == "kill" and child.status is None:
            n = child.signal_tree(signal.SIGTERM)
            kill_at = now + kill_grace_s
            meter.warnings.append(
                f"{exceeded} at {now - t0:.1f} s: sent SIGTERM to the command's {n} process(es) (--on-budget kill)"
            )

    def kill_survivors(now: float) -> None:
        nonlocal kill_at
        if kill_at is not None and now >= kill_at:
            n = child.signal_tree(signal.SIGKILL)
            if n:
                meter.warnings.append(f"{n} process(es) outlived SIGTERM by {kill_grace_s:g} s: sent SIGKILL")
            kill_at = None

    def take(now: float, got: list[Mark]) -> None:
        """Read every counter now, fold the interval into the meter, and hand the sample on."""
        nonlocal failure, on_sample, last
        if failure is not None:
            return  # measurement broke: keep waiting for the command, whose status must pass through
        try:
            usage = child.usage()  # first: a GPU's share needs the tree as it is now
            last = meter.update(read_all(sensors), usage, now - t0)
            if phases is not None:
                phases.update(last.t_s, meter.charged_j, got)
        except Exception as e:  # carbonwrap's failure must not cost the command
            failure = f"measurement stopped at {now - t0:.1f} s: {e!r}; the totals cover the run until then"
            return
        check_budget(now)
        if on_sample is not None:
            try:
                on_sample(last, meter)
            except Exception as e:
                on_sample = None
                meter.warnings.append(f"live output stopped: {e!r}")

    def poll_marks() -> list[Mark]:
        nonlocal marks
        if marks is None:
            return []
        try:
            return marks.poll()
        except Exception as e:
            marks = None
            meter.warnings.append(f"phase and progress marks stopped: {e!r}")
            return []

    def absorb(now: float) -> None:
        nonlocal failure
        if failure is None:
            try:
                meter.absorb(read_all(sensors), child.usage(), now - t0)
            except Exception as e:
                failure = f"measurement stopped at {now - t0:.1f} s: {e!r}; the totals cover the run until then"

    # Counters are read often enough that none can wrap twice unseen, whatever --interval says (SPEC §3).
    read_every = read_period_s(sensors)
    if read_every is not None and read_every < MIN_READ_PERIOD_S:  # a garbage range must not spin the loop
        meter.warnings.append(
            f"a counter's range would need a read every {read_every:.3g} s, which no RAPL zone needs; "
            f"reading every {MIN_READ_PERIOD_S:g} s instead (its energy may be wrong: check max_energy_range_uj)"
        )
        read_every = MIN_READ_PERIOD_S
    next_read = t0 + read_every if read_every is not None and read_every < options.interval_s else None

    def mark_read(now: float, got: list[Mark]) -> None:
        absorb(now)
        if failure is None and phases is not None:
            try:
                phases.update(now - t0, meter.charged_j, got)
            except Exception as e:
                meter.warnings.append(f"phases stopped: {e!r}")

    waiting: list[Mark] = []  # marks read but not yet applied (a read waits for its mark_gap)
    mark_gap = min(1.0, max(0.05, options.interval_s / 10))
    next_mark_read = t0
    killing = False
    next_clock = clock() + 1.0
    while True:
        tick = t0 + k * options.interval_s
        wake = min(
            tick,
            kill_at if kill_at is not None else tick,
            next_clock if on_clock else tick,
            next_read if next_read is not None else tick,
            max(next_mark_read, clock()) if any(m.kind == "phase" for m in waiting) else tick,
        )
        if child.wait(wake - clock()):
            break
        now = clock()
        if next_read is not None and read_every is not None and now >= next_read and now < tick:
            absorb(now)
            next_read = now + read_every
        killing = killing or kill_at is not None
        kill_survivors(now)
        if on_clock is not None and now >= next_clock:
            next_clock = now + 1.0
            try:
                on_clock()
            except Exception as e:
                on_clock = None
                meter.warnings.append(f"live output stopped: {e!r}")
        waiting += poll_marks()
        if len(waiting) > 1 and not any(m.kind == "phase" for m in waiting):
            waiting = waiting[-1:]  # progress marks waiting for the tick: only the latest can matter
        if now < tick:
            if any(m.kind == "phase" for m in waiting) and now >= next_mark_read:
                # A phase boundary between ticks is exact to this read; a flood of marks costs at most one
                # read per mark_gap, and folds into the interval's sample rather than adding rows.
                mark_read(now, waiting)
                waiting, next_mark_read = [], now + mark_gap
            continue  # woken by a signal, the clock or the kill deadline before the tick
        k = int((now - t0) / options.interval_s) + 1  # a late tick skips ahead, it does not drift
        take(now, waiting)
        waiting = []
        if next_read is not None and read_every is not None:
            next_read = now + read_every
    if on_exit is not None:
        on_exit()  # the command has exited: from here, what carbonwrap prints has a deadline
    if killing or kill_at is not None:  # --on-budget kill: the whole tree goes, not just the command
        give_up = clock() + kill_grace_s + 5.0
        while child.tree_alive() and clock() < give_up:
            kill_survivors(clock())
            child.wait(0.05)
    t_end = clock()
    before_final = last
    if failure is None:
        take(t_end, waiting + poll_marks())
        if failure is not None:
            failure = failure.replace("measurement stopped", "the final read failed")
    final = last if last is not before_final else None
    ended = wall()
    late: list[str] = []  # after the command: each step on its own, so one failure cannot cost the record

    def isolated(what: str, step: Callable[[], object], default: object = None) -> object:
        try:
            return step()
        except Exception as e:
            late.append(f"{what} failed: {e!r}")
            return default

    isolated("ending carbonwrap's helper process", child.close)
    if failure is not None:
        meter.warnings.append(failure)
    if final is not None:
        cpu_s = final.tree_cpu_s - usage0.cpu_s
    else:
        cpu_s = float(isolated("the final CPU time", lambda: child.usage().cpu_s, usage0.cpu_s)) - usage0.cpu_s  # type: ignore[arg-type]
    report = _report(options, sensors, child, meter, (started, ended, t_end - t0), cpu_s, idle_w, warnings)
    if run_id:
        report = replace(report, id=run_id)
    if devices is not None:
        gpus = isolated("the per-GPU figures", lambda: tuple(gpu_entries(devices(), meter)), ())
        report = replace(report, gpus=gpus)  # type: ignore[arg-type]
    if phases is not None:
        shown = isolated("the phases", lambda: (tuple(phases.phases()), phases.prediction()), ((), None))
        report = replace(report, phases=shown[0], prediction=shown[1])  # type: ignore[index]
    if late:
        report = replace(report, warnings=(*report.warnings, *late))
    if budget is None:
        return report
    return replace(report, budget=budget.outcome(exceeded, report.exit_code))


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


def _host_info() -> dict[str, object]:
    try:
        from carbonwrap import hostinfo  # after the run: platform and the CPU model are not the launch's business

        return hostinfo.collect()
    except Exception:  # a record without host_info beats no record
        return {}


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
    if child.not_forwarded:
        notes.append(f"signals not passed on to the command: {', '.join(child.not_forwarded)}")
    present = {r for r in meter.machine_j}
    energy = {d: (meter.charged_j[d] if d in present else None) for d in DOMAINS}
    machine = {d: (meter.machine_j[d] if d in present else None) for d in DOMAINS}
    energy["total"] = sum(v for v in energy.values() if v is not None)
    machine["total"] = sum(v for v in machine.values() if v is not None)
    info: list[SensorInfo] = meter.sensor_info(i for s in sensors for i in s.info)
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
        idle_w=meter.idle_record() if options.scope == "tree" else {},
        parent_id=os.environ.get("CARBONWRAP_PARENT_ID") or None,  # i14: set by the enclosing run
        host_info=_host_info(),
    )
