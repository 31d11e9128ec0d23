"""The final summary on stderr: plain text for logs and NO_COLOR, rich when stderr is a terminal."""

from __future__ import annotations

import shlex
from typing import IO, Any

from carbonwrap.model import DOMAINS
from carbonwrap.report.text import escape_control, format_energy, format_mass

__all__ = ["format_energy", "format_mass", "lines", "render"]

# US EPA, "Greenhouse Gas Emissions from a Typical Passenger Vehicle": about 400 g CO2 per mile.
CAR_G_PER_KM = 400 / 1.609344
# Below this much CO2e (100 m of driving) a car comparison stops reading sensibly; energy is compared with
# a 10 W LED bulb instead (the draw of a common 800-lumen LED lamp).
CAR_FROM_G = CAR_G_PER_KM / 10
BULB_W = 10.0


def format_duration(s: float) -> str:
    if s < 60:
        return f"{s:.2f} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{int(m)} min {s:04.1f} s"
    h, m = divmod(m, 60)
    return f"{int(h)} h {int(m):02d} min"


def _span(s: float) -> str:
    units = (("days", 86400.0), ("hours", 3600.0), ("minutes", 60.0), ("seconds", 1.0), ("ms", 1e-3), ("µs", 1e-6))
    for unit, scale in units:
        if s >= scale:
            v = s / scale
            return f"{v:.2g} {unit}" if v < 10 else f"{v:.0f} {unit}"
    return "under a microsecond"


def equivalent(g: float, energy_j: float | None = None) -> str:
    """One everyday comparison that reads sensibly at this size: a car's distance for a run's worth of
    driving, else the time a 10 W LED bulb would burn on the same energy."""
    if g >= CAR_FROM_G or (energy_j is None and g > 0):
        km = g / CAR_G_PER_KM
        distance = f"{km:,.0f} km" if km >= 1000 else f"{km:.3g} km" if km >= 1 else f"{km * 1000:.0f} m"
        return f"about as much CO2 as driving a typical car {distance} (US EPA, 400 g per mile)"
    if energy_j is None or energy_j <= 0:
        return "nothing to compare"
    return f"about the energy a 10 W LED bulb uses in {_span(energy_j / BULB_W)}"


def _watts(w: float) -> str:
    return f"{w:.3g} W"


def idle_line(rec: dict[str, Any]) -> str | None:
    """What idle power the charge assumed, per domain, and where each figure came from."""
    sources = {
        "baseline": "measured by --baseline",
        "model": "the model's idle",
        "lowest seen": "lowest power seen in the run (below the model's idle)",
    }
    idle = rec.get("idle_w") or {}
    parts = [f"{d} {_watts(v['w'])} ({sources.get(v['source'], v['source'])})" for d, v in idle.items()]
    baseline = rec.get("baseline_w") or {}
    extra = [f"{d} {_watts(w)}" for d, w in baseline.items() if d not in idle]
    if extra:
        parts.append(f"--baseline also measured {', '.join(extra)}")
    return "; ".join(parts) or None


def budget_line(rec: dict[str, Any]) -> str | None:
    """The budget outcome: within it, or what was passed and what carbonwrap did about it."""
    b = rec.get("budget")
    if not b:
        return None
    limits = []
    if b.get("max_energy_j") is not None:
        limits.append(f"energy {format_energy(b['max_energy_j'])}")
    if b.get("max_co2e_g") is not None:
        limits.append(f"CO2e {format_mass(b['max_co2e_g'])}")
    shown = " and ".join(limits)
    if not b.get("exceeded"):
        return f"within budget ({shown})"
    policy = b.get("on_budget", "warn")
    status = b.get("exit_status")
    then = {
        "warn": "warned only",
        "fail": f"--on-budget fail: exit status {status}",
        "kill": "--on-budget kill: the command was stopped",
    }.get(str(policy), str(policy))
    return f"PASSED: {b['exceeded']}; {then}"


def short_line(rec: dict[str, Any]) -> str:
    """--summary short: `carbonwrap: 8.03 s, 13.3 J (estimated), 163 µg CO2e @ FR 44 g/kWh, exit 0`."""
    it = rec["intensity"]
    g = it["g_per_kwh"]
    where = it["region"] or "fixed"
    from carbonwrap.report.record import record_methods

    tag = " (estimated)" if record_methods(rec)["total"] == "estimated" else ""
    status = f"exit {rec['exit_code']}"
    if rec["signal"] is not None:
        status = f"killed by signal {rec['signal']} (exit {rec['exit_code']})"
    b = rec.get("budget") or {}
    if b.get("exceeded"):
        status += f", budget passed (exit status {b.get('exit_status')})"
    shown = f"{g:.0f}" if g >= 10 else f"{g:.2g}"
    return escape_control(
        f"carbonwrap: {format_duration(rec['duration_s'])}, {format_energy(rec['energy_j']['total'])}{tag}, "
        f"{format_mass(rec['co2e_g'])} CO2e @ {where} {shown} g/kWh, {status}"
    )


def _gpu_line(g: dict[str, Any], scope: str) -> str:
    text = f"{g['name']}: {format_energy(g['energy_j'])}"
    if scope != "machine":
        text += f", charged {format_energy(g['charged_j'])}"
    text += f"  ({g['method']}{', MIG' if g.get('mig') else ''})"
    return text + (f"; {g['note']}" if g.get("note") else "")


