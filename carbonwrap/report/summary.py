"""The final summary on stderr: plain text for logs and NO_COLOR, rich when stderr is a terminal."""

from __future__ import annotations

import shlex
from typing import IO, Any

# US EPA, "Greenhouse Gas Emissions from a Typical Passenger Vehicle": about 400 g CO2 per mile.
CAR_G_PER_KM = 400 / 1.609344


def format_mass(g: float) -> str:
    for unit, scale in (("t", 1e6), ("kg", 1e3), ("g", 1.0), ("mg", 1e-3)):
        if abs(g) >= scale:
            return f"{g / scale:.3g} {unit}"
    return f"{g / 1e-6:.3g} µg" if g else "0 g"


def format_energy(j: float) -> str:
    wh = j / 3600
    if wh >= 1000:
        return f"{wh / 1000:.3g} kWh"
    if wh >= 1:
        return f"{wh:.3g} Wh"
    if j >= 1000:
        return f"{j / 1000:.3g} kJ ({wh:.3g} Wh)"
    return f"{j:.3g} J"


def format_duration(s: float) -> str:
    if s < 60:
        return f"{s:.2f} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{int(m)} min {s:04.1f} s"
    h, m = divmod(m, 60)
    return f"{int(h)} h {int(m):02d} min"


def equivalent(g: float) -> str:
    if g <= 0:
        return "nothing to compare"
    metres = g / CAR_G_PER_KM * 1000
    unit, scale = next(((u, k) for u, k in (("km", 1e3), ("m", 1.0), ("mm", 1e-3)) if metres >= k), ("µm", 1e-6))
    return f"about as much CO2 as driving a typical car {metres / scale:.3g} {unit} (US EPA, 400 g per mile)"


def _gpu_line(g: dict[str, Any], scope: str) -> str:
    text = f"{g['name']}: {format_energy(g['energy_j'])}"
    if scope != "machine":
        text += f", charged {format_energy(g['charged_j'])}"
    text += f"  ({g['method']}{', MIG' if g.get('mig') else ''})"
    return text + (f"; {g['note']}" if g.get("note") else "")


def lines(rec: dict[str, Any]) -> list[tuple[str, str]]:
    """(heading, text) pairs of the summary, shared by the plain and the rich rendering."""
    status = f"exit {rec['exit_code']}"
    if rec["signal"] is not None:
        status = f"killed by signal {rec['signal']} (exit {rec['exit_code']})"
    out = [
        ("command", shlex.join(rec["command"])),
        ("status", status),
        ("duration", f"{format_duration(rec['duration_s'])}, tree CPU time {rec['cpu_time_s']:.2f} s"),
    ]
    from carbonwrap.report.record import record_methods  # i14: one rule for measured/estimated

    methods = record_methods(rec)
    scope = rec["scope"]
    for d in ("cpu", "dram", "gpu"):
        charged, machine = rec["energy_j"][d], rec["machine_energy_j"][d]
        if charged is None:
            continue
        how = methods[d]
        text = f"{format_energy(charged)}  {how}"
        if scope != "machine":
            text += f"  (whole machine {format_energy(machine)})"
        out.append((d, text))
        if d == "gpu":
            out += [(f"GPU {g['index']}", _gpu_line(g, scope)) for g in rec.get("gpus", [])]
    total, mtotal = rec["energy_j"]["total"], rec["machine_energy_j"]["total"]
    share = f"{total / mtotal:.0%} of the machine's {format_energy(mtotal)}" if mtotal else "machine 0 J"
    charged_to = "the command's process tree" if scope == "tree" else "the whole machine"
    # A total that contains a modelled domain is itself an estimate, and says so.
    estimated_total = methods["total"] == "estimated"
    tag = " (estimated)" if estimated_total else ""
    line = f"{format_energy(total)}{tag} charged to {charged_to}"
    if scope != "machine":
        line += f", {share}"
    if rec["pue"] != 1.0:
        line += f"; x PUE {rec['pue']:g}"
    out.append(("energy", line))
    it = rec["intensity"]
    year = f", {it['year']}" if it["year"] else ""
    if it["how"] == "default":
        region = (
            f"no region set: world average {it['g_per_kwh']:g} g/kWh ({it['source']}{year}). "
            "Set one with --region CODE or CARBONWRAP_REGION; list them with 'carbonwrap regions'"
        )
    else:
        where = f"{it['region']} {it['name'] or ''}".strip() if it["region"] else "fixed figure"
        how = it["note"] or it["how"]
        region = f"{where}: {it['g_per_kwh']:g} g/kWh ({it['source']}{year}) [{how}]"
    out.append(("region", region))
    out.append(("CO2e", f"{format_mass(rec['co2e_g'])}{tag}, {equivalent(rec['co2e_g'])}"))
    estimated = [s for s in rec["sensors"] if s["method"] == "estimated"]
    for s in estimated:
        out.append(("estimated", f"{s['domain']}: {s['detail']}"))
    if estimated:
        out.append(("estimated", "run 'carbonwrap doctor' to see why and what would measure it instead"))
    for w in rec["warnings"]:
        out.append(("warning", w))
    return out


def render_plain(rec: dict[str, Any], stream: IO[str]) -> None:
    stream.write("carbonwrap summary\n")
    for head, text in lines(rec):
        stream.write(f"  {head:<10} {text}\n")
    stream.flush()


def render_rich(rec: dict[str, Any], stream: IO[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    styles = {"CO2e": "bold green", "warning": "yellow", "estimated": "dim", "command": "bold"}
    table = Table(title="carbonwrap", title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(style="cyan", no_wrap=True)
    table.add_column(overflow="fold")
    for head, text in lines(rec):
        table.add_row(head, text, style=styles.get(head))
    Console(file=stream, highlight=False, soft_wrap=False).print(table)
