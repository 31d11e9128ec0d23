"""The HTML reports of SPEC.md section 10.3: one run's page and a history page. One self-contained file of
inline SVG and CSS; no script, no font, no link to anything. No third-party imports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from carbonwrap.model import DOMAINS, Sample
from carbonwrap.report.svg import Band, Line, esc, line_chart, num, page, row, table
from carbonwrap.summarise import co2e_g

MAX_POINTS = 2000
# One point: t_s (end), dt_s, machine J x3, charged J x3, g_per_kwh x dt_s, CO2e g, g_per_kwh (last).
_T, _DT, _M, _C, _GDT, _CO2, _G = 0, 1, 2, 5, 8, 9, 10


@dataclass(frozen=True, slots=True)
class Point:
    t_s: float
    dt_s: float
    machine_j: dict[str, float]
    charged_j: dict[str, float]
    g_per_kwh: float  # time-weighted mean over the point
    co2e_g: float


class Series:
    """A run's intervals merged to at most `max_points` points, energy-preserving: adjacent points are summed
    in pairs when full, and later intervals are gathered into points of the same width. Memory stays flat."""

    def __init__(self, max_points: int = MAX_POINTS, pue: float = 1.0) -> None:
        self.max_points = max(max_points, 2)
        self.pue = pue
        self.domains: set[str] = set()
        self.intervals = 0
        self._points: list[list[float]] = []
        self._stride = 1  # intervals per point
        self._pending: list[float] | None = None
        self._pending_n = 0

    def add(self, sample: Sample, g_per_kwh: float) -> None:
        self.domains.update(sample.machine_j)
        m = [sample.machine_j.get(d, 0.0) for d in DOMAINS]
        c = [sample.charged_j.get(d, 0.0) for d in DOMAINS]
        self._add(sample.t_s, sample.dt_s, m, c, g_per_kwh)

    def add_row(self, r: Mapping[str, Any]) -> None:
        """One row of a samples file (report.samples.read)."""
        dt = float(r.get("dt_s") or 0.0)
        m, c = [], []
        for d in DOMAINS:
            mw, cw = r.get(f"machine_w_{d}"), r.get(f"charged_w_{d}")
            if mw is not None or cw is not None:
                self.domains.add(d)
            m.append(float(mw or 0.0) * dt)
            c.append(float(cw or 0.0) * dt)
        self._add(float(r.get("t_s") or 0.0), dt, m, c, float(r.get("g_per_kwh") or 0.0))

    def _add(self, t_s: float, dt: float, m: list[float], c: list[float], g: float) -> None:
        self.intervals += 1
        co2 = co2e_g(sum(c), self.pue, g)
        p = [t_s, dt, *m, *c, g * dt, co2, g]
        if self._pending is None:
            self._pending, self._pending_n = p, 1
        else:
            _merge_into(self._pending, p)
            self._pending_n += 1
        if self._pending_n >= self._stride:
            self._points.append(self._pending)
            self._pending = None
            if len(self._points) >= self.max_points:
                pts = self._points
                self._points = [
                    _merge_into(pts[i], pts[i + 1]) if i + 1 < len(pts) else pts[i] for i in range(0, len(pts), 2)
                ]
                self._stride *= 2

    def points(self) -> list[Point]:
        raw = [*self._points, *([self._pending] if self._pending else [])]
        out = []
        for p in raw:
            g = p[_GDT] / p[_DT] if p[_DT] > 0 else p[_G]
            m = {d: p[_M + i] for i, d in enumerate(DOMAINS) if d in self.domains}
            c = {d: p[_C + i] for i, d in enumerate(DOMAINS) if d in self.domains}
            out.append(Point(p[_T], p[_DT], m, c, g, p[_CO2]))
        return out


def _merge_into(a: list[float], b: list[float]) -> list[float]:
    """b follows a: a becomes the pair (sums, and b's end time and last intensity)."""
    a[_T] = b[_T]
    for i in range(_DT, _G):
        a[i] += b[i]
    a[_G] = b[_G]
    return a


def series_from_samples(path: str, pue: float = 1.0) -> tuple[str | None, Series]:
    """A samples file (--samples) as a Series, with the run id its first row names."""
    from carbonwrap.report.samples import read

    run_id, rows = read(path)
    s = Series(pue=pue)
    for r in rows:
        s.add_row(r)
    return run_id, s


def _time_unit(duration_s: float) -> tuple[str, float]:
    if duration_s >= 36000:
        return "h", 3600.0
    return ("min", 60.0) if duration_s >= 600 else ("s", 1.0)


def _energy(v: object) -> str:
    return "-" if v is None else f"{num(float(v))} J"  # type: ignore[arg-type]


def run_page(record: Mapping[str, Any], series: Series | None) -> str:
    """One run: its figures, power over time per domain (charged and machine) with the phases as bands, the
    intensity over time and the cumulative CO2e, each chart beside a table of what it shows."""
    pts = series.points() if series else []
    domains = [d for d in DOMAINS if record.get("energy_j", {}).get(d) is not None]
    unit, div = _time_unit(float(record.get("duration_s") or 0.0))
    label = str(record.get("label", ""))
    phases = list(record.get("phases") or [])
    bands = [Band(float(p["start_s"]) / div, float(p["end_s"]) / div, str(p["name"])) for p in phases]
    axis = _Axis([p.t_s / div for p in pts], f"time ({unit})", bands)
    cum = _cumulative(pts)
    body = [
        _header(record, label),
        _summary(record),
        _power(label, domains, pts, axis),
        _phases_table(phases, domains),
        _intensity(pts, axis),
        _cumulative_co2e(cum, axis),
        _points_table(domains, pts, cum),
        _warnings(record),
    ]
    return page(f"carbonwrap: {label}", body)


@dataclass(frozen=True, slots=True)
class _Axis:
    """The time axis the run's charts share: the points' end times in the run's unit, and the phases as bands."""

    ts: list[float]
    x_label: str
    bands: list[Band]


def _header(record: Mapping[str, Any], label: str) -> str:
    """The title, and what ran where and when."""
    return (
        f"<h1>carbonwrap: {esc(label)}</h1>"
        f'<p class="meta"><code>{esc(" ".join(map(str, record.get("command", []))))}</code><br>'
        f"{esc(record.get('host', ''))} · {esc(record.get('started_at', ''))} – {esc(record.get('ended_at', ''))}"
        f" · exit {esc(record.get('exit_code'))} · id {esc(record.get('id', ''))}</p>"
    )


def _summary(record: Mapping[str, Any]) -> str:
    """The energy per domain beside the run's other figures."""
    energy, machine, methods = (
        record.get("energy_j", {}),
        record.get("machine_energy_j", {}),
        record.get("methods") or {},
    )
    rows: list[list[object]] = [
        [d, _energy(energy.get(d)), _energy(machine.get(d)), methods.get(d) or "-"] for d in (*DOMAINS, "total")
    ]
    summary = table(
        "Energy, charged to the scope and of the whole machine", ["domain", "charged", "machine", "method"], rows
    )
    return (
        '<h2>Summary</h2><div class="row"><div class="tables">'
        + summary
        + '</div><div class="tables">'
        + table("The run", ["", "value"], _facts(record))
        + "</div></div>"
    )


def _facts(record: Mapping[str, Any]) -> list[list[object]]:
    """The rows of the run's table: time, scope, CO2e, intensity and, where there is one, the prediction."""
    it = record.get("intensity") or {}
    facts: list[list[object]] = [
        ["duration", f"{num(float(record.get('duration_s') or 0))} s"],
        ["CPU time", f"{num(float(record.get('cpu_time_s') or 0))} s"],
        ["scope", record.get("scope", "")],
        ["PUE", record.get("pue", "")],
        ["CO2e", f"{num(float(record.get('co2e_g') or 0))} g"],
        [
            "intensity",
            f"{it.get('region') or '-'} {num(float(it.get('g_per_kwh') or 0))} g/kWh ({it.get('source', '')})",
        ],
    ]
    pred = record.get("prediction")
    if pred:
        facts.append(
            [
                "prediction",
                f"at {num(pred['at_s'])} s ({num(100 * pred['progress'])} %): {num(pred['predicted_duration_s'])} s, "
                f"{num(pred['predicted_energy_j'])} J, {num(pred['predicted_co2e_g'])} g",
            ]
        )
    return facts


def _power(label: str, domains: Sequence[str], pts: Sequence[Point], axis: _Axis) -> str:
    """Charged and machine power per domain over time, beside each line's peak and mean."""
    lines = []
    for i, d in enumerate(domains):
        cw = [p.charged_j.get(d, 0.0) / p.dt_s if p.dt_s > 0 else 0.0 for p in pts]
        mw = [p.machine_j.get(d, 0.0) / p.dt_s if p.dt_s > 0 else 0.0 for p in pts]
        lines.append(Line(f"{d} charged", axis.ts, cw, style=i * 2, width=2.2))
        lines.append(Line(f"{d} machine", axis.ts, mw, style=i * 2 + 1, width=1.2))
    stats = [[ln.name, num(max(ln.ys, default=0.0)), num(_mean(ln.ys, pts)), len(ln.ys)] for ln in lines]
    return "<h2>Power over time</h2>" + row(
        line_chart("power", f"Power of {label} over time, per domain", lines, axis.x_label, "W", axis.bands),
        table("Power per series", ["series", "peak W", "mean W", "points"], stats),
    )


def _phases_table(phases: Sequence[Mapping[str, Any]], domains: Sequence[str]) -> str:
    """Each phase's span, energy per domain, CO2e and share of the run's energy; nothing for a run without."""
    if not phases:
        return ""
    total_j = sum(float(p["energy_j"]["total"]) for p in phases) or 1.0
    prow = [
        [p["name"], num(p["start_s"]), num(p["end_s"])]
        + [_energy(p["energy_j"].get(d)) for d in (*domains, "total")]
        + [num(p["co2e_g"]), f"{100 * float(p['energy_j']['total']) / total_j:.1f} %"]
        for p in phases
    ]
    return (
        '<div class="tables">'
        + table("Phases", ["phase", "start s", "end s", *domains, "total", "CO2e g", "share"], prow, "phases")
        + "</div>"
    )


def _intensity(pts: Sequence[Point], axis: _Axis) -> str:
    """The grid intensity over time, beside its least, mean and most."""
    gl = [Line("g/kWh", axis.ts, [p.g_per_kwh for p in pts], style=3)]
    gs = [p.g_per_kwh for p in pts] or [0.0]
    return "<h2>Grid intensity over time</h2>" + row(
        line_chart("intensity", "Grid intensity over time", gl, axis.x_label, "gCO2e/kWh", axis.bands),
        table(
            "Intensity",
            ["", "g/kWh"],
            [["min", num(min(gs))], ["mean", num(sum(gs) / len(gs))], ["max", num(max(gs))]],
        ),
    )


def _cumulative(pts: Sequence[Point]) -> list[float]:
    """The CO2e so far at the end of each point."""
    cum, acc = [], 0.0
    for p in pts:
        acc += p.co2e_g
        cum.append(acc)
    return cum


def _cumulative_co2e(cum: Sequence[float], axis: _Axis) -> str:
    """The CO2e so far over time, beside what it was at each quarter of the points."""
    q = [cum[min(len(cum) - 1, round(f * (len(cum) - 1)))] for f in (0.25, 0.5, 0.75, 1.0)] if cum else []
    qrows = [[f"{k} of the run", f"{num(v)} g"] for k, v in zip(("1/4", "1/2", "3/4", "all"), q, strict=False)]
    return "<h2>Cumulative CO2e</h2>" + row(
        line_chart(
            "co2e", "Cumulative CO2e", [Line("CO2e g", axis.ts, cum, style=4)], axis.x_label, "g CO2e", axis.bands
        ),
        table("CO2e so far", ["", "CO2e"], qrows),
    )


def _points_table(domains: Sequence[str], pts: Sequence[Point], cum: Sequence[float]) -> str:
    """Every point as a row, folded away."""
    head = [
        "t s",
        "dt s",
        *(f"{d} charged W" for d in domains),
        *(f"{d} machine W" for d in domains),
        "g/kWh",
        "CO2e g",
    ]
    data = [
        [num(p.t_s), num(p.dt_s)]
        + [num(p.charged_j.get(d, 0.0) / p.dt_s if p.dt_s else 0.0) for d in domains]
        + [num(p.machine_j.get(d, 0.0) / p.dt_s if p.dt_s else 0.0) for d in domains]
        + [num(p.g_per_kwh), num(c)]
        for p, c in zip(pts, cum, strict=True)
    ]
    return (
        f"<details><summary>All {len(pts)} points as a table</summary>{table('Points', head, data, 'points')}</details>"
    )


def _warnings(record: Mapping[str, Any]) -> str:
    """The run's warnings as a list; nothing for a run without."""
    warnings = record.get("warnings") or []
    if not warnings:
        return ""
    return "<h2>Warnings</h2><ul>" + "".join(f"<li>{esc(w)}</li>" for w in warnings) + "</ul>"


def _mean(ys: Sequence[float], pts: Sequence[Point]) -> float:
    t = sum(p.dt_s for p in pts)
    return sum(y * p.dt_s for y, p in zip(ys, pts, strict=True)) / t if t > 0 else 0.0


def history_page(records: Sequence[Mapping[str, Any]], samples_by_id: Mapping[str, Series] | None = None) -> str:
    """Many runs: CO2e per day stacked by label, energy per day by domain, and the totals table (section 5.3)."""
    from carbonwrap.report import html_history

    return html_history.page(records, samples_by_id or {})
