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

from carbonwrap import attribution
from carbonwrap.budget import Budget
from carbonwrap.marks import Mark, MarksReader
from carbonwrap.meter import Meter
from carbonwrap.model import Device, Event, EventKind, RunOptions, Sample, TreeUsage
from carbonwrap.phases import Phases
from carbonwrap.runner import KILL_GRACE_S, Child
from carbonwrap.sensors import Sensor, model_idle_w, read_all, read_period_s, take_notes

if TYPE_CHECKING:
    from carbonwrap import summarise
    from carbonwrap.report.observers import Observer
    from carbonwrap.runreport import RunReport


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
    if warnings is not None:
        warnings += take_notes(sensors)  # what a device said while idle power was measured
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
        """Never raises: the warning about a failing observer is itself told to the others, and one that
        fails there too is switched off at once, not called again."""
        for o in list(self.observers):
            if o not in self.observers:
                continue  # switched off meanwhile, by a failure in the telling of an earlier one's warning
            try:
                getattr(o, what)(*args)
            except Exception as e:
                if o in self.observers:
                    self.observers.remove(o)
                    t = float(getattr(args[0], "t_s", 0.0)) if args else 0.0
                    self.add(Event(t, "warning", f"{type(o).__name__} stopped: {e!r}"))


def isolated(what: str, step: Callable[[], object], notes: list[str], default: object = None) -> object:
    """`step()`, or `default` with a line in `notes` when it fails: after the launch, one failing step must
    cost a warning, never the record or the command's exit status."""
    try:
        return step()
    except Exception as e:
        notes.append(f"{what} failed: {e!r}")
        return default


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
    journal = _Journal(observers)
    loop = _Loop(options, sensors, child, journal, clock, budget, kill_grace_s, marks, phases, idle_w)
    started = loop.launch(wall)  # raises LaunchError: nothing measured
    loop.until_exit(on_clock)
    if on_exit is not None:
        on_exit()  # the command has exited: from here, what carbonwrap prints has a deadline
    loop.finish()
    ended = wall()
    journal.tell("finished")
    from carbonwrap import summarise

    facts = loop.facts((started, ended), run_id or uuid.uuid4().hex, tuple(warnings), devices, idle_w)
    return summarise.summarise(facts)


