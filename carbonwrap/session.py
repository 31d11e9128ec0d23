"""One run: counters read before the launch, the drift-free tick loop, the final read. Owns the clock.

The run is a stream: every read folds into the meter, every interval comes out as a frozen Sample, and
whatever happens (a counter failing, a device degrading, a budget passed, a signal sent to the tree) is an
Event with its time. Observers see both; at the end `summarise` makes every figure from what was gathered."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from carbonwrap import attribution, summarise
from carbonwrap.budget import Budget
from carbonwrap.marks import Mark, MarksReader
from carbonwrap.meter import Meter
from carbonwrap.model import Device, Event, EventKind, RunOptions, RunReport, Sample
from carbonwrap.phases import Phases
from carbonwrap.runner import KILL_GRACE_S, Child
from carbonwrap.sensors import Sensor, model_idle_w, read_all, read_period_s, take_notes

if TYPE_CHECKING:
    from carbonwrap.report.observers import Observer


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
    meter.prime(read_all(sensors, before), before, 0.0)
    sleep(duration_s)
    dt = clock() - t0
    after = child.usage(scan=False)
    meter.update(read_all(sensors, after), after, dt)
    idle = {d: e / dt for d, e in meter.machine_j.items()} if dt > 0 else {}
    busy = attribution.baseline_warning(after.machine_busy_s - before.machine_busy_s, after.threads * dt, idle)
    if busy and warnings is not None:
        warnings.append(busy)
    return idle


class _Journal:
    """The run's events in order, each told to the observers as it happens; a failing observer is
    switched off with a warning and the others go on."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self.events: list[Event] = []
        self.observers = list(observers)

    def note(self, t_s: float, kind: EventKind, text: str) -> None:
        self.add(Event(t_s, kind, text))

    def add(self, event: Event) -> None:
        self.events.append(event)
        self.tell("noted", event)

    def tell(self, what: str, *args: object) -> None:
        for o in list(self.observers):
            try:
                getattr(o, what)(*args)
            except Exception as e:
                self.observers.remove(o)
                t = float(getattr(args[0], "t_s", 0.0)) if args else 0.0
                self.add(Event(t, "warning", f"{type(o).__name__} stopped: {e!r}"))


