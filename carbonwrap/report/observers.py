"""What watches a run while it goes: the live panel, progress lines, periodic pushes, the samples file and
the HTML page's series. Each is a callable (sample, meter); the session switches off one that fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from carbonwrap.meter import Meter
from carbonwrap.model import DOMAINS, RunOptions, Sample, co2e_g
from carbonwrap.report import say

Observer = Callable[[Sample, Meter], None]


def fan_out(observers: list[Observer]) -> Observer | None:
    """One observer that calls each; a failing one is dropped with a warning, the others go on."""
    if not observers:
        return None
    live = list(observers)

    def each(sample: Sample, meter: Meter) -> None:
        for o in list(live):
            try:
                o(sample, meter)
            except Exception as e:
                live.remove(o)
                meter.warnings.append(f"{getattr(o, '__qualname__', 'an observer')} stopped: {e!r}")

    return each


def charged_so_far(options: RunOptions, meter: Meter) -> tuple[float, float]:
    total = sum(meter.charged_j.values())
    return total, co2e_g(total, options.pue, options.intensity.g_per_kwh)


def every(period_s: float) -> Callable[[float], bool]:
    """True once per multiple of `period_s` (a tick that lands a hair early still counts for its multiple)."""
    done = [0]

    def due(t_s: float) -> bool:
        n = int(t_s / period_s + 1e-6)
        if n > done[0]:
            done[0] = n
            return True
        return False

    return due


def panel_update(options: RunOptions, panel: Any, phases: Any = None) -> Observer:
    from carbonwrap.report.summary import format_energy

    def on_sample(sample: Sample, meter: Meter) -> None:
        if phases is not None:
            p = phases.prediction()
            guess = f", predicted {format_energy(p['predicted_energy_j'])}" if p else ""
            panel.status = f"[{phases.current}{guess}]" if phases.current != "main" or p else ""
        dt = sample.dt_s or 1.0
        charged_w = {d: j / dt for d, j in sample.charged_j.items()}
        machine_w = sum(sample.machine_j.values()) / dt
        panel.update(sample.t_s, charged_w, *charged_so_far(options, meter), machine_w=machine_w)

    return on_sample


def progress_lines(options: RunOptions, prediction: Callable[[], dict[str, float] | None] | None = None) -> Observer:
    """One plain line every --progress seconds, for logs; with the predicted total once progress is marked."""
    from carbonwrap.report.summary import format_energy, format_mass

    due = every(options.progress_s or 1.0)

    def on_sample(sample: Sample, meter: Meter) -> None:
        if due(sample.t_s):
            energy, co2 = charged_so_far(options, meter)
            line = f"carbonwrap: {sample.t_s:.0f} s, {format_energy(energy)}, {format_mass(co2)} CO2e so far"
            p = prediction() if prediction is not None else None
            if p:
                line += (
                    f"; {100 * p['progress']:.0f} % done, predicted {format_energy(p['predicted_energy_j'])}, "
                    f"{format_mass(p['predicted_co2e_g'])} CO2e in {p['predicted_duration_s']:.0f} s"
                )
            say(line + "\n")

    return on_sample


def periodic_push(options: RunOptions, gateway: Any, sensors: list[dict[str, str]]) -> Observer:
    """Pushes the totals so far every --push-interval seconds, off the loop."""
    from carbonwrap.report.sinks import prometheus_text

    due = every(options.push_interval_s)

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


def samples_file(writer: Any, phase: Callable[[], str], g_per_kwh: float) -> Observer:
    """--samples: one row per interval, flushed as it goes."""

    def on_sample(sample: Sample, meter: Meter) -> None:
        writer.write(sample, phase(), g_per_kwh)

    return on_sample


def html_series(series: Any, g_per_kwh: float) -> Observer:
    """The run page's time series, merged to a bounded number of points."""

    def on_sample(sample: Sample, meter: Meter) -> None:
        series.add(sample, g_per_kwh)

    return on_sample