def lines(rec: dict[str, Any]) -> list[tuple[str, str]]:
    """(heading, text) pairs of the summary, shared by the plain and the rich rendering."""
    from carbonwrap.report.record import record_methods  # i14: one rule for measured/estimated

    methods = record_methods(rec)
    # A total that contains a modelled domain is itself an estimate, and says so.
    tag = " (estimated)" if methods["total"] == "estimated" else ""
    out = [
        ("command", shlex.join(rec["command"])),
        ("status", _status(rec)),
        ("duration", f"{format_duration(rec['duration_s'])}, tree CPU time {rec['cpu_time_s']:.2f} s"),
        *_domain_lines(rec, methods),
        ("energy", _energy_line(rec, tag)),
    ]
    idle = idle_line(rec)
    if idle:
        out.append(("idle", idle))
    out.append(("region", region_line(rec["intensity"])))
    if rec.get("schedule"):
        from carbonwrap.grid.schedule import outcome

        out.append(("schedule", outcome(rec["schedule"])))
    phases = rec.get("phases") or []
    if len(phases) > 1:
        out.append(("phases", ", ".join(f"{p['name']} {format_energy(p['energy_j']['total'])}" for p in phases)))
    total = rec["energy_j"]["total"]
    out.append(("CO2e", f"{format_mass(rec['co2e_g'])}{tag}, {equivalent(rec['co2e_g'], total)}"))
    budget = budget_line(rec)
    if budget:
        out.append(("budget", budget))
    out += _notes(rec)
    # Arguments, labels and a descendant's comm may hold control characters: shown escaped, never sent raw.
    return [(head, escape_control(text)) for head, text in out]


def _status(rec: dict[str, Any]) -> str:
    if rec["signal"] is not None:
        return f"killed by signal {rec['signal']} (exit {rec['exit_code']})"
    return f"exit {rec['exit_code']}"


def _domain_lines(rec: dict[str, Any], methods: dict[str, Any]) -> list[tuple[str, str]]:
    """One line per measured domain, with the whole machine's figure beside the charged one; then the GPUs."""
    out = []
    scope = rec["scope"]
    for d in DOMAINS:
        charged, machine = rec["energy_j"][d], rec["machine_energy_j"][d]
        if charged is None:
            continue
        text = f"{format_energy(charged)}  {methods[d]}"
        if scope != "machine":
            text += f"  (whole machine {format_energy(machine)})"
        out.append((d, text))
        if d == "gpu":
            out += [(f"GPU {g['index']}", _gpu_line(g, scope)) for g in rec.get("gpus", [])]
    return out


def _energy_line(rec: dict[str, Any], tag: str) -> str:
    total, mtotal = rec["energy_j"]["total"], rec["machine_energy_j"]["total"]
    scope = rec["scope"]
    charged_to = "the command's process tree" if scope == "tree" else "the whole machine"
    line = f"{format_energy(total)}{tag} charged to {charged_to}"
    if scope != "machine":
        line += f", {total / mtotal:.0%} of the machine's {format_energy(mtotal)}" if mtotal else ", machine 0 J"
    if rec["pue"] != 1.0:
        line += f"; x PUE {rec['pue']:g}"
    return line


def region_line(it: dict[str, Any]) -> str:
    """Where the intensity came from: the region and its figure, the world default with the fix, or the
    live figures."""
    if it.get("grid") == "live":
        from carbonwrap.grid import describe

        region = describe(it, it.get("region"))
        if "lifecycle" not in str(it.get("basis") or ""):
            region += " (direct emissions; the yearly figure is lifecycle: not comparable one-to-one)"
        return region
    year = f", {it['year']}" if it["year"] else ""
    if it["how"] == "default":
        return (
            f"no region set: world average {it['g_per_kwh']:g} g/kWh ({it['source']}{year}). "
            "Set one with --region CODE or CARBONWRAP_REGION; list them with 'carbonwrap regions'"
        )
    where = f"{it['region']} {it['name'] or ''}".strip() if it["region"] else "fixed figure"
    return f"{where}: {it['g_per_kwh']:g} g/kWh ({it['source']}{year}) [{it['note'] or it['how']}]"


def _notes(rec: dict[str, Any]) -> list[tuple[str, str]]:
    """The estimated sensors with the way to measure them, then the warnings."""
    estimated = [s for s in rec["sensors"] if s["method"] == "estimated"]
    out = [("estimated", f"{s['domain']}: {s['detail']}") for s in estimated]
    if estimated:
        out.append(("estimated", "run 'carbonwrap doctor' to see why and what would measure it instead"))
    return out + [("warning", w) for w in rec["warnings"]]


def render(rec: dict[str, Any], stream: IO[str], *, short: bool = False, rich: bool = False) -> None:
    """The final summary: one line with `short`, else in full, with rich when `rich`."""
    if short:
        stream.write(short_line(rec) + "\n")
        stream.flush()
    elif rich:
        render_rich(rec, stream)
    else:
        render_plain(rec, stream)


def render_plain(rec: dict[str, Any], stream: IO[str]) -> None:
    stream.write("carbonwrap summary\n")
    for head, text in lines(rec):
        stream.write(f"  {head:<10} {text}\n")
    stream.flush()


def render_rich(rec: dict[str, Any], stream: IO[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    styles = {"CO2e": "bold green", "warning": "yellow", "estimated": "dim", "command": "bold", "budget": "bold"}
    table = Table(title="carbonwrap", title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(style="cyan", no_wrap=True)
    table.add_column(overflow="fold")
    for head, text in lines(rec):
        table.add_row(head, text, style=styles.get(head))
    Console(file=stream, highlight=False, soft_wrap=False).print(table)