def run(
    options: RunOptions,
    sensors: Sequence[Sensor],
    child: Child,
    *,
    idle_w: dict[str, float] | None = None,
    warnings: Sequence[str] = (),
    budget: Budget | None = None,
    observers: Sequence[Observer] = (),
    devices: Callable[[], Sequence[Device]] | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
    run_id: str = "",
    kill_grace_s: float = KILL_GRACE_S,
    on_clock: Callable[[], None] | None = None,
    marks: MarksReader | None = None,
    phases: Phases | None = None,
    on_exit: Callable[[], None] | None = None,
) -> RunReport:
    """Launch the command, sample every interval until it exits, and return the report.

    `devices` lists the GPUs as they stand at the end; the record gives each its own energy. `on_clock` is
    called about once a second between samples (the live panel's clock). With `marks`, the counters are also
    read when a mark arrives, so `phases` gets its boundaries exact to that read. `observers` see every
    sample, the final partial interval included, and every event.
    """
    meter = Meter(options.scope, idle_w, model_idle_w(sensors))
    journal = _Journal(observers)
    t0 = clock()  # the meter counts seconds from here, just before the launch
    usage0 = child.usage(scan=False)
    meter.prime(read_all(sensors, usage0), usage0, 0.0)
    started = wall()
    child.spawn()  # raises LaunchError: nothing measured
    journal.tell("started")
    k = 1
    failure: str | None = None
    exceeded: str | None = None
    kill_at: float | None = None
    last: Sample | None = None
    pue, g_table = options.pue, options.intensity.g_per_kwh

    def so_far(t_s: float, cpu_s: float) -> summarise.Totals:
        return summarise.totals(t_s, meter.machine_j, meter.charged_j, cpu_s - usage0.cpu_s, pue, g_table)

    def check_budget(now: float, totals: summarise.Totals) -> None:
        nonlocal exceeded, kill_at
        if budget is None or exceeded is not None:
            return
        exceeded = budget.exceeded(totals.energy_j, totals.co2e_g)
        if exceeded is None:
            return
        journal.note(now - t0, "budget", exceeded)
        if budget.on_budget == "kill" and child.status is None:
            n = child.signal_tree(signal.SIGTERM)
            kill_at = now + kill_grace_s
            journal.note(
                now - t0,
                "warning",
                f"{exceeded} at {now - t0:.1f} s: sent SIGTERM to the command's {n} process(es) (--on-budget kill)",
            )

    def kill_survivors(now: float) -> None:
        nonlocal kill_at
        if kill_at is not None and now >= kill_at:
            n = child.signal_tree(signal.SIGKILL)
            if n:
                journal.note(
                    now - t0, "warning", f"{n} process(es) outlived SIGTERM by {kill_grace_s:g} s: sent SIGKILL"
                )
            kill_at = None

    def take(now: float, got: list[Mark]) -> None:
        """Read every counter now, fold the interval into the meter, and hand the sample on."""
        nonlocal failure, last
        if failure is not None:
            return  # measurement broke: keep waiting for the command, whose status must pass through
        try:
            tree = child.usage()
            readings = read_all(sensors, tree)
            last = meter.update(readings, tree, now - t0)
            totals = so_far(last.t_s, last.tree_cpu_s)
            if phases is not None:
                phases.update(last.t_s, totals.charged_j, got)
        except Exception as e:  # carbonwrap's failure must not cost the command
            failure = f"measurement stopped at {now - t0:.1f} s: {e!r}; the totals cover the run until then"
            return
        for n in take_notes(sensors):
            journal.note(now - t0, "degraded", n)
        for event in last.events:
            journal.add(event)
        check_budget(now, totals)
        journal.tell("sampled", last, totals)

    def poll_marks() -> list[Mark]:
        nonlocal marks
        if marks is None:
            return []
        try:
            return marks.poll()
        except Exception as e:
            marks = None
            journal.note(clock() - t0, "warning", f"phase and progress marks stopped: {e!r}")
            return []

    def absorb(now: float) -> bool:
        nonlocal failure
        if failure is None:
            try:
                tree = child.usage()
                meter.absorb(read_all(sensors, tree), tree, now - t0)
            except Exception as e:
                failure = f"measurement stopped at {now - t0:.1f} s: {e!r}; the totals cover the run until then"
                return False
            for n in take_notes(sensors):
                journal.note(now - t0, "degraded", n)
        return failure is None

    # Counters are read often enough that none can wrap twice unseen, whatever --interval says (SPEC §3).
    read_every = read_period_s(sensors)
    if read_every is not None and read_every < MIN_READ_PERIOD_S:  # a garbage range must not spin the loop
        journal.note(
            0.0,
            "warning",
            f"a counter's range would need a read every {read_every:.3g} s, which no RAPL zone needs; "
            f"reading every {MIN_READ_PERIOD_S:g} s instead (its energy may be wrong: check max_energy_range_uj)",
        )
        read_every = MIN_READ_PERIOD_S
    next_read = t0 + read_every if read_every is not None and read_every < options.interval_s else None

    def mark_read(now: float, got: list[Mark]) -> None:
        if absorb(now) and phases is not None:
            try:
                phases.update(now - t0, dict(meter.charged_j), got)
            except Exception as e:
                journal.note(now - t0, "warning", f"phases stopped: {e!r}")

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
                journal.note(now - t0, "warning", f"live output stopped: {e!r}")
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
    journal.tell("finished")
    late: list[str] = []  # after the command: each step on its own, so one failure cannot cost the record

    def isolated(what: str, step: Callable[[], object], default: object = None) -> object:
        try:
            return step()
        except Exception as e:
            late.append(f"{what} failed: {e!r}")
            return default

    isolated("ending carbonwrap's helper process", child.close)
    if failure is not None:
        journal.note(t_end - t0, "warning", failure)
    if final is not None:
        cpu_s = final.tree_cpu_s - usage0.cpu_s
    else:
        cpu_s = float(isolated("the final CPU time", lambda: child.usage().cpu_s, usage0.cpu_s)) - usage0.cpu_s  # type: ignore[arg-type]
    gpus: object = ()
    if devices is not None:
        gpus = isolated("the per-GPU figures", lambda: tuple(summarise.gpu_entries(devices(), meter.channel_j)), ())
    shown: object = ((), None)
    if phases is not None:
        shown = isolated("the phases", lambda: (tuple(phases.phases()), phases.prediction()), ((), None))
    assert child.status is not None
    facts = summarise.RunFacts(
        options=options,
        id=run_id or uuid.uuid4().hex,
        started_at=_utc(started),
        ended_at=_utc(ended),
        duration_s=t_end - t0,
        status=child.status,
        cpu_time_s=cpu_s,
        machine_j=dict(meter.machine_j),
        charged_j=dict(meter.charged_j),
        sensors=tuple(meter.sensor_info(i for s in sensors for i in s.info)),
        warnings=tuple(warnings),
        events=tuple(journal.events),
        late=(*_tree_notes(child), *late),
        gpus=gpus,  # type: ignore[arg-type]
        baseline_w=dict(idle_w or {}),
        idle_w=meter.idle_record(),
        budget=budget.outcome(exceeded, child.status[0]) if budget is not None else {},
        phases=shown[0],  # type: ignore[index]
        prediction=shown[1],  # type: ignore[index]
        cwd=_cwd(),
        host=os.uname().nodename,
        parent_id=os.environ.get("CARBONWRAP_PARENT_ID") or None,  # i14: set by the enclosing run
        host_info=_host_info(),
    )
    return summarise.summarise(facts)


def _tree_notes(child: Child) -> list[str]:
    """What the record says about the tree at the end: leftovers, and the signals passed on or not."""
    notes = []
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
    return notes


def _host_info() -> dict[str, object]:
    try:
        from carbonwrap import hostinfo  # after the run: platform and the CPU model are not the launch's business

        return hostinfo.collect()
    except Exception:  # a record without host_info beats no record
        return {}
