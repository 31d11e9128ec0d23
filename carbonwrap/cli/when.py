"""`carbonwrap when` (SPEC.md section 9.2), and the callbacks of the carbon-aware wrap options (section 9.1)."""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

import click

from carbonwrap.cli.params import CONTEXT


def valid_duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A duration with s/m/h/d (a bare number is seconds), finite and more than 0."""
    if value is None:
        return None
    from carbonwrap.grid.timing import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    if seconds <= 0:
        raise click.BadParameter(f"must be more than 0, got '{value}'; e.g. 6h")
    return seconds


def valid_expect(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """--expect D, or 'auto' (None: the median of earlier runs, else 1 h)."""
    if value is None or value.strip().lower() == "auto":
        return None
    return valid_duration(ctx, param, value)


def valid_finish_by(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """--finish-by as wall-clock seconds: ISO 8601, or HH:MM local time (the next such time)."""
    if value is None:
        return None
    from carbonwrap.grid.timing import parse_finish_by

    try:
        return parse_finish_by(value, time.time())
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _local(wall_s: float) -> datetime:
    return datetime.fromtimestamp(wall_s).astimezone()


def _region(region: str | None, obj: Any) -> str | None:
    if region:
        return region
    if isinstance(obj, dict) and obj.get("region"):
        return str(obj["region"])
    from carbonwrap import intensity

    guess = intensity.guess_country(os.environ)
    return guess[0] if guess else None


@click.command(context_settings=CONTEXT)
@click.option("-r", "--region", metavar="CODE", help="Grid region: GB, GB-13, GB-RG10, DK-DK1, em:DE ...")
@click.option("--within", metavar="D", callback=valid_duration, help="Start at any time in the next D (6h, 90m).")
@click.option("--finish-by", metavar="T", callback=valid_finish_by, help="Finish by T: HH:MM local, or ISO 8601.")
@click.option("--expect", metavar="D", callback=valid_duration, help="How long the job takes [default: 1h].")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "iso", "unix", "at", "json"]),
    default="text",
    show_default=True,
    help="iso: local time with offset; unix: epoch seconds; at: [[CC]YY]MMDDhhmm for 'at -t'.",
)
@click.pass_context
def when(
    ctx: click.Context,
    /,
    region: str | None,
    within: float | None,
    finish_by: float | None,
    expect: float | None,
    fmt: str,
) -> int:
    """Print the best time to start a job of --expect duration, from the grid's forecast; run nothing.

    \b
      at -t "$(carbonwrap when -r GB --within 12h --expect 2h --format at)" -f job.sh
      sbatch --begin="$(date -d @"$(carbonwrap when -r GB --finish-by 07:00 --format unix)" +%FT%T)" job.sh
    Exits 0 with an answer, 1 when no forecast can be had, 2 for usage errors.
    """
    from carbonwrap.grid.schedule import plan_start
    from carbonwrap.grid.timing import DEFAULT_EXPECT_S, latest_start

    if within is None and finish_by is None:
        raise click.UsageError("give --within D or --finish-by T; e.g. carbonwrap when -r GB --within 12h")
    expected = DEFAULT_EXPECT_S if expect is None else expect
    code = _region(region, ctx.obj)
    now = time.time()
    latest = latest_start(now, within, finish_by, expected)
    assert latest is not None
    plan, warnings = plan_start(code, latest, expected, env=os.environ, now=lambda: now, expected_from="flag")
    if plan is None:
        why = warnings[0].removesuffix("; starting now") if warnings else "no forecast"
        click.echo(f"carbonwrap when: {why}", err=True)
        return 1
    for w in warnings:
        click.echo(f"carbonwrap when: {w}", err=True)
    if expect is None:
        click.echo("carbonwrap when: expecting the job to take 1 h (set --expect D)", err=True)
    click.echo(_render(plan, fmt))
    return 0


def _render(plan: Any, fmt: str) -> str:
    from carbonwrap.grid.series import iso

    if fmt == "iso":
        return _local(plan.start_s).isoformat(timespec="seconds")
    if fmt == "unix":
        return str(round(plan.start_s))
    if fmt == "at":
        return _local(plan.start_s).strftime("%Y%m%d%H%M")
    if fmt == "json":
        doc = {
            "start": iso(plan.start_s),
            "end": iso(plan.start_s + plan.expected_s),
            "g_per_kwh": plan.chosen_g_per_kwh,
            "now_g_per_kwh": plan.now_g_per_kwh,
            "saving": plan.saving,
            "provider": plan.provider,
            "zone": plan.zone,
            "candidates": [{"start": iso(s), "g_per_kwh": g} for s, g in plan.candidates],
        }
        import json

        return json.dumps(doc)
    start = _local(plan.start_s).strftime("%Y-%m-%d %H:%M %Z")
    now = f", {plan.now_g_per_kwh:.0f} now" if plan.now_g_per_kwh is not None else ""
    saving = f" (−{100 * plan.saving:.0f} %)" if plan.saving is not None and plan.saving > 0 else ""
    return (
        f"{start}: forecast {plan.chosen_g_per_kwh:.0f} g/kWh over {plan.expected_s / 3600:g} h"
        f"{now}{saving} [{plan.provider} {plan.zone}]"
    )
