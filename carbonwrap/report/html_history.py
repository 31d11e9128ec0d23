"""The history page of SPEC.md section 10.3: many runs' records (and their samples, where given) as one
self-contained HTML file. No third-party imports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from carbonwrap.model import DOMAINS
from carbonwrap.report.record import record_methods
from carbonwrap.report.svg import Line, bar_chart, esc, line_chart, num, row, table
from carbonwrap.report.svg import page as html_page
from carbonwrap.summarise import kwh

TOP_LABELS = 7  # the largest labels by CO2e keep their own stack; the rest are "other"
MAX_RUN_CHARTS = 20


def _f(v: Any) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return 0.0
    return x if x == x and abs(x) != float("inf") else 0.0


def counted(records: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], int, int]:
    """The runs to total: each id once, and a nested run not on top of its parent (section 5.3).
    Returns them with the counts of duplicates and nested runs left out."""
    seen: dict[str, Mapping[str, Any]] = {}
    dupes = 0
    for r in records:
        key = str(r.get("id", "")) or f"#{len(seen)}"
        if key in seen:
            dupes += 1
            continue
        seen[key] = r
    runs = [r for r in seen.values() if not (r.get("parent_id") and str(r.get("parent_id")) in seen)]
    return runs, dupes, len(seen) - len(runs)


def _scale(top: float, units: Sequence[tuple[str, float]]) -> tuple[str, float]:
    for name, div in reversed(units):
        if top >= div * 2:
            return name, div
    return units[0]


def _group(r: Mapping[str, Any], mixed: bool) -> str:
    label = str(r.get("label", ""))
    return f"{label} [{r.get('scope', '')}]" if mixed else label


def page(records: Sequence[Mapping[str, Any]], samples_by_id: Mapping[str, Any]) -> str:
    """Many runs: CO2e per day by label, energy per day by domain, the totals, and a chart per run with samples."""
    runs, dupes, nested = counted(records)
    mixed = len({r.get("scope") for r in runs}) > 1
    days = sorted({str(r.get("started_at", ""))[:10] for r in runs})
    co2, energy = _per_day(runs, mixed, days)
    co2s = _Stacks.of(co2, (("g", 1.0), ("kg", 1e3), ("t", 1e6)))
    energys = _Stacks.of(energy, (("J", 1.0), ("kJ", 1e3), ("MJ", 1e6), ("GJ", 1e9)))
    body = [
        _meta(len(runs), days, dupes, nested, mixed),
        "<h2>CO2e per day, by label</h2>",
        _day_chart("co2e-day", "CO2e per day, stacked by label", "CO2e", ("CO2e by label", "label"), days, co2s),
        "<h2>Energy per day, by domain</h2>",
        _day_chart(
            "energy-day",
            "Charged energy per day, stacked by domain",
            "energy",
            ("Energy by domain", "domain"),
            days,
            energys,
        ),
        _days_table(days, (co2s, energys)),
        "<h2>Totals</h2>" + '<div class="tables">' + _totals(runs, mixed) + "</div>",
        _run_charts(runs, samples_by_id),
    ]
    return html_page("carbonwrap: history", body)


def _meta(runs: int, days: Sequence[str], dupes: int, nested: int, mixed: bool) -> str:
    """The title, and what the page counts and what it leaves out."""
    return (
        "<h1>carbonwrap: history</h1>"
        f'<p class="meta">{runs} runs over {len(days)} day(s)'
        + (f", {days[0]} to {days[-1]}" if days else "")
        + (f"; {dupes} duplicate record(s) counted once" if dupes else "")
        + (f"; {nested} nested run(s) not added on top of their parent" if nested else "")
        + ("; runs of scope tree and machine are listed apart" if mixed else "")
        + ". Times are UTC.</p>"
    )


def _per_day(
    runs: Sequence[Mapping[str, Any]], mixed: bool, days: Sequence[str]
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """CO2e per day for the largest labels (the rest as "other"), and energy per day for each domain any run has."""
    index = {d: i for i, d in enumerate(days)}
    names = _labels(runs, mixed)
    co2 = {n: [0.0] * len(days) for n in names}
    energy = {d: [0.0] * len(days) for d in DOMAINS}
    present: set[str] = set()
    for r in runs:
        i = index[str(r.get("started_at", ""))[:10]]
        g = _group(r, mixed)
        co2[g if g in co2 else "other"][i] += _f(r.get("co2e_g"))
        for d in DOMAINS:
            v = (r.get("energy_j") or {}).get(d)
            if v is not None:
                present.add(d)
                energy[d][i] += _f(v)
    return co2, {d: energy[d] for d in DOMAINS if d in present}


def _labels(runs: Sequence[Mapping[str, Any]], mixed: bool) -> list[str]:
    """The TOP_LABELS labels with the most CO2e, largest first, and "other" where there are more."""
    by_label: dict[str, float] = {}
    for r in runs:
        by_label[_group(r, mixed)] = by_label.get(_group(r, mixed), 0.0) + _f(r.get("co2e_g"))
    ranked = sorted(by_label, key=lambda k: (-by_label[k], k))
    return ranked[:TOP_LABELS] + (["other"] if len(ranked) > TOP_LABELS else [])


@dataclass(frozen=True, slots=True)
class _Stacks:
    """Named per-day values, in the unit that suits the largest day's stack."""

    values: dict[str, list[float]]
    unit: str
    div: float

    @classmethod
    def of(cls, values: dict[str, list[float]], units: Sequence[tuple[str, float]]) -> _Stacks:
        days = len(next(iter(values.values()), []))
        top = max((sum(v[i] for v in values.values()) for i in range(days)), default=0.0)
        return cls(values, *_scale(top, units))


