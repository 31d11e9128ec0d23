"""What watches a run while it goes: the live panel, progress lines, periodic pushes, budget notices, the
samples file and the HTML page's series.

An observer is told when the run has `started`, every sample with the run's `Totals` so far (`sampled`),
every event (`noted`), and that it has `finished`. It sees frozen values, never the meter. The session
switches off one that fails, with a warning in the record."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from carbonwrap.model import Event, RunOptions, Sample, SensorInfo
from carbonwrap.report import say

if TYPE_CHECKING:  # the totals come after the launch, and so does the module that makes them
    from carbonwrap.summarise import Totals


class Observer:
    """The four things a run tells its observers; each does nothing unless overridden."""

    def started(self) -> None:
        pass

    def sampled(self, sample: Sample, totals: Totals) -> None:
        pass

    def noted(self, event: Event) -> None:
        pass

    def finished(self) -> None:
        pass


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


class PanelUpdate(Observer):
    """The live panel's figures: charged power per domain, the totals, the phase and the prediction."""

    def __init__(self, panel: Any, phases: Any = None) -> None:
        self.panel, self.phases = panel, phases

    def sampled(self, sample: Sample, totals: Totals) -> None:
        from carbonwrap.report.text import format_energy

        phases = self.phases
        if phases is not None:
            p = phases.prediction()
            guess = f", predicted {format_energy(p['predicted_energy_j'])}" if p else ""
            self.panel.status = f"[{phases.current}{guess}]" if phases.current != "main" or p else ""
        dt = sample.dt_s or 1.0
        charged_w = {d: j / dt for d, j in sample.charged_j.items()}
        machine_w = sum(sample.machine_j.values()) / dt
        self.panel.update(sample.t_s, charged_w, totals.energy_j, totals.co2e_g, machine_w=machine_w)


class ProgressLines(Observer):
    """One plain line every --progress seconds, for logs; with the predicted total once progress is marked."""

    def __init__(self, options: RunOptions, prediction: Callable[[], dict[str, float] | None] | None = None) -> None:
        self.due = every(options.progress_s or 1.0)
        self.prediction = prediction

    def sampled(self, sample: Sample, totals: Totals) -> None:
        from carbonwrap.report.text import format_energy, format_mass

        if not self.due(sample.t_s):
            return
        energy, co2 = format_energy(totals.energy_j), format_mass(totals.co2e_g)
        line = f"carbonwrap: {sample.t_s:.0f} s, {energy}, {co2} CO2e so far"
        p = self.prediction() if self.prediction is not None else None
        if p:
            line += (
                f"; {100 * p['progress']:.0f} % done, predicted {format_energy(p['predicted_energy_j'])}, "
                f"{format_mass(p['predicted_co2e_g'])} CO2e in {p['predicted_duration_s']:.0f} s"
            )
        say(line + "\n")


class PeriodicPush(Observer):
    """Pushes the record of the run so far every --push-interval seconds, off the loop."""

    def __init__(self, options: RunOptions, gateway: Any, sensors: Sequence[SensorInfo], run_id: str) -> None:
        self.options, self.gateway, self.sensors, self.run_id = options, gateway, tuple(sensors), run_id
        self.due = every(options.push_interval_s)

    def sampled(self, sample: Sample, totals: Totals) -> None:
        if self.due(sample.t_s):
            from carbonwrap.report.record import to_record
            from carbonwrap.report.sinks import prometheus_text
            from carbonwrap.summarise import so_far

            rec = to_record(so_far(self.options, totals, self.sensors, self.run_id))
            self.gateway.push_in_background(prometheus_text(rec))


class BudgetNotices(Observer):
    """A line on stderr the moment a budget is passed."""

    def noted(self, event: Event) -> None:
        if event.kind == "budget":
            say(f"carbonwrap: {event.text}\n")


class SamplesFile(Observer):
    """--samples: one row per interval, flushed as it goes."""

    def __init__(self, writer: Any, phase: Callable[[], str], g_per_kwh: float) -> None:
        self.writer, self.phase, self.g_per_kwh = writer, phase, g_per_kwh

    def sampled(self, sample: Sample, totals: Totals) -> None:
        self.writer.write(sample, self.phase(), self.g_per_kwh)


class HtmlSeries(Observer):
    """The run page's time series, merged to a bounded number of points."""

    def __init__(self, series: Any, g_per_kwh: float) -> None:
        self.series, self.g_per_kwh = series, g_per_kwh

    def sampled(self, sample: Sample, totals: Totals) -> None:
        self.series.add(sample, self.g_per_kwh)
