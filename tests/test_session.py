"""The session loop with real child processes: drift-free ticks, and carbonwrap's own failures."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import pytest

from carbonwrap import session
from carbonwrap.budget import Budget
from carbonwrap.model import Event, Intensity, Reading, RunOptions, Sample, SensorInfo
from carbonwrap.report.observers import Observer
from carbonwrap.runner import Child
from carbonwrap.summarise import Totals

WORLD = Intensity("WLD", "World", 472.94, 2024, "Ember", "default")


class BreaksOnRead:
    """A sensor whose driver fails after `good` reads with an exception carbonwrap does not expect."""

    def __init__(self, good: int) -> None:
        self.reads = 0
        self.good = good
        self.info = [SensorInfo("cpu", "flaky", "measured", "a sensor that breaks")]

    def read(self, tree: object = None) -> Sequence[Reading]:
        self.reads += 1
        if self.reads > self.good:
            raise RuntimeError("driver went away")
        return [Reading("cpu", "flaky", energy_j=10.0 * self.reads)]

    def close(self) -> None:
        pass


@pytest.fixture
def child_of() -> Iterator[Callable[[tuple[str, ...]], Child]]:
    """A Child whose signal mask is given back after the test: the session blocks signals in-process."""
    made: list[Child] = []

    def make(cmd: tuple[str, ...]) -> Child:
        made.append(Child(cmd))
        return made[-1]

    yield make
    for c in made:
        c.release()


def _options(*command: str, interval: float = 0.05) -> RunOptions:
    return RunOptions(command=command, intensity=WORLD, interval_s=interval, label="t")


def test_a_failing_sensor_mid_run_keeps_the_commands_status(child_of) -> None:
    cmd = (sys.executable, "-c", "import time, sys; time.sleep(0.5); sys.exit(9)")
    sensor = BreaksOnRead(good=3)
    report = session.run(_options(*cmd), [sensor], child_of(cmd))
    assert report.exit_code == 9
    # The failing sensor degrades itself only (sensors.read_all): its channel is unreadable from then on.
    assert any("cpu flaky: unreadable at" in w and "driver went away" in w for w in report.warnings)
    assert report.machine_energy_j["cpu"] == 20.0  # the reads before the failure still count
    assert report.duration_s >= 0.5


def test_a_failing_final_read_keeps_the_commands_status(child_of) -> None:
    cmd = (sys.executable, "-c", "raise SystemExit(4)")
    report = session.run(_options(*cmd, interval=60), [BreaksOnRead(good=1)], child_of(cmd))
    assert report.exit_code == 4
    assert any("cpu flaky: unreadable at" in w and "driver went away" in w for w in report.warnings)


class Times(Observer):
    def __init__(self, seen: list[float]) -> None:
        self.seen = seen

    def sampled(self, sample: Sample, totals: Totals) -> None:
        self.seen.append(sample.t_s)


def test_ticks_do_not_drift(child_of) -> None:
    cmd = ("sleep", "1.05")
    seen: list[float] = []
    session.run(
        _options(*cmd, interval=0.1),
        [BreaksOnRead(good=1000)],
        child_of(cmd),
        observers=[Times(seen)],
    )
    # The ticks, then the final read at the command's exit (observers see it too: the samples file's last
    # row). Each tick sits on the 0.1 s grid: a loop that slept 0.1 s after each sample would drift by its
    # own cost at every tick. A tick late under load is skipped, not shifted, so there may be one fewer.
    ticks, final = seen[:-1], seen[-1]
    assert 9 <= len(ticks) <= 10
    assert final >= ticks[-1]
    for t in ticks:
        assert abs(t - round(t / 0.1) * 0.1) < 0.03, seen
    assert ticks[-1] > 0.95


def test_release_gives_the_signal_mask_back(child_of) -> None:
    import signal

    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    child = Child(("true",))
    session.run(_options("true"), [BreaksOnRead(good=10)], child)
    assert signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # held until the process ends
    child.release()
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before


class Drops:
    """A counter that steps 10 J a read and goes backwards once, at its fourth read: a reset."""

    def __init__(self) -> None:
        self.reads = 0
        self.info = [SensorInfo("cpu", "drops", "measured", "a counter that resets")]

    def read(self, tree: object = None) -> Sequence[Reading]:
        self.reads += 1
        return [Reading("cpu", "drops", energy_j=10.0 * self.reads if self.reads != 4 else 1.0)]

    def close(self) -> None:
        pass


class Recorder(Observer):
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.totals: list[Totals] = []
        self.events: list[Event] = []

    def started(self) -> None:
        self.calls.append("started")

    def sampled(self, sample: Sample, totals: Totals) -> None:
        self.totals.append(totals)

    def noted(self, event: Event) -> None:
        self.events.append(event)

    def finished(self) -> None:
        self.calls.append("finished")


class Broken(Observer):
    def sampled(self, sample: Sample, totals: Totals) -> None:
        raise RuntimeError("renderer bug")


def test_observers_see_snapshots_and_events_and_a_failing_one_is_switched_off(child_of) -> None:
    cmd = ("sleep", "0.5")
    seen, broken = Recorder(), Broken()
    budget = Budget(None, 25.0, "warn")
    options = replace(_options(*cmd), scope="machine")  # a sleeping tree is charged nothing of its CPU share
    report = session.run(options, [Drops()], child_of(cmd), budget=budget, observers=[broken, seen, seen])
    assert seen.calls == ["started", "started", "finished", "finished"]
    # A snapshot is frozen: the first one still holds what it held, and the last one is the record's.
    first, last = seen.totals[0], seen.totals[-1]
    assert first.charged_j["cpu"] < last.charged_j["cpu"]
    with pytest.raises(TypeError):
        first.charged_j["cpu"] = 0.0  # type: ignore[index]
    assert last.energy_j == pytest.approx(report.energy_j["total"])
    assert last.co2e_g == pytest.approx(report.co2e_g)
    # The meter's reset, the budget and the broken observer are events, each told once to each observer.
    texts = [e.text for e in seen.events]
    assert sum("counter reset" in t for t in texts) == 2
    assert sum(e.kind == "budget" and "25" in e.text for e in seen.events) == 2
    assert sum("Broken stopped: RuntimeError('renderer bug')" in t for t in texts) == 2
    # The record: every warning event once, the budget in its own field and not as a warning.
    assert sum("counter reset" in w for w in report.warnings) == 1
    assert sum("Broken stopped" in w for w in report.warnings) == 1
    assert not any(e.text in report.warnings for e in seen.events if e.kind == "budget")
    assert "energy budget passed" in str(report.budget["exceeded"])


class FailsOnNote(Observer):
    def noted(self, event: Event) -> None:
        raise RuntimeError("cannot note")

    def sampled(self, sample: Sample, totals: Totals) -> None:
        raise RuntimeError("cannot sample")


def test_two_failing_observers_cost_two_warnings_not_the_record(child_of) -> None:
    # The first one's failure is told to the second, which fails there: each is switched off once.
    cmd = (sys.executable, "-c", "import time, sys; time.sleep(0.2); sys.exit(5)")
    seen = Recorder()
    report = session.run(_options(*cmd), [Drops()], child_of(cmd), observers=[Broken(), FailsOnNote(), seen])
    assert report.exit_code == 5
    assert sum("Broken stopped" in w for w in report.warnings) == 1
    assert sum("FailsOnNote stopped: RuntimeError('cannot note')" in w for w in report.warnings) == 1
    assert seen.totals and seen.calls[-1] == "finished"


class ReadsBetweenTicks:
    """A counter read every 0.1 s between 0.5 s ticks, unreadable at its second read."""

    max_read_period_s = 0.1

    def __init__(self) -> None:
        self.n = 0
        self.info = [SensorInfo("cpu", "c0", "measured", "a counter")]

    def read(self, tree: object = None) -> Sequence[Reading]:
        self.n += 1
        if self.n == 2:
            return [Reading("cpu", "c0", error="EIO")]
        return [Reading("cpu", "c0", energy_j=float(self.n), wrap_j=1e6)]

    def close(self) -> None:
        pass


class ProcGoesAway(Child):
    """The tree's scans fail from the third on: carbonwrap's own measurement breaks mid-run."""

    scans = 0

    def usage(self, scan: bool = True) -> Any:
        if scan:
            self.scans += 1
            if self.scans >= 3:
                raise RuntimeError("procfs went away")
        return super().usage(scan)


def test_what_was_noticed_before_measurement_broke_is_in_the_record() -> None:
    cmd = ("sleep", "0.8")
    child = ProcGoesAway(cmd)
    try:
        report = session.run(_options(*cmd, interval=0.5), [ReadsBetweenTicks()], child)
    finally:
        child.release()
    assert report.exit_code == 0
    # In order: the counter's failure and recovery between ticks, then the measurement's end.
    texts = [w.split(" at ")[0] for w in report.warnings]
    i = texts.index("cpu c0: unreadable")
    assert texts[i : i + 3] == ["cpu c0: unreadable", "cpu c0: readable again", "measurement stopped"]
    assert "(EIO)" in report.warnings[i] and "procfs went away" in report.warnings[i + 2]


def test_a_signal_passed_on_is_an_event_and_listed_once_in_the_record(child_of) -> None:
    import signal
    import threading

    cmd = ("sleep", "5")
    seen = Recorder()
    child = child_of(cmd)  # blocks SIGTERM in this thread, where session.run waits for it
    # A kill of carbonwrap alone, aimed at this thread: a process-wide kill could land in a thread an earlier
    # test left running with SIGTERM unblocked, and end pytest itself.
    main = threading.main_thread().ident
    assert main == threading.get_ident()
    timer = threading.Timer(0.4, signal.pthread_kill, (main, signal.SIGTERM))
    timer.start()
    try:
        report = session.run(_options(*cmd), [Drops()], child, observers=[seen])
    finally:
        timer.join()
    assert report.signal == signal.SIGTERM
    assert [e.text for e in seen.events if e.kind == "signal"] == ["SIGTERM forwarded to the command"]
    assert [w for w in report.warnings if "SIGTERM" in w] == ["forwarded to the command: SIGTERM"]
