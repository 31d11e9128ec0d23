"""The subcommands: regions, doctor, report. Output goes to stdout: it is what the user asked for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from carbonwrap.cli.params import CONTEXT, run_options


@click.command(context_settings=CONTEXT)
@click.argument("query", required=False)
def regions(query: str | None) -> None:
    """List the bundled grid-intensity table, or the rows whose code or name contains QUERY."""
    from carbonwrap import intensity

    table = intensity.Table.load()
    rows = table.search(query) if query else table.regions
    if not rows:
        hint = table.suggest(query or "")
        raise click.ClickException(f"no region matches '{query}'" + (f"; close: {', '.join(hint)}" if hint else ""))
    width = max(len(r.code) for r in rows)
    click.echo(f"{'code':<{width}}  {'g/kWh':>8}  year  name  [source]")
    from carbonwrap.grid.zones import live_marker

    for r in rows:
        live = live_marker(r.code, table)  # --grid live: which provider would price this region
        click.echo(
            f"{r.code:<{width}}  {r.g_per_kwh:>8g}  {r.year}  {r.name}  [{r.source}]" + (f"  [{live}]" if live else "")
        )


@click.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print the diagnosis as JSON.")
@click.option("--sysfs", metavar="PATH", help="Root of sysfs [default: /sys, or the option before 'doctor'].")
@click.option("-r", "--region", metavar="CODE", help="Grid region to check.")
@click.pass_context
def doctor(ctx: click.Context, /, as_json: bool, sysfs: str | None, region: str | None) -> int:
    """Say which sensor each domain would use here and why, with the exact fix for what can't be measured.

    Exits 0 when every present domain is measured, 1 when any is estimated or unreadable.
    """
    from carbonwrap import doctor as diagnosis

    wrap_params: dict[str, Any] = ctx.obj or {}
    if region is not None:
        wrap_params = {**wrap_params, "region": region, "region_from_env": False}
    options = run_options(wrap_params, ["doctor"])
    findings = diagnosis.diagnose(
        sysfs=Path(sysfs or options.sysfs), intensity=options.intensity, cpu_watts=options.cpu_watts, gpu=options.gpu
    )
    if as_json:
        click.echo(json.dumps(diagnosis.as_json(findings), indent=2))
    else:
        click.echo(diagnosis.as_text(findings), nl=False)
    return diagnosis.exit_status(findings)


@click.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--by", default="label", show_default=True, metavar="label|host|day|tag:KEY", help="Group runs by.")
@click.option("--since", metavar="DATE", help="Only runs started at or after DATE (2026-11-01, or a full time).")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv", "markdown"]), default="table", show_default=True
)
def report(files: tuple[str, ...], by: str, since: str | None, fmt: str) -> int:
    """Total the records in FILE... (.jsonl, .csv or .json from -o) by group: runs, time, energy, CO2e."""
    from datetime import datetime

    from carbonwrap import aggregate

    if not (by in ("label", "host", "day") or (by.startswith("tag:") and len(by) > 4)):
        raise click.BadParameter(f"cannot group by '{by}': use label, host, day or tag:KEY", param_hint="--by")
    if since is not None:
        try:
            since = datetime.fromisoformat(since.replace("Z", "+00:00")).strftime("%Y-%m-%dT%H:%M:%S")
        except ValueError:
            raise click.BadParameter(f"'{since}' is not a date; e.g. 2026-11-01", param_hint="--since") from None
    loaded = aggregate.load([Path(f) for f in files])
    rows = aggregate.totals(loaded.runs, by, since)
    click.echo(aggregate.render(rows, fmt, by), nl=False)
    if loaded.malformed:
        shown = "; ".join(loaded.malformed[:3]) + (" ..." if len(loaded.malformed) > 3 else "")
        click.echo(f"carbonwrap report: skipped {len(loaded.malformed)} malformed line(s): {shown}", err=True)
    return 0
