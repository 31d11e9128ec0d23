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

if TYPE_CHECKING:
    from carbonwrap.report.deliver import Outcome


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
    add = {"CARBONWRAP_PARENT_ID": run_id, **({"CARBONWRAP_MARKS": marks.path} if marks is not None else {})}
    from carbonwrap.credentials import credential_env_names

    env = spawn.child_environ(spawn.startup_environ(), add, remove=credential_env_names(os.environ))
    panel = None
    late: list[str] = []  # what went wrong after the run, for the record
    writer = series = by_minute = None
    try:
        panel = _panel(options, sensors)

        def on_signal(sig: int) -> None:
            if sig == signal.SIGWINCH and panel is not None:
                panel.resize()

        extra = [signal.SIGIO] if marks is not None else []
        child = Child(
            options.command, extra_signals=[*extra, *([signal.SIGWINCH] if panel else [])], on_signal=on_signal, env=env
        )
        if marks is not None:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGIO})  # the command still gets the inherited mask
            _isolated("waking on marks", lambda: marks.signal_on_input(signal.SIGIO), warnings)
        gpu = None
        if options.gpu is True or (options.gpu is None and nvidia_driver_present()):
            gpu = open_gpu(options.gpu is True, warnings)  # before the launch: the whole run
            if gpu is not None:
                sensors.append(gpu)
        budget = Budget(options.max_co2e_g, options.max_energy_j, options.on_budget)
        watch: list[observers.Observer] = [observers.BudgetNotices()]
        gateway = None
        if options.pushgateway:
            from carbonwrap.report.push import Pushgateway

            gateway = Pushgateway(options.pushgateway, os.uname().nodename, options.label)
            watch.append(observers.PeriodicPush(options, gateway, [i for s in sensors for i in s.info], run_id))
        if panel is not None:
            watch.append(observers.PanelUpdate(panel, phases))
        elif options.progress_s and not options.quiet:
            watch.append(observers.ProgressLines(options, phases.prediction))
        g_table = options.intensity.g_per_kwh
        if options.samples:
            from carbonwrap.report.samples import SamplesWriter

            writer = _isolated_make("--samples", lambda: SamplesWriter(options.samples or "", run_id), warnings)
            if writer is not None:
                watch.append(observers.SamplesFile(writer, lambda: phases.current, g_table))
        if any(o.lower().endswith(".html") for o in options.outputs):
            from carbonwrap.report.html import Series

            series = Series(pue=options.pue)
            watch.append(observers.HtmlSeries(series, g_table))
        launched = [0.0]
        if options.grid == "live":
            from carbonwrap import gridsteps

            by_minute = gridsteps.EnergyByMinute(lambda: launched[0])
            watch.append(by_minute)
        if panel is not None:
            panel.start()  # before the launch: no output of the command can come before the reserved rows
        idle_w = None
        if options.baseline_s > 0:
            idle_w = _baseline(sensors, child, options.baseline_s, warnings)

        def wall() -> float:
            launched[0] = launched[0] or time.time()
            return time.time()

        try:
            report = session.run(
                options,
                sensors,
                child,
                idle_w=idle_w,
                warnings=warnings,
                budget=budget if budget.active else None,
                observers=watch,
                devices=gpu.devices if gpu is not None else None,
                run_id=run_id,
                on_clock=panel.tick if panel is not None else None,
                marks=marks,
                phases=phases,
                wall=wall,
                on_exit=lambda: limit_stderr(STDERR_BUDGET_S),
            )
        except (CarbonwrapError, KeyboardInterrupt):
            raise
        except Exception as e:
            if not child.pid:
                raise  # before the launch: the command line reports it, nothing ran
            return _after_failure(child, e)  # a bug of ours must not cost the command its status
    finally:
        if panel is not None:
            _isolated("the live panel", panel.stop, late)  # on every path: the command's end, its death, our failure
        for s in sensors:
            _isolated("closing a sensor", s.close, late)  # nvmlShutdown included
        for closer in (marks, writer):
            if closer is not None:
                _isolated("closing", closer.close, late)
    extra_notes = [*(marks.warnings() if marks else []), *phases.warnings(), *late]
    if writer is not None and writer.warning:
        extra_notes.append(writer.warning)
    report = replace(report, warnings=(*report.warnings, *extra_notes))
    stopped = False
    if by_minute is not None:
        from carbonwrap import gridsteps

        report, stopped = gridsteps.price_live(options, report, region, by_minute.intervals())
        report = replace(report, phases=tuple(phases.phases(co2e_g=report.co2e_g)))
        limit = options.max_co2e_g
        if limit is not None and (report.co2e_g > limit) != bool(report.budget.get("exceeded")):
            # The budget is watched during the run, with the only figure known then: the yearly table's.
            side = "above" if report.co2e_g > limit else "below"
            report = replace(
                report,
                warnings=(
                    *report.warnings,
                    f"the carbon budget was judged on the yearly figure during the run; the live price "
                    f"({report.co2e_g:.4g} g) is {side} the {limit:.4g} g limit",
                ),
            )
    if start is not None:
        from carbonwrap import gridsteps

        g = report.live.get("g_per_kwh")
        realised = float(g) if isinstance(g, int | float) and report.live.get("coverage") else None
        report = replace(report, schedule=gridsteps.schedule_record(start, launched[0], realised))
    from carbonwrap.report.deliver import present  # after the run: json, the sinks and the summary

    return present(options, report, None if stopped else gateway, series=series)


def _isolated(what: str, step: Callable[[], object], notes: list[str]) -> None:
    try:
        step()
    except Exception as e:
        notes.append(f"{what} failed: {e!r}")


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