class _Loop:
    """One run from the read before the launch to the read after the command's exit."""

    def __init__(
        self,
        options: RunOptions,
        sensors: Sequence[Sensor],
        child: Child,
        journal: _Journal,
        clock: Callable[[], float],
        budget: Budget | None,
        kill_grace_s: float,
        marks: MarksReader | None,
        phases: Phases | None,
        idle_w: dict[str, float] | None,
    ) -> None:
        self.options, self.sensors, self.child, self.journal, self.clock = options, sensors, child, journal, clock
        self.budget, self.kill_grace_s, self.marks, self.phases = budget, kill_grace_s, marks, phases
        self.meter = Meter(options.scope, idle_w, model_idle_w(sensors))
        self.t0 = 0.0  # the meter counts seconds from here, just before the launch
        self.usage0 = TreeUsage(0.0, 0, 0, 0.0, 1)
        self.failure: str | None = None  # measurement broke: the totals cover the run until then
        self.exceeded: str | None = None
        self.kill_at: float | None = None
        self.killing = False
        self.last: Sample | None = None
        self.final: Sample | None = None  # the sample of the read after the command's exit
        self.waiting: list[Mark] = []  # marks read but not yet applied (a read waits for its mark gap)
        self.signals_told = 0  # of the child's forwarded signals, how many are in the journal
        self.t_end = 0.0

    def launch(self, wall: Callable[[], float]) -> float:
        """The counters just before the launch, then the launch; returns its wall-clock time."""
        self.t0 = self.clock()
        self.usage0 = self.child.usage(scan=False)
        self.meter.prime(read_all(self.sensors, self.usage0), self.usage0, 0.0)
        self._sensor_notes(self.t0)
        started = wall()
        self.child.spawn()
        self.journal.tell("started")
        return started

    def note(self, now: float, text: str, kind: EventKind = "warning") -> None:
        self.journal.note(now - self.t0, kind, text)

    def until_exit(self, on_clock: Callable[[], None] | None) -> None:
        """The drift-free tick loop: sleep in sigtimedwait until the tick, a signal, a mark or the exit."""
        clock, t0, interval = self.clock, self.t0, self.options.interval_s
        # Counters are read often enough that none can wrap twice unseen, whatever --interval says (SPEC §3).
        period = self._read_period()
        next_read = t0 + period if period is not None and period < interval else None
        mark_gap = min(1.0, max(0.05, interval / 10))
        next_mark_read = t0
        next_clock = clock() + 1.0
        k = 1
        while True:
            tick = t0 + k * interval
            phase_waits = any(m.kind == "phase" for m in self.waiting)
            wake = min(
                tick,
                self.kill_at if self.kill_at is not None else tick,
                next_clock if on_clock else tick,
                next_read if next_read is not None else tick,
                max(next_mark_read, clock()) if phase_waits else tick,
            )
            exited = self.child.wait(wake - clock())
            now = clock()
            self._signals(now)
            if exited:
                return
            if next_read is not None and now >= next_read and now < tick:
                self.absorb(now)
                next_read = now + (period or interval)
            self.killing = self.killing or self.kill_at is not None
            self.kill_survivors(now)
            if on_clock is not None and now >= next_clock:
                next_clock = now + 1.0
                on_clock = self._tick_clock(on_clock, now)
            self._collect_marks()
            if now < tick:
                if any(m.kind == "phase" for m in self.waiting) and now >= next_mark_read:
                    # A phase boundary between ticks is exact to this read; a flood of marks costs at most one
                    # read per mark_gap, and folds into the interval's sample rather than adding rows.
                    self.mark_read(now)
                    next_mark_read = now + mark_gap
                continue  # woken by a signal, the clock or the kill deadline before the tick
            k = int((now - t0) / interval) + 1  # a late tick skips ahead, it does not drift
            self.take(now, self.waiting)
            self.waiting = []
            if next_read is not None:
                next_read = now + (period or interval)

    def _signals(self, now: float) -> None:
        """Each signal passed on to the command, as an event when it was (the record lists them once, at the end)."""
        for name in self.child.forwarded[self.signals_told :]:
            self.note(now, f"{name} forwarded to the command", "signal")
        self.signals_told = len(self.child.forwarded)

    def _read_period(self) -> float | None:
        period = read_period_s(self.sensors)
        if period is not None and period < MIN_READ_PERIOD_S:  # a garbage range must not spin the loop
            self.journal.note(
                0.0,
                "warning",
                f"a counter's range would need a read every {period:.3g} s, which no RAPL zone needs; "
                f"reading every {MIN_READ_PERIOD_S:g} s instead (its energy may be wrong: check max_energy_range_uj)",
            )
            period = MIN_READ_PERIOD_S
        return period

    def _tick_clock(self, on_clock: Callable[[], None], now: float) -> Callable[[], None] | None:
        try:
            on_clock()
            return on_clock
        except Exception as e:
            self.note(now, f"live output stopped: {e!r}")
            return None

    def _collect_marks(self) -> None:
        self.waiting += self.poll_marks()
        if len(self.waiting) > 1 and not any(m.kind == "phase" for m in self.waiting):
            self.waiting = self.waiting[-1:]  # progress marks waiting for the tick: only the latest can matter

    def so_far(self, t_s: float, cpu_s: float) -> summarise.Totals:
        from carbonwrap import summarise  # after the launch: the first sample imports it

        o, m = self.options, self.meter
        return summarise.totals(t_s, m.machine_j, m.charged_j, cpu_s - self.usage0.cpu_s, o.pue, o.intensity.g_per_kwh)

    def check_budget(self, now: float, totals: summarise.Totals) -> None:
        budget = self.budget
        if budget is None or self.exceeded is not None:
            return
        self.exceeded = budget.exceeded(totals.energy_j, totals.co2e_g)
        if self.exceeded is None:
            return
        self.note(now, self.exceeded, "budget")
        if budget.on_budget == "kill" and self.child.status is None:
            n = self.child.signal_tree(signal.SIGTERM)
            self.kill_at = now + self.kill_grace_s
            at = now - self.t0
            self.note(
                now, f"{self.exceeded} at {at:.1f} s: sent SIGTERM to the command's {n} process(es) (--on-budget kill)"
            )

    def kill_survivors(self, now: float) -> None:
        if self.kill_at is not None and now >= self.kill_at:
            n = self.child.signal_tree(signal.SIGKILL)
            if n:
                self.note(now, f"{n} process(es) outlived SIGTERM by {self.kill_grace_s:g} s: sent SIGKILL")
            self.kill_at = None

    def _stopped(self, now: float, e: Exception) -> None:
        for event in self.meter.noticed():  # no sample will carry them now
            self.journal.add(event)
        self._sensor_notes(now)
        self.failure = f"measurement stopped at {now - self.t0:.1f} s: {e!r}; the totals cover the run until then"

    def _sensor_notes(self, now: float) -> None:
        for n in take_notes(self.sensors):
            self.note(now, n, "degraded")

    def take(self, now: float, got: list[Mark]) -> None:
        """Read every counter now, fold the interval into the meter, and hand the sample on."""
        if self.failure is not None:
            return  # measurement broke: keep waiting for the command, whose status must pass through
        try:
            tree = self.child.usage()
            sample = self.meter.update(read_all(self.sensors, tree), tree, now - self.t0)
            totals = self.so_far(sample.t_s, sample.tree_cpu_s)
            if self.phases is not None:
                self.phases.update(sample.t_s, totals.charged_j, got)
        except Exception as e:  # carbonwrap's failure must not cost the command
            self._stopped(now, e)
            return
        self.last = sample
        for event in sample.events:  # in the order they happened: the meter's, then what the sensors noted now
            self.journal.add(event)
        self._sensor_notes(now)
        self.check_budget(now, totals)
        self.journal.tell("sampled", sample, totals)

    def absorb(self, now: float) -> bool:
        """Read every counter between samples; the next sample reports it as part of its interval."""
        if self.failure is not None:
            return False
        try:
            tree = self.child.usage()
            self.meter.absorb(read_all(self.sensors, tree), tree, now - self.t0)
        except Exception as e:
            self._stopped(now, e)
            return False
        self._sensor_notes(now)
        return True

    def mark_read(self, now: float) -> None:
        got, self.waiting = self.waiting, []
        if self.absorb(now) and self.phases is not None:
            try:
                self.phases.update(now - self.t0, dict(self.meter.charged_j), got)
            except Exception as e:
                self.note(now, f"phases stopped: {e!r}")

    def poll_marks(self) -> list[Mark]:
        if self.marks is None:
            return []
        try:
            return self.marks.poll()
        except Exception as e:
            self.marks = None
            self.note(self.clock(), f"phase and progress marks stopped: {e!r}")
            return []

    def finish(self) -> None:
        """After the command's exit: the tree's end under --on-budget kill, then the final read."""
        clock = self.clock
        if self.killing or self.kill_at is not None:  # --on-budget kill: the whole tree goes, not just the command
            give_up = clock() + self.kill_grace_s + 5.0
            while self.child.tree_alive() and clock() < give_up:
                self.kill_survivors(clock())
                self.child.wait(0.05)
        self.t_end = clock()
        self._signals(self.t_end)  # any passed on while the tree was ended
        before = self.last
        if self.failure is None:
            self.take(self.t_end, self.waiting + self.poll_marks())
            if self.failure is not None:
                self.failure = self.failure.replace("measurement stopped", "the final read failed")
        self.final = self.last if self.last is not before else None
        if self.failure is not None:
            self.journal.note(self.t_end - self.t0, "warning", self.failure)

    def facts(
        self,
        walls: tuple[float, float],
        run_id: str,
        warnings: tuple[str, ...],
        devices: Callable[[], Sequence[Device]] | None,
        idle_w: dict[str, float] | None,
    ) -> summarise.RunFacts:
        """What the run gathered; each step after the command on its own, so one failure cannot cost the record."""
        from carbonwrap import summarise

        late: list[str] = []
        child, meter, c0 = self.child, self.meter, self.usage0.cpu_s
        isolated("ending carbonwrap's helper process", child.close, late)
        if self.final is not None:
            cpu_s = self.final.tree_cpu_s - c0
        else:
            cpu_s = float(isolated("the final CPU time", lambda: child.usage().cpu_s, late, c0)) - c0  # type: ignore[arg-type]
        gpus: object = ()
        if devices is not None:
            gpus = isolated(
                "the per-GPU figures", lambda: tuple(summarise.gpu_entries(devices(), meter.channel_j)), late, ()
            )
        shown: object = ((), None)
        if (phases := self.phases) is not None:
            shown = isolated("the phases", lambda: (tuple(phases.phases()), phases.prediction()), late, ((), None))
        assert child.status is not None
        budget = self.budget
        return summarise.RunFacts(
            options=self.options,
            id=run_id,
            started_at=_utc(walls[0]),
            ended_at=_utc(walls[1]),
            duration_s=self.t_end - self.t0,
            status=child.status,
            cpu_time_s=cpu_s,
            machine_j=dict(meter.machine_j),
            charged_j=dict(meter.charged_j),
            sensors=tuple(meter.sensor_info(i for s in self.sensors for i in s.info)),
            warnings=warnings,
            events=tuple(self.journal.events),
            late=(*_tree_notes(child), *late),
            gpus=gpus,  # type: ignore[arg-type]
            baseline_w=dict(idle_w or {}),
            idle_w=meter.idle_record(),
            budget=budget.outcome(self.exceeded, child.status[0]) if budget is not None else {},
            phases=shown[0],  # type: ignore[index]
            prediction=shown[1],  # type: ignore[index]
            cwd=_cwd(),
            host=os.uname().nodename,
            parent_id=os.environ.get("CARBONWRAP_PARENT_ID") or None,  # i14: set by the enclosing run
            host_info=_host_info(),
        )


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
