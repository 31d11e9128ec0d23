"""The composition root: sensors, panel and observers built, one run, then delivery. Every step after the
launch is isolated: a failing panel, sensor, observer or close costs a warning, never the record or the
command's exit status."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carbonwrap import session, spawn
from carbonwrap.budget import Budget
from carbonwrap.errors import CarbonwrapError, LaunchError
from carbonwrap.model import RunOptions
from carbonwrap.report import STDERR_BUDGET_S, limit_stderr, observers, say, stderr_is_terminal
from carbonwrap.runner import Child
from carbonwrap.sensors import nvidia_driver_present, open_gpu, open_sensors
from carbonwrap.session import isolated

if TYPE_CHECKING:
    from carbonwrap.report.deliver import Outcome
    from carbonwrap.runreport import RunReport


def run(options: RunOptions) -> Outcome:
    """Measure the command and deliver the result; returns how carbonwrap should end."""
    region = options.grid_region or options.intensity.region
    start = None
    if options.start_within_s is not None or options.finish_by_s is not None:
        from carbonwrap import gridsteps

        start = gridsteps.wait_for_start(options, region)  # before anything else: nothing runs while it waits
    sensors, warnings = open_sensors(Path(options.sysfs), options.cpu_watts)
    run_id = uuid.uuid4().hex
    from carbonwrap.marks import MarksReader
    from carbonwrap.phases import Phases

    marks = _isolated_make("phase and progress marks", MarksReader, warnings)
    phases = Phases(options.pue, g_per_kwh=options.intensity.g_per_kwh)
    late: list[str] = []  # what went wrong after the run, for the record
    watch = _Watch()
    panel = None
    try:
        panel = _panel(options, sensors)
        child = _child(options, run_id, marks, panel, warnings)
        gpu = None
        if options.gpu is True or (options.gpu is None and nvidia_driver_present()):
            gpu = open_gpu(options.gpu is True, warnings)  # before the launch: the whole run
            if gpu is not None:
                sensors.append(gpu)
        watch.build(options, sensors, panel, phases, run_id, warnings)
        if panel is not None:
            panel.start()  # before the launch: no output of the command can come before the reserved rows
        idle_w = _baseline(sensors, child, options.baseline_s, warnings) if options.baseline_s > 0 else None
        budget = Budget(options.max_co2e_g, options.max_energy_j, options.on_budget)
        try:
            report = session.run(
                options,
                sensors,
                child,
                idle_w=idle_w,
                warnings=warnings,
                budget=budget if budget.active else None,
                observers=watch.observers,
                devices=gpu.devices if gpu is not None else None,
                run_id=run_id,
                on_clock=panel.tick if panel is not None else None,
                marks=marks,
                phases=phases,
                wall=watch.wall,
                on_exit=lambda: limit_stderr(STDERR_BUDGET_S),
            )
        except (CarbonwrapError, KeyboardInterrupt):
            raise
        except Exception as e:
            if not child.pid:
                raise  # before the launch: the command line reports it, nothing ran
            return _after_failure(child, e)  # a bug of ours must not cost the command its status
    finally:
        _close(panel, sensors, (marks, watch.writer), late)  # every path: the command's end, its death, our failure
    extra_notes = [*(marks.warnings() if marks else []), *phases.warnings(), *late]
    if watch.writer is not None and watch.writer.warning:
        extra_notes.append(watch.writer.warning)
    report = replace(report, warnings=(*report.warnings, *extra_notes))
    return _deliver(options, report, region, watch, phases, start)


def _child(options: RunOptions, run_id: str, marks: Any, panel: Any, warnings: list[str]) -> Child:
    """The command as it will be launched: the environment it was started with, plus the run's id and the
    marks path, less carbonwrap's own credentials; woken by marks and resizes as well as its signals."""
    from carbonwrap.credentials import credential_env_names

    add = {"CARBONWRAP_PARENT_ID": run_id, **({"CARBONWRAP_MARKS": marks.path} if marks is not None else {})}
    env = spawn.child_environ(spawn.startup_environ(), add, remove=credential_env_names(os.environ))

    def on_signal(sig: int) -> None:
        if sig == signal.SIGWINCH and panel is not None:
            panel.resize()

    extra = [*([signal.SIGIO] if marks is not None else []), *([signal.SIGWINCH] if panel else [])]
    child = Child(options.command, extra_signals=extra, on_signal=on_signal, env=env)
    if marks is not None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGIO})  # the command still gets the inherited mask
        isolated("waking on marks", lambda: marks.signal_on_input(signal.SIGIO), warnings)
    return child


def _close(panel: Any, sensors: list[Any], closers: tuple[Any, ...], late: list[str]) -> None:
    if panel is not None:
        isolated("the live panel", panel.stop, late)
    for s in sensors:
        isolated("closing a sensor", s.close, late)  # nvmlShutdown included
    for closer in closers:
        if closer is not None:
            isolated("closing", closer.close, late)


def _deliver(
    options: RunOptions, report: RunReport, region: str | None, watch: _Watch, phases: Any, start: Any
) -> Outcome:
    """The steps after the run that may use the network (live pricing, the schedule's outcome), then delivery."""
    stopped = False
    if watch.by_minute is not None:
        report, stopped = _priced_live(options, report, region, watch.by_minute, phases)
    if start is not None:
        from carbonwrap import gridsteps

        g = report.live.get("g_per_kwh")
        realised = float(g) if isinstance(g, int | float) and report.live.get("coverage") else None
        report = replace(report, schedule=gridsteps.schedule_record(start, watch.launched, realised))
    from carbonwrap.report.deliver import present  # after the run: json, the sinks and the summary

    return present(options, report, None if stopped else watch.gateway, series=watch.series)


