"""The subcommands: regions, doctor, report. Output goes to stdout: it is what the user asked for."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from carbonwrap.aggregate import FORMATS
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
    live = None
    if options.grid == "live":  # one request to the region's provider: does it answer, how fast, on what basis
        from carbonwrap.grid import probe

        live = probe(options.grid_region or options.intensity.region)
    if as_json:
        out = diagnosis.as_json(findings)
        click.echo(json.dumps({**out, "live_intensity": live} if live is not None else out, indent=2))
    else:
        click.echo(diagnosis.as_text(findings), nl=False)
        if live is not None:
            click.echo(_live_line(live))
    status = diagnosis.exit_status(findings)
    return status if live is None or live["ok"] else max(status, 1)


def _live_line(live: dict[str, Any]) -> str:
    from carbonwrap.report.text import escape_control

    if not live["ok"]:
        took = f" after {live['latency_s']:.2f} s" if live.get("latency_s") is not None else ""
        return escape_control(f"live intensity: {live['error']}{took}; runs fall back to the yearly table")
    return escape_control(
        f"live intensity: {live['provider']} for {live['zone']} answered in {live['latency_s']:.2f} s: "
        f"{live['g_per_kwh']:.0f} g/kWh ({live['kind']}; basis {live['basis']})"
    )


def _when(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    from carbonwrap.aggregate import parse_time

    try:
        return parse_time(value)
    except ValueError:
        raise click.BadParameter(
            f"'{value}' is not a date; e.g. 2026-11-01 or 2026-11-01T08:00+01:00 (no offset: UTC)", param_hint=name
        ) from None


@click.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1)
@click.option(
    "--by",
    default="label",
    show_default=True,
    metavar="label|host|day|month|region|scope|tag:KEY",
    help="Group runs by (days and months in UTC).",
)
@click.option("--since", metavar="TIME", help="Only runs started at or after TIME (2026-11-01; no offset: UTC).")
@click.option("--until", metavar="TIME", help="Only runs started before TIME (2026-12-01; no offset: UTC).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--schema", is_flag=True, help="Print the JSON Schema of the record and exit.")
def report(files: tuple[str, ...], by: str, since: str | None, until: str | None, fmt: str, schema: bool) -> int:
    """Total the records in FILE... (.jsonl, .csv, .json; '-' is stdin; a directory is read recursively)
    by group: runs, time, energy, CO2e. A run in several files counts once; a nested run is in its parent's."""
    import sys

    from carbonwrap import aggregate, history

    if schema:
        from importlib.resources import files as package_files

        click.echo(package_files("carbonwrap").joinpath("data/record.schema.json").read_text(), nl=False)
        return 0
    if not files:
        raise click.UsageError("no FILE given; e.g. carbonwrap report runs.jsonl (or '-' for stdin)")
    if not aggregate.valid_grouping(by):
        choices = ", ".join(aggregate.GROUPINGS)
        raise click.BadParameter(f"cannot group by '{by}': use {choices} or tag:KEY", param_hint="--by")
    start, end = _when(since, "--since"), _when(until, "--until")
    try:
        paths = history.expand(list(files))
    except FileNotFoundError as e:
        raise click.BadParameter(f"no such file or directory: {e}", param_hint="FILE") from None
    if fmt == "html":
        return _html_report(paths, start, end)
    loaded = history.load(paths, sys.stdin.buffer if "-" in paths else None)
    runs, nested = aggregate.not_nested(loaded.runs)
    rows, grand = aggregate.totals(aggregate.select(runs, start, end), by)
    click.echo(aggregate.render(rows, fmt, by, grand), nl=False)
    _tell(loaded, nested)
    return 0


def _is_samples(path: str) -> bool:
    """A --samples file (its first line names run_id and t_s), not a file of records."""
    from carbonwrap.report.samples import SUFFIXES

    if path == "-" or not path.lower().endswith(SUFFIXES):
        return False
    from carbonwrap.report import files

    try:
        fd = files.open_regular(Path(path), os.O_RDONLY)
    except OSError:
        return False
    try:
        head = files.read_head(fd, 4096).split(b"\n", 1)[0]
    finally:
        os.close(fd)
    return b"run_id" in head and b"t_s" in head


def _html_report(paths: list[str], start: float | None, end: float | None) -> int:
    """`report --format html`: the history page, with the runs' --samples files beside their records."""
    import sys
    from datetime import UTC, datetime

    from carbonwrap import aggregate, history
    from carbonwrap.report import html

    samples = [p for p in paths if _is_samples(p)]
    loaded = history.load([p for p in paths if p not in samples], sys.stdin.buffer if "-" in paths else None)
    series: dict[str, Any] = {}
    for p in samples:
        run_id, s = html.series_from_samples(p)
        if run_id:
            series[run_id] = s
    records = [
        {
            "id": r.id,
            "parent_id": r.parent_id,
            "label": r.label,
            "scope": r.scope,
            "started_at": datetime.fromtimestamp(r.started_ts, UTC).isoformat().replace("+00:00", "Z"),
            "duration_s": r.duration_s,
            "co2e_g": r.co2e_g,
            "energy_j": {**dict(r.energy_j), "total": sum(v for _, v in r.energy_j)},
            "region": r.region,
        }
        for r in aggregate.select(loaded.runs, start, end)
    ]
    click.echo(html.history_page(records, series), nl=False)
    _tell(loaded, 0)
    return 0


def _tell(loaded: Any, nested: int) -> None:
    """What was left out, on stderr: one line per problem (the first 20), then the counts."""
    from carbonwrap.report.text import escape_control

    def say(text: str) -> None:
        click.echo(f"carbonwrap report: {escape_control(text)}", err=True)

    for p in loaded.problems[:20]:
        say(p)
    if len(loaded.problems) > 20:
        say(f"... and {len(loaded.problems) - 20} more")
    if loaded.problems:
        say(f"skipped {len(loaded.problems)} malformed line(s) or file(s)")
    if loaded.duplicates:
        say(f"dropped {loaded.duplicates} duplicate run(s): the same id in several files or lines")
    if nested:
        say(f"{nested} nested run(s) not added on top of their parent run")
