"""The record's `phases` and `prediction` (SPEC.md section 10.2) from the charged energy at each mark and
sample. Pure: no I/O, no clock; the session passes the time and the meter's running totals."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from carbonwrap.marks import Mark
from carbonwrap.model import DOMAINS

MAX_PHASES = 1000  # phase marks past this many are counted and ignored: the record stays bounded


@dataclass(slots=True)
class _Phase:
    name: str
    start_s: float
    start_j: dict[str, float]  # the running charged totals when it started
    start_g: float  # the running CO2e when it started
    end_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Progress:
    at_s: float
    progress: float
    energy_j: float  # charged total when it was read
    co2e_g: float


class Phases:
    """Feed `update(t_s, charged_j, marks)` at every sample and whenever marks were read, with the meter's
    running charged totals per domain (`Meter.charged_j`) at that instant. The energy since the previous
    update goes to the phase that was current, then the marks apply at `t_s`. The run starts in `main`."""

    def __init__(self, pue: float = 1.0, g_per_kwh: float = 0.0, max_phases: int = MAX_PHASES) -> None:
        self.pue = pue
        self.g_per_kwh = g_per_kwh
        self.max_phases = max_phases
        self.ignored = 0
        self._t_s = 0.0
        self._j: dict[str, float] = {}
        self._g = 0.0
        self._done: list[_Phase] = []
        self._now = _Phase("main", 0.0, {}, 0.0)
        self._progress: Progress | None = None

    @property
    def current(self) -> str:
        return self._now.name

    def update(
        self,
        t_s: float,
        charged_j: Mapping[str, float],
        marks: Iterable[Mark] = (),
        g_per_kwh: float | None = None,
    ) -> None:
        """`g_per_kwh`: the intensity of the interval since the previous update (the table figure when None)."""
        from carbonwrap.summarise import co2e_g  # after the launch: the first sample imports it

        g = self.g_per_kwh if g_per_kwh is None else g_per_kwh
        before = sum(self._j.values())
        self._j = {d: float(v) for d, v in charged_j.items()}
        self._g += co2e_g(max(sum(self._j.values()) - before, 0.0), self.pue, g)
        self._t_s = max(t_s, self._t_s)
        for m in marks:
            if m.kind == "phase":
                if len(self._done) + 1 >= self.max_phases:
                    self.ignored += 1
                    continue
                self._now.end_s = self._t_s
                self._done.append(self._now)
                self._now = _Phase(m.name, self._t_s, dict(self._j), self._g)
            elif m.kind == "progress":
                self._progress = Progress(self._t_s, m.progress, sum(self._j.values()), self._g)

    def phases(self, co2e_g: float | None = None) -> list[dict[str, Any]]:
        """The record's `phases`, up to the last update. Their energies sum to the charged totals. Given the
        record's `co2e_g`, the phases' CO2e is scaled to sum to it exactly (it may be priced after the run)."""
        from carbonwrap.summarise import energy_fields

        self._now.end_s = self._t_s
        spans = [*self._done, self._now]
        ends = [p.start_j for p in spans[1:]] + [self._j]
        g_ends = [p.start_g for p in spans[1:]] + [self._g]
        out: list[dict[str, Any]] = []
        for p, end_j, end_g in zip(spans, ends, g_ends, strict=True):
            energy = energy_fields({d: end_j[d] - p.start_j.get(d, 0.0) for d in DOMAINS if d in self._j})
            if p.end_s == p.start_s and not energy["total"] and p is not self._now:
                continue  # a phase marked away at the instant it began (`main`, before the first read)
            out.append(
                {
                    "name": p.name,
                    "start_s": p.start_s,
                    "end_s": p.end_s,
                    "energy_j": energy,
                    "co2e_g": end_g - p.start_g,
                }
            )
        if co2e_g is not None:
            priced = sum(q["co2e_g"] for q in out)
            total_j = sum(q["energy_j"]["total"] for q in out)
            for q in out:
                if priced > 0:
                    q["co2e_g"] = co2e_g * q["co2e_g"] / priced
                else:
                    q["co2e_g"] = co2e_g * q["energy_j"]["total"] / total_j if total_j > 0 else 0.0
        return out

    def prediction(self) -> dict[str, float] | None:
        """From the latest progress mark, linear in progress: the whole run's duration, energy and CO2e."""
        p = self._progress
        if p is None:
            return None
        return {
            "at_s": p.at_s,
            "progress": p.progress,
            "predicted_duration_s": p.at_s / p.progress,
            "predicted_energy_j": p.energy_j / p.progress,
            "predicted_co2e_g": p.co2e_g / p.progress,
        }

    def warnings(self) -> list[str]:
        if not self.ignored:
            return []
        return [f"{self.ignored} phase mark(s) ignored past {self.max_phases} phases; their energy is in the last one"]