def _day_chart(
    chart_id: str, title: str, quantity: str, caption: tuple[str, str], days: Sequence[str], s: _Stacks
) -> str:
    """Stacked bars per day, beside each stack's total; caption is the table's caption and its first column."""
    rows = [[k, f"{num(sum(v) / s.div)} {s.unit}"] for k, v in s.values.items()]
    stacks = [(k, [x / s.div for x in v]) for k, v in s.values.items()]
    return row(
        bar_chart(chart_id, title, days, stacks, f"{quantity} ({s.unit})"),
        table(caption[0], [caption[1], quantity], rows),
    )


def _days_table(days: Sequence[str], stacks: Sequence[_Stacks]) -> str:
    """Every day's stacks as a row, folded away."""
    head = ["day", *(f"{k} {s.unit}" for s in stacks for k in s.values)]
    rows = [[day, *(num(v[i] / s.div) for s in stacks for v in s.values.values())] for i, day in enumerate(days)]
    return "<details><summary>Every day as a table</summary>" + table("Per day", head, rows, "days") + "</details>"


def _run_charts(runs: Sequence[Mapping[str, Any]], samples_by_id: Mapping[str, Any]) -> str:
    """Charged power over time for the first MAX_RUN_CHARTS runs with samples, each beside its figures."""
    charts = [(r, samples_by_id[str(r.get("id"))]) for r in runs if str(r.get("id")) in samples_by_id][:MAX_RUN_CHARTS]
    if not charts:
        return ""
    return "<h2>Runs with samples</h2>" + "".join(_run_chart(k, r, s) for k, (r, s) in enumerate(charts))


def _run_chart(k: int, r: Mapping[str, Any], s: Any) -> str:
    """One run's charged power over time, beside its peak, point count and energy."""
    pts = s.points()
    ts = [p.t_s for p in pts]
    ys = [sum(p.charged_j.values()) / p.dt_s if p.dt_s > 0 else 0.0 for p in pts]
    title = f"{r.get('label', '')} {str(r.get('started_at', ''))[:19]}"
    stats: list[list[object]] = [
        ["peak W", num(max(ys, default=0.0))],
        ["points", len(ys)],
        ["energy J", num(sum(sum(p.charged_j.values()) for p in pts))],
    ]
    return row(
        line_chart(f"run{k}", f"Charged power of {title}", [Line("charged W", ts, ys)], "time (s)", "W"),
        table(title, ["", "value"], stats),
    )


def _totals(runs: Sequence[Mapping[str, Any]], mixed: bool) -> str:
    """The table of section 5.3 by label: runs, time, energy per domain, CO2e, mean intensity; a total row."""
    groups: dict[str, dict[str, float]] = {}
    totals: dict[str, dict[str, float]] = {}
    for r in runs:
        est = record_methods(r)["total"] == "estimated"
        e = r.get("energy_j") or {}
        tot_j = sum(_f(e.get(d)) for d in DOMAINS if e.get(d) is not None)
        for key, bucket in ((_group(r, mixed), groups), (f"total [{r.get('scope')}]" if mixed else "total", totals)):
            g = bucket.setdefault(key, {"runs": 0, "est": 0, "dur": 0, "cpu_s": 0, "co2": 0, "kwh": 0})
            g["runs"] += 1
            g["est"] += est
            g["dur"] += _f(r.get("duration_s"))
            g["cpu_s"] += _f(r.get("cpu_time_s"))
            g["co2"] += _f(r.get("co2e_g"))
            g["kwh"] += kwh(tot_j, _f(r.get("pue") or 1))
            for d in DOMAINS:
                if e.get(d) is not None:
                    g[d] = g.get(d, 0.0) + _f(e.get(d))
            g["total"] = g.get("total", 0.0) + tot_j
    head = [
        "label",
        "runs",
        "estimated",
        "duration s",
        "CPU s",
        *(f"{d} J" for d in DOMAINS),
        "total J",
        "CO2e g",
        "g/kWh",
    ]

    def cells(name: str, g: dict[str, float]) -> list[object]:
        mean = g["co2"] / g["kwh"] if g["kwh"] > 0 else 0.0
        return [
            name,
            int(g["runs"]),
            f"{int(g['est'])} of {int(g['runs'])}",
            num(g["dur"]),
            num(g["cpu_s"]),
            *(num(g[d]) if d in g else "-" for d in DOMAINS),
            num(g.get("total", 0.0)),
            num(g["co2"]),
            num(mean),
        ]

    order = sorted(groups, key=lambda k: (-groups[k]["co2"], k))
    rows = [cells(k, groups[k]) for k in order]
    out = table("Totals by label (section 5.3 of the contract)", head, rows, "totals")
    total_rows = "".join(
        '<tr class="total">'
        + "".join(
            (f'<th scope="row">{esc(c)}</th>' if i == 0 else f"<td>{esc(c)}</td>") for i, c in enumerate(cells(k, g))
        )
        + "</tr>"
        for k, g in totals.items()
    )
    return out.replace("</tbody></table>", total_rows + "</tbody></table>")