class _Watch:
    """The observers of one run, and the parts of them that delivery needs afterwards."""

    def __init__(self) -> None:
        self.observers: list[observers.Observer] = [observers.BudgetNotices()]
        self.gateway: Any = None
        self.writer: Any = None
        self.series: Any = None
        self.by_minute: Any = None
        self.launched = 0.0  # the launch's wall-clock time, once the session has taken it

    def wall(self) -> float:
        """The session's wall clock; its first call is the launch's."""
        now = time.time()
        self.launched = self.launched or now
        return now

    def build(
        self, options: RunOptions, sensors: list[Any], panel: Any, phases: Any, run_id: str, warnings: list[str]
    ) -> None:
        watch = self.observers
        if options.pushgateway:
            from carbonwrap.report.push import Pushgateway

            self.gateway = Pushgateway(options.pushgateway, os.uname().nodename, options.label)
            watch.append(observers.PeriodicPush(options, self.gateway, [i for s in sensors for i in s.info], run_id))
        if panel is not None:
            watch.append(observers.PanelUpdate(panel, phases))
        elif options.progress_s and not options.quiet:
            watch.append(observers.ProgressLines(options, phases.prediction))
        g_table = options.intensity.g_per_kwh
        if options.samples:
            from carbonwrap.report.samples import SamplesWriter

            self.writer = _isolated_make("--samples", lambda: SamplesWriter(options.samples or "", run_id), warnings)
            if self.writer is not None:
                watch.append(observers.SamplesFile(self.writer, lambda: phases.current, g_table))
        if any(o.lower().endswith(".html") for o in options.outputs):
            from carbonwrap.report.html import Series

            self.series = Series(pue=options.pue)
            watch.append(observers.HtmlSeries(self.series, g_table))
        if options.grid == "live":
            from carbonwrap import gridsteps

            self.by_minute = gridsteps.EnergyByMinute(lambda: self.launched)
            watch.append(self.by_minute)


def _priced_live(
    options: RunOptions, report: RunReport, region: str | None, by_minute: Any, phases: Any
) -> tuple[RunReport, bool]:
    """--grid live: the run priced with the grid's figures for its minutes, the phases scaled to match."""
    from carbonwrap import gridsteps

    report, stopped = gridsteps.price_live(options, report, region, by_minute.intervals())
    report = replace(report, phases=tuple(phases.phases(co2e_g=report.co2e_g)))
    limit = options.max_co2e_g
    if limit is not None and (report.co2e_g > limit) != bool(report.budget.get("exceeded")):
        # The budget is watched during the run, with the only figure known then: the yearly table's.
        side = "above" if report.co2e_g > limit else "below"
        note = (
            f"the carbon budget was judged on the yearly figure during the run; the live price "
            f"({report.co2e_g:.4g} g) is {side} the {limit:.4g} g limit"
        )
        report = replace(report, warnings=(*report.warnings, note))
    return report, stopped


def _isolated_make(what: str, make: Callable[[], Any], notes: list[str]) -> Any:
    try:
        return make()
    except Exception as e:
        notes.append(f"{what}: unavailable ({e!r})")
        return None


def _baseline(sensors: list[Any], child: Child, seconds: float, notes: list[str]) -> dict[str, float]:
    """Idle power before the launch; a signal meanwhile ends carbonwrap with 128 + N, nothing launched."""
    from carbonwrap.runner import FORWARDED
    from carbonwrap.signals import SignalWaiter

    old = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        waiter = SignalWaiter(FORWARDED)
        stopped: list[int] = []

        def sleep(s: float) -> None:
            end = time.monotonic() + s
            while not stopped and (left := end - time.monotonic()) > 0:
                info = waiter.wait(left)
                if info is not None:
                    stopped.append(info.signo)

        idle = session.measure_idle(sensors, child, seconds, sleep=sleep, warnings=notes)
        if stopped:
            name = signal.Signals(stopped[0]).name
            raise LaunchError(f"{name} during --baseline; nothing was launched", 128 + stopped[0])
        return idle
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _after_failure(child: Child, error: Exception) -> Outcome:
    from carbonwrap.report.deliver import Outcome

    while not child.wait(1.0):
        pass
    assert child.status is not None
    say(f"carbonwrap: internal error, nothing measured: {error!r}; the command exited {child.status[0]}\n")
    return Outcome(child.status[0], child.status[1])


def _panel(options: RunOptions, sensors: list[Any]) -> Any:
    """The live panel when stderr is a terminal and the command is not a known full-screen program."""
    if not options.live or options.quiet or not stderr_is_terminal():
        return None  # --live on a log file would only fill it with escape codes
    from carbonwrap.report import live

    if live.full_screen(options.command) or not live.usable_terminal():
        return None
    it = options.intensity
    region = f"{it.region} {it.g_per_kwh:g} g/kWh" if it.how != "default" else f"no region set ({it.g_per_kwh:g} g/kWh)"
    from carbonwrap.report.record import estimated_domains  # i14: the record's one rule

    estimated = estimated_domains([asdict(i) for s in sensors for i in s.info])
    return live.LivePanel(options.label, region, estimated, color=not os.environ.get("NO_COLOR"))
