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
from typing import Any

from carbonwrap import session, spawn
from carbonwrap.budget import Budget
from carbonwrap.errors import CarbonwrapError, LaunchError
from carbonwrap.meter import Meter
from carbonwrap.model import DOMAINS, RunOptions, RunReport, Sample, co2e_g
from carbonwrap.report import say, stderr_is_terminal
from carbonwrap.report.deliver import Outcome, present
from carbonwrap.runner import Child
from carbonwrap.sensors import nvidia_driver_present, open_gpu, open_sensors

# Credentials the command must not inherit (SPEC section 2).
_SECRET_VARIABLES = ("CARBONWRAP_PUSHGATEWAY_AUTH", "ELECTRICITYMAPS_TOKEN")


def credential_variables(environ: dict[str, str]) -> list[str]:
    """The variables removed from the command's environment: tokens, and a gateway URL with a password."""
    out = [v for v in _SECRET_VARIABLES if v in environ]
    url = environ.get("CARBONWRAP_PUSHGATEWAY", "")
    if "@" in url.partition("://")[2].partition("/")[0]:
        out.append("CARBONWRAP_PUSHGATEWAY")
    return out


def run(options: RunOptions) -> Outcome:
    """Measure the command and deliver the result; returns how carbonwrap should end."""
    sensors, warnings = open_sensors(Path(options.sysfs), options.cpu_watts)
    run_id = uuid.uuid4().hex
    env = spawn.child_environ(
        spawn.startup_environ(),
        {"CARBONWRAP_PARENT_ID": run_id},
        remove=credential_variables(dict(os.environ)),
    )
    panel = None
    late: list[str] = []  # what went wrong after the run, for the record
    try:
        panel = _panel(options, sensors)
        child = Child(
            options.command,
            extra_signals=(signal.SIGWINCH,) if panel else (),
            on_signal=(lambda _sig: panel.resize()) if panel else None,
            env=env,
        )
        gpu = None
        if options.gpu is True or (options.gpu is None and nvidia_driver_present()):
            gpu = open_gpu(child.tree_pids, options.gpu is True, warnings)  # before the launch: the whole run
            if gpu is not None:
                sensors.append(gpu)
        budget = Budget(options.max_co2e_g, options.max_energy_j, options.on_budget)
        callbacks: list[Callable[[Sample, Meter], None]] = []
        gateway = None
        if options.pushgateway:
            from carbonwrap.report.push import Pushgateway

            gateway = Pushgateway(options.pushgateway, os.uname().nodename, options.label)
            callbacks.append(_periodic_push(options, gateway, [asdict(i) for s in sensors for i in s.info]))
        if panel is not None:
            callbacks.append(_panel_update(options, panel))
        elif options.progress_s and not options.quiet:
            callbacks.append(_progress(options))
        if panel is not None:
            panel.start()  # before the launch: no output of the command can come before the reserved rows
        idle_w = None
        if options.baseline_s > 0:
            idle_w = _baseline(sensors, child, options.baseline_s)
        try:
            report = session.run(
                options,
                sensors,
                child,
                idle_w=idle_w,
                warnings=warnings,
                budget=budget if budget.active else None,
                notify=_notify,
                on_sample=_all(callbacks) if callbacks else None,
                devices=gpu.devices if gpu is not None else None,
                run_id=run_id,
                on_clock=panel.tick if panel is not None else None,
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
    if late:
        report = replace(report, warnings=(*report.warnings, *late))
    return present(options, report, gateway)


def _isolated(what: str, step: Callable[[], object], notes: list[str]) -> None:
    try:
        step()
    except Exception as e:
        notes.append(f"{what} failed: {e!r}")


def _baseline(sensors: list[Any], child: Child, seconds: float) -> dict[str, float]:
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

        idle = session.measure_idle(sensors, child, seconds, sleep=sleep)
        if stopped:
            name = signal.Signals(stopped[0]).name
            raise LaunchError(f"{name} during --baseline; nothing was launched", 128 + stopped[0])
        return idle
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _after_failure(child: Child, error: Exception) -> Outcome:
    while not child.wait(1.0):
        pass
    assert child.status is not None
    say(f"carbonwrap: internal error, nothing measured: {error!r}; the command exited {child.status[0]}\n")
    return Outcome(child.status[0], child.status[1])


def _all(callbacks: list[Callable[[Sample, Meter], None]]) -> Callable[[Sample, Meter], None]:
    def each(sample: Sample, meter: Meter) -> None:
        for c in callbacks:
            c(sample, meter)

    return each


def _charged(options: RunOptions, meter: Meter) -> tuple[float, float]:
    total = sum(meter.charged_j.values())
    return total, co2e_g(total, options.pue, options.intensity.g_per_kwh)


def _panel(options: RunOptions, sensors: list[Any]) -> Any:
    """The live panel when stderr is a terminal and the command is not a known full-screen program."""
    if not options.live or options.quiet or not stderr_is_terminal():
        return None  # --live on a log file would only fill it with escape codes
    from carbonwrap.report import live

    if live.full_screen(options.command) or not live.usable_terminal():
        return None
    it = options.intensity
    region = f"{it.region} {it.g_per_kwh:g} g/kWh" if it.how != "default" else f"no region set ({it.g_per_kwh:g} g/kWh)"
    estimated = {i.domain for s in sensors for i in s.info if i.method == "estimated"}
    return live.LivePanel(options.label, region, estimated, color=not os.environ.get("NO_COLOR"))


def _panel_update(options: RunOptions, panel: Any) -> Callable[[Sample, Meter], None]:
    def on_sample(sample: Sample, meter: Meter) -> None:
        dt = sample.dt_s or 1.0
        charged_w = {d: j / dt for d, j in sample.charged_j.items()}
        machine_w = sum(sample.machine_j.values()) / dt
        panel.update(sample.t_s, charged_w, *_charged(options, meter), machine_w=machine_w)

    return on_sample


def _every(period_s: float) -> Callable[[float], bool]:
    """True once per multiple of `period_s` (a tick that lands a hair early still counts for its multiple)."""
    done = [0]

    def due(t_s: float) -> bool:
        n = int(t_s / period_s + 1e-6)
        if n > done[0]:
            done[0] = n
            return True
        return False

    return due


def _progress(options: RunOptions) -> Callable[[Sample, Meter], None]:
    """One plain line every --progress seconds, for logs."""
    from carbonwrap.report.summary import format_energy, format_mass

    due = _every(options.progress_s or 1.0)

    def on_sample(sample: Sample, meter: Meter) -> None:
        if due(sample.t_s):
            energy, co2 = _charged(options, meter)
            say(f"carbonwrap: {sample.t_s:.0f} s, {format_energy(energy)}, {format_mass(co2)} CO2e so far\n")

    return on_sample


def _notify(message: str) -> None:
    say(f"carbonwrap: {message}\n")


def _periodic_push(options: RunOptions, gateway: Any, sensors: list[dict[str, str]]) -> Any:
    """An on_sample callback that pushes the totals so far every --push-interval seconds, off the loop."""
    from carbonwrap.report.sinks import prometheus_text

    due = _every(options.push_interval_s)

    def on_sample(sample: Sample, meter: Meter) -> None:
        if due(sample.t_s):
            gateway.push_in_background(prometheus_text(partial_record(options, meter, sample, sensors)))

    return on_sample


def partial_record(options: RunOptions, meter: Meter, sample: Sample, sensors: list[dict[str, str]]) -> dict[str, Any]:
    """What the Prometheus families need, for a run still going: totals so far, no exit status yet."""
    energy: dict[str, float | None] = {d: meter.charged_j.get(d) for d in DOMAINS}
    machine: dict[str, float | None] = {d: meter.machine_j.get(d) for d in DOMAINS}
    energy["total"] = sum(v for v in energy.values() if v is not None)
    machine["total"] = sum(v for v in machine.values() if v is not None)
    return {
        "label": options.label,
        "tags": dict(options.tags),
        "scope": options.scope,
        "energy_j": energy,
        "machine_energy_j": machine,
        "co2e_g": co2e_g(energy["total"] or 0.0, options.pue, options.intensity.g_per_kwh),
        "sensors": sensors,
        "duration_s": sample.t_s,
        "cpu_time_s": sample.tree_cpu_s,
        "exit_code": None,
    }


__all__ = ["Outcome", "RunReport", "credential_variables", "present", "run"]
