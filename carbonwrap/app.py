"""One wrapped run end to end: sensors, optional baseline, the session, the summary, the records."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from carbonwrap import session
from carbonwrap.budget import Budget
from carbonwrap.errors import CarbonwrapError, LaunchError
from carbonwrap.meter import Meter
from carbonwrap.model import DOMAINS, RunOptions, RunReport, Sample, co2e_g
from carbonwrap.report import say, stderr_is_terminal
from carbonwrap.runner import Child
from carbonwrap.sensors import nvidia_driver_present, open_gpu, open_sensors

EXIT_BUDGET = 3  # --on-budget fail, when the command itself succeeded


def run(options: RunOptions) -> int:
    """Measure the command and present the result; returns the exit status carbonwrap should end with."""
    sensors, warnings = open_sensors(Path(options.sysfs), options.cpu_watts)
    panel = None
    try:
        panel = _panel(options, sensors)
        child = Child(
            options.command,
            extra_signals=(signal.SIGWINCH,) if panel else (),
            on_signal=(lambda _sig: panel.resize()) if panel else None,
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
            try:
                idle_w = session.measure_idle(sensors, child, options.baseline_s)
            except KeyboardInterrupt:
                raise LaunchError("interrupted during --baseline; nothing was launched", 130) from None
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
            )
        except (CarbonwrapError, KeyboardInterrupt):
            raise
        except Exception as e:
            if not child.pid:
                raise  # before the launch: the command line reports it, nothing ran
            return _after_failure(child, e)  # a bug of ours must not cost the command its status
    finally:
        if panel is not None:
            panel.stop()  # on every path: the command's end, its death, our own failure
        for s in sensors:
            s.close()  # nvmlShutdown included
    try:
        return present(options, report, gateway)
    except Exception as e:  # the command has exited: its status wins over our failure
        say(f"carbonwrap: internal error while reporting: {e!r}\n")
        return report.exit_code


def _after_failure(child: Child, error: Exception) -> int:
    while not child.wait(1.0):
        pass
    assert child.status is not None
    say(f"carbonwrap: internal error, nothing measured: {error!r}; the command exited {child.status[0]}\n")
    return child.status[0]


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

    if live.full_screen(options.command):
        return None
    it = options.intensity
    region = f"{it.region} {it.g_per_kwh:g} g/kWh" if it.how != "default" else f"no region set ({it.g_per_kwh:g} g/kWh)"
    from carbonwrap.report.record import estimated_domains  # i14: the record's one rule

    estimated = estimated_domains([asdict(i) for s in sensors for i in s.info])
    return live.LivePanel(options.label, region, estimated, color=not os.environ.get("NO_COLOR"))


def _panel_update(options: RunOptions, panel: Any) -> Callable[[Sample, Meter], None]:
    def on_sample(sample: Sample, meter: Meter) -> None:
        panel.update(sample.t_s, sample.power_w, *_charged(options, meter))

    return on_sample


def _progress(options: RunOptions) -> Callable[[Sample, Meter], None]:
    """One plain line every --progress seconds, for logs."""
    from carbonwrap.report.summary import format_energy, format_mass

    last = [0.0]

    def on_sample(sample: Sample, meter: Meter) -> None:
        if sample.t_s - last[0] >= options.progress_s:  # type: ignore[operator]
            last[0] = sample.t_s
            energy, co2 = _charged(options, meter)
            say(f"carbonwrap: {sample.t_s:.0f} s, {format_energy(energy)}, {format_mass(co2)} CO2e so far\n")

    return on_sample


def _notify(message: str) -> None:
    say(f"carbonwrap: {message}\n")


def _periodic_push(options: RunOptions, gateway: Any, sensors: list[dict[str, str]]) -> Any:
    """An on_sample callback that pushes the totals so far every --push-interval seconds, off the loop."""
    from carbonwrap.report.sinks import prometheus_text

    last = [0.0]

    def on_sample(sample: Sample, meter: Meter) -> None:
        if sample.t_s - last[0] < options.push_interval_s:
            return
        last[0] = sample.t_s
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


def present(options: RunOptions, report: RunReport, gateway: Any = None) -> int:
    """Summary on stderr, then every record; a record that can't be written goes to stderr as JSON.

    The Pushgateway comes last, so that a slow or broken gateway can never cost a local record.
    """
    from carbonwrap.report import record, sinks

    status = report.exit_code
    if report.budget.get("exceeded") and options.on_budget == "fail" and status == 0:
        status = EXIT_BUDGET
    rec = record.to_record(report)
    if not options.quiet:
        try:
            from carbonwrap.report import summary

            if sys.stderr is None:
                pass  # stderr closed: nowhere to print
            elif stderr_is_terminal() and not os.environ.get("NO_COLOR"):
                summary.render_rich(rec, sys.stderr)
            else:
                summary.render_plain(rec, sys.stderr)
        except Exception as e:  # the records and the status matter more
            say(f"carbonwrap: could not print the summary: {e!r}\n")
    failed = []
    for path in options.outputs:
        try:
            sinks.write(path, rec)
        except sinks.SinkError as e:
            failed.append(str(e))
    step = os.environ.get("GITHUB_STEP_SUMMARY")
    if step and options.step_summary:
        try:
            from carbonwrap.report import github

            github.append(step, rec)
        except OSError as e:
            say(f"carbonwrap: cannot append to GITHUB_STEP_SUMMARY {step}: {e.strerror or e}\n")
    if failed:
        for msg in failed:
            say(f"carbonwrap: {msg}; the record follows on stderr\n")
        say(json.dumps(rec, ensure_ascii=False) + "\n")
        if report.exit_code == 0:
            status = 1
    if gateway is not None:
        gateway.finish(sinks.prometheus_text(rec))
        if gateway.warning:
            say(f"carbonwrap: {gateway.warning}\n")
    return status
