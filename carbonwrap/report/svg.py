"""Inline SVG charts and HTML tables for the HTML reports: no script, no font, no external resource. Every
mark carries a pattern or dash and a text label, so a chart reads without colour. No third-party imports."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

W, H = 720, 260  # the viewBox; the SVG scales to the page's width
LEFT, RIGHT, TOP, BOTTOM = 64, 110, 28, 40
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
COLOURS = ("#1f5fa8", "#c2571a", "#2e8540", "#7a3e9d", "#a61c3c", "#5c5c5c", "#8a6d00", "#0b7a75")
DASHES = ("", "7 4", "2 3", "10 3 2 3", "4 4", "1 5", "12 6", "3 6 1 6")


def esc(text: object) -> str:
    """Text for HTML and SVG: markup escaped, control characters shown as \\xNN rather than sent."""
    s = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))
    return html.escape(s, quote=True)


def nice_step(span: float, ticks: int = 5) -> float:
    if not span > 0 or not math.isfinite(span):
        return 1.0
    raw = span / ticks
    mag = 10.0 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def num(v: float) -> str:
    """A figure for a label or a table cell: 3 significant digits, whole numbers with separators up to a
    billion, an exponent beyond that or below a thousandth."""
    if v == 0 or not math.isfinite(v):
        return "0"
    a = abs(v)
    if a >= 1e9 or a < 0.001:
        return f"{v:.3g}"
    if a >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


@dataclass(frozen=True, slots=True)
class Line:
    name: str  # the label drawn at its end and in the legend
    xs: Sequence[float]
    ys: Sequence[float]
    style: int = 0  # index into COLOURS and DASHES
    width: float = 2.0


@dataclass(frozen=True, slots=True)
class Band:
    x0: float
    x1: float
    label: str


def patterns(prefix: str) -> str:
    """Eight fills told apart without colour: solid, hatches, dots, cross, outline."""
    shapes = (
        "",
        '<path d="M0 8L8 0" stroke="#000" stroke-width="1.5"/>',
        '<circle cx="4" cy="4" r="1.6" fill="#000"/>',
        '<path d="M0 4H8" stroke="#000" stroke-width="1.5"/>',
        '<path d="M0 0L8 8M8 0L0 8" stroke="#000" stroke-width="1"/>',
        '<path d="M4 0V8" stroke="#000" stroke-width="1.5"/>',
        '<path d="M0 0L8 8" stroke="#fff" stroke-width="2"/>',
        '<rect x="0" y="0" width="4" height="4" fill="#fff"/>',
    )
    out = []
    for i, shape in enumerate(shapes):
        out.append(
            f'<pattern id="{prefix}{i}" width="8" height="8" patternUnits="userSpaceOnUse">'
            f'<rect width="8" height="8" fill="{COLOURS[i]}" fill-opacity="{0.85 if i else 1}"/>{shape}</pattern>'
        )
    return "<defs>" + "".join(out) + "</defs>"


def _frame(
    x0: float, x1: float, y1: float, x_label: str, y_label: str, x_ticks: bool = True
) -> tuple[str, float, float]:
    """Axes, grid and tick labels; returns them with the scale factors."""
    sx = (W - LEFT - RIGHT) / ((x1 - x0) or 1.0)
    sy = (H - TOP - BOTTOM) / (y1 or 1.0)
    parts = [f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}"/>']
    step = nice_step(y1)
    v = 0.0
    while v <= y1 * 1.0001:
        y = H - BOTTOM - v * sy
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{num(v)}</text>')
        v += step
    step = nice_step(x1 - x0, 6)
    v = math.ceil(x0 / step) * step if x_ticks else math.inf
    while v <= x1 * 1.0001 + 1e-12:
        x = LEFT + (v - x0) * sx
        parts.append(f'<text class="tick" x="{x:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">{num(v)}</text>')
        v += step
    parts.append(
        f'<text class="axis" x="{(LEFT + W - RIGHT) / 2}" y="{H - 6}" text-anchor="middle">{esc(x_label)}</text>'
    )
    parts.append(f'<text class="axis" x="12" y="{TOP - 10}">{esc(y_label)}</text>')
    return "".join(parts), sx, sy


def line_chart(
    chart_id: str, title: str, lines: Sequence[Line], x_label: str, y_label: str, bands: Sequence[Band] = ()
) -> str:
    xs = [x for ln in lines for x in ln.xs] + [b.x1 for b in bands]
    ys = [y for ln in lines for y in ln.ys]
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    x0 = min(x0, 0.0)
    top = max(ys, default=0.0)
    y1 = (math.ceil(top * 1.05 / nice_step(top)) * nice_step(top)) if top > 0 else 1.0
    frame, sx, sy = _frame(x0, x1, y1, x_label, y_label)
    parts = [
        f'<svg id="{chart_id}" class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="{chart_id}-t">',
        f'<title id="{chart_id}-t">{esc(title)}</title>',
        patterns(f"{chart_id}-p"),
        frame,
    ]
    for i, b in enumerate(bands):
        bx, bw = LEFT + (b.x0 - x0) * sx, max((b.x1 - b.x0) * sx, 0.5)
        parts.append(
            f'<g class="band" data-phase="{esc(b.label)}"><rect x="{bx:.1f}" y="{TOP}" width="{bw:.1f}" '
            f'height="{H - TOP - BOTTOM}" class="band{i % 2}"><title>{esc(b.label)}</title></rect>'
            f'<text class="band-label" x="{bx + 3:.1f}" y="{TOP + 11}">{esc(b.label[:24])}</text></g>'
        )
    label_ys: list[float] = []
    for ln in lines:
        pts = " ".join(
            f"{LEFT + (x - x0) * sx:.1f},{H - BOTTOM - y * sy:.1f}" for x, y in zip(ln.xs, ln.ys, strict=True)
        )
        dash = f' stroke-dasharray="{DASHES[ln.style]}"' if DASHES[ln.style] else ""
        parts.append(
            f'<polyline class="series" data-series="{esc(ln.name)}" data-points="{len(ln.xs)}" points="{pts}" '
            f'fill="none" stroke="{COLOURS[ln.style]}" stroke-width="{ln.width}"{dash}/>'
        )
        if ln.ys:
            y = H - BOTTOM - ln.ys[-1] * sy + 4
            while any(abs(y - o) < 11 for o in label_ys):
                y += 11
            label_ys.append(y)
            parts.append(
                f'<text class="end-label" x="{W - RIGHT + 4}" y="{y:.1f}" fill="{COLOURS[ln.style]}">'
                f"{esc(ln.name)}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    chart_id: str, title: str, cats: Sequence[str], stacks: Sequence[tuple[str, Sequence[float]]], y_label: str
) -> str:
    """Stacked vertical bars, one per category; each stack a pattern, named in the legend."""
    totals = [sum(s[1][i] for s in stacks) for i in range(len(cats))]
    top = max(totals, default=0.0)
    y1 = (math.ceil(top * 1.05 / nice_step(top)) * nice_step(top)) if top > 0 else 1.0
    n = max(len(cats), 1)
    frame, _, sy = _frame(0, n, y1, "", y_label, x_ticks=False)
    slot = (W - LEFT - RIGHT) / n
    parts = [
        f'<svg id="{chart_id}" class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="{chart_id}-t">',
        f'<title id="{chart_id}-t">{esc(title)}</title>',
        patterns(f"{chart_id}-p"),
        frame,
    ]
    every = max(1, math.ceil(n / 8))
    for i, cat in enumerate(cats):
        x, base = LEFT + i * slot + slot * 0.1, float(H - BOTTOM)
        for k, (name, values) in enumerate(stacks):
            h = values[i] * sy
            if values[i] <= 0:
                continue
            base -= h
            parts.append(
                f'<rect class="bar" data-cat="{esc(cat)}" data-series="{esc(name)}" data-value="{values[i]:.6g}" '
                f'x="{x:.2f}" y="{base:.2f}" width="{slot * 0.8:.2f}" height="{h:.2f}" '
                f'fill="url(#{chart_id}-p{k % 8})" '
                f'stroke="#000" stroke-width="0.4"><title>{esc(cat)} {esc(name)}: {num(values[i])}</title></rect>'
            )
        if i % every == 0:
            parts.append(
                f'<text class="tick" x="{x + slot * 0.4:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">'
                f"{esc(cat)}</text>"
            )
    for k, (name, _) in enumerate(stacks):
        y = TOP + 4 + k * 16
        parts.append(
            f'<g class="legend"><rect x="{W - RIGHT + 8}" y="{y}" width="12" height="12" '
            f'fill="url(#{chart_id}-p{k % 8})" stroke="#000" stroke-width="0.5"/>'
            f'<text x="{W - RIGHT + 24}" y="{y + 10}">{esc(name[:14])}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def table(caption: str, head: Sequence[str], rows: Sequence[Sequence[object]], cls: str = "") -> str:
    """A plain table; the first column is a row header. Cells are escaped."""
    out = [f'<table class="{cls}"><caption>{esc(caption)}</caption><thead><tr>']
    out += [f'<th scope="col">{esc(h)}</th>' for h in head]
    out.append("</tr></thead><tbody>")
    for r in rows:
        cells = [f'<th scope="row">{esc(r[0])}</th>'] + [f"<td>{esc(c)}</td>" for c in r[1:]]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


CSS = """
:root{color-scheme:light}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;padding:1rem;max-width:1200px;
color:#111;background:#fff;line-height:1.4}
h1{font-size:1.4rem;margin:.2rem 0}h2{font-size:1.1rem;margin:1.4rem 0 .4rem;border-bottom:1px solid #999}
.meta{color:#333;font-size:.9rem;overflow-wrap:anywhere}
.row{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:1rem;align-items:start}
@media (max-width:800px){.row{grid-template-columns:minmax(0,1fr)}}
@media (max-width:600px){figure{overflow-x:auto}.chart{min-width:560px}}
figure{margin:0}.chart{width:100%;height:auto;display:block}
.plot{fill:#fff;stroke:#444;stroke-width:1}.grid{stroke:#ddd;stroke-width:1}
.tick,.axis,.end-label,.band-label,.legend text{font-size:11px;fill:#222}.end-label{font-weight:600}
.band0{fill:#000;fill-opacity:.06}.band1{fill:#000;fill-opacity:.14}
.band-label{font-size:10px}
.tables{overflow-x:auto}
table{border-collapse:collapse;font-size:.82rem;margin:0 0 .8rem;width:100%}
caption{text-align:left;font-weight:600;padding:.2rem 0}
th,td{border:1px solid #bbb;padding:.15rem .4rem;text-align:right;font-variant-numeric:tabular-nums}
th[scope=row],thead th{text-align:left;background:#f2f2f2}
tr.total th,tr.total td{font-weight:700}
details summary{cursor:pointer;font-size:.9rem}
@media print{body{max-width:none;padding:0;font-size:10pt}.row{grid-template-columns:minmax(0,1fr)}
figure,table{break-inside:avoid}h2{break-after:avoid}*{print-color-adjust:exact;-webkit-print-color-adjust:exact}}
"""


def page(title: str, body: Iterable[str]) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>" + "".join(body) + "</body></html>\n"
    )


def row(figure: str, tables: str) -> str:
    return f'<div class="row"><figure>{figure}</figure><div class="tables">{tables}</div></div>'
