"""Command line: flags -> RunOptions, session.run, present, exit with the command's status.

click is imported here only. Nothing here measures: sensors and processes live in their own modules.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from click.core import ParameterSource

from carbonwrap import __version__
from carbonwrap.errors import CarbonwrapError, LaunchError, UsageError
from carbonwrap.model import RunOptions

RESERVED = ("regions", "doctor", "report")
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _interval(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not 0.05 <= value <= 3600:
        raise click.BadParameter(f"must be between 0.05 and 3600 seconds, got {value:g}; e.g. --interval 1")
    return value


def _pue(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if value < 1.0:
        raise click.BadParameter(f"must be 1.0 or more (a data centre uses at least the IT power), got {value:g}")
    return value


def _non_negative(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and value < 0:
        raise click.BadParameter(f"must not be negative, got {value:g}")
    return value


def _tags(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    out = []
    for t in value:
        key, sep, val = t.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"needs KEY=VALUE, got '{t}'; e.g. --tag team=ml")
        out.append((key.strip(), val))
    return tuple(out)


def _outputs(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    from carbonwrap.report import check_suffix

    for v in value:
        try:
            check_suffix(v)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
    return value


def _mass(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from carbonwrap.budget import MASS_G, parse_amount

    try:
        return None if value is None else parse_amount(value, MASS_G, "--max-co2e")
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _energy(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from carbonwrap.budget import ENERGY_J, parse_amount

    try:
        return None if value is None else parse_amount(value, ENERGY_J, "--max-energy")
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _gateway(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from carbonwrap.report.push import check_url

    try:
        if value:
            check_url(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return value or None


def _positive(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if value <= 0:
        raise click.BadParameter(f"must be more than 0 seconds, got {value:g}")
    return value


def _cpu_watts(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    idle, sep, peak = value.partition(":")
    try:
        pair = (float(idle), float(peak))
    except ValueError:
        pair = (-1.0, -1.0)
    if not sep or pair[0] < 0 or pair[1] < pair[0]:
        raise click.BadParameter(
            f"needs IDLE:MAX watts per hardware thread with 0 <= IDLE <= MAX, got '{value}'; e.g. --cpu-watts 0.5:2.5"
        )
    return pair


@click.command(
    context_settings={**CONTEXT, "allow_interspersed_args": False},
    epilog="Other commands: 'carbonwrap regions [QUERY]' lists the grid-intensity table; "
    "'carbonwrap doctor' says what can be measured here. Every option can also be set with "
    "CARBONWRAP_<NAME> (CARBONWRAP_REGION=FR); the flag wins.",
)
@click.option("-r", "--region", metavar="CODE", help="Grid region: FR, FRA, US-CA, CA-QC, aws:eu-west-3 ...")
@click.option(
    "--intensity",
    type=float,
    metavar="G",
    callback=_non_negative,
    help="Fixed grid intensity in gCO2e/kWh; overrides --region.",
)
@click.option(
    "-i",
    "--interval",
    type=float,
    default=1.0,
    show_default=True,
    metavar="S",
    callback=_interval,
    help="Sampling period in seconds (0.05-3600).",
)
@click.option(
    "--pue",
    type=float,
    default=1.0,
    show_default=True,
    callback=_pue,
    help="Power usage effectiveness multiplier (>= 1.0).",
)
@click.option(
    "--scope",
    type=click.Choice(["tree", "machine"]),
    default="tree",
    show_default=True,
    help="Charge the command's process tree, or the whole machine.",
)
@click.option(
    "--baseline",
    type=float,
    default=0.0,
    metavar="S",
    callback=_non_negative,
    help="Measure idle power for S seconds before launching.",
)
@click.option(
    "-o",
    "--output",
    multiple=True,
    metavar="PATH",
    callback=_outputs,
    help="Write the record: .json, .jsonl, .csv or .prom (repeatable).",
)
@click.option("--tag", multiple=True, metavar="KEY=VALUE", callback=_tags, help="Label stored in the record.")
@click.option("--label", metavar="NAME", help="The run's name [default: the command's basename].")
@click.option("--live/--no-live", default=None, help="Live dashboard on stderr [default: when stderr is a terminal].")
@click.option("-q", "--quiet", is_flag=True, help="No dashboard and no summary; records are still written.")
@click.option(
    "--sysfs",
    default="/sys",
    show_default=True,
    metavar="PATH",
    help="Root of sysfs; powercap is read under PATH/class/powercap.",
)
@click.option("--gpu/--no-gpu", default=None, help="Use NVIDIA NVML [default: when a driver is present].")
@click.option(
    "--cpu-watts",
    metavar="IDLE:MAX",
    callback=_cpu_watts,
    help="Per-thread watts for the CPU estimate, overriding the model.",
)
@click.option(
    "--pushgateway",
    metavar="URL",
    callback=_gateway,
    help="Push metrics to this Prometheus Pushgateway at the end (and every --push-interval).",
)
@click.option(
    "--push-interval",
    type=float,
    default=60.0,
    show_default=True,
    metavar="S",
    callback=_positive,
    help="Seconds between pushes during the run.",
)
@click.option(
    "--step-summary/--no-step-summary",
    default=True,
    help="Append a Markdown table to $GITHUB_STEP_SUMMARY when it is set [default: on].",
)
@click.option("--max-co2e", metavar="AMOUNT", callback=_mass, help="Carbon budget: 500mg, 20g, 1.5kg.")
@click.option("--max-energy", metavar="AMOUNT", callback=_energy, help="Energy budget: 900J, 50Wh, 2kWh.")
@click.option(
    "--on-budget",
    type=click.Choice(["warn", "fail", "kill"]),
    default="warn",
    show_default=True,
    help="Past a budget: print a line; exit 3 if the command succeeded; or stop the command.",
)
@click.option(
    "--progress",
    type=float,
    metavar="S",
    callback=_non_negative,
    help="Without the live panel (logs, CI): print a progress line every S seconds.",
)
@click.option("--debug", is_flag=True, hidden=True, help="Show tracebacks.")
@click.version_option(__version__, "-V", "--version", prog_name="carbonwrap")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def wrap(ctx: click.Context, /, **params: Any) -> dict[str, Any]:
    """Run COMMAND and report the energy and CO2e of its process tree.

    \b
      carbonwrap --region FR -- python train.py
      carbonwrap -o runs.jsonl make -j8
    """
    params["region_from_env"] = ctx.get_parameter_source("region") == ParameterSource.ENVIRONMENT
    return params


def _fail(message: str, status: int = 2) -> NoReturn:
    sys.stderr.write(f"carbonwrap: {message}\n")
    sys.stderr.flush()
    sys.exit(status)


def _click_message(e: click.ClickException) -> str:
    if isinstance(e, click.NoSuchOption):
        close = f" (did you mean {', '.join(sorted(e.possibilities))}?)" if e.possibilities else ""
        return (
            f"unknown option {e.option_name}{close}; see 'carbonwrap --help', "
            "and put '--' before a command that starts with '-'"
        )
    return e.format_message().replace("\n", " ")


def main(argv: list[str] | None = None) -> NoReturn:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        params = wrap.main(args, prog_name="carbonwrap", standalone_mode=False, auto_envvar_prefix="CARBONWRAP")
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        _fail(_click_message(e), e.exit_code)
    except click.Abort:
        _fail("aborted", 130)
    if not isinstance(params, dict):  # --help and --version return here
        sys.exit(0)
    command = list(params["command"])
    if not command:
        _fail("no command given; usage: carbonwrap [OPTIONS] [--] COMMAND [ARGS]... (see 'carbonwrap --help')")
    start = len(args) - len(command)
    if command[0] in RESERVED and not (start > 0 and args[start - 1] == "--"):
        _subcommand(command[0], command[1:], params)
    sys.exit(_wrap(params, command))


def _options(params: dict[str, Any], command: list[str]) -> RunOptions:
    from carbonwrap import envtags, intensity

    it = intensity.resolve(
        intensity.Table.load(),
        intensity=params["intensity"],
        region=params["region"],
        region_from_env=params["region_from_env"],
        env=os.environ,
    )
    live = params["live"]
    if live is None:
        live = sys.stderr.isatty()
    return RunOptions(
        command=tuple(command),
        intensity=it,
        interval_s=params["interval"],
        pue=params["pue"],
        scope=params["scope"],
        baseline_s=params["baseline"],
        outputs=tuple(params["output"]),
        tags=tuple({**envtags.from_environment(os.environ), **dict(params["tag"])}.items()),
        label=params["label"] or os.path.basename(command[0]) or command[0],
        live=bool(live) and not params["quiet"],
        quiet=params["quiet"],
        sysfs=params["sysfs"],
        gpu=params["gpu"],
        cpu_watts=params["cpu_watts"],
        debug=params["debug"],
        pushgateway=params["pushgateway"],
        push_interval_s=params["push_interval"],
        step_summary=params["step_summary"],
        max_co2e_g=params["max_co2e"],
        max_energy_j=params["max_energy"],
        on_budget=params["on_budget"],
        progress_s=params["progress"] or None,
    )


def _wrap(params: dict[str, Any], command: list[str]) -> int:
    try:
        options = _options(params, command)
    except UsageError as e:
        _fail(str(e))
    from carbonwrap import app

    try:
        return app.run(options)
    except LaunchError as e:
        _fail(str(e), e.exit_code)
    except CarbonwrapError as e:  # before the launch: nothing runs
        _fail(str(e), 1)
    except Exception as e:  # a bug of ours, before the launch (after it, the session keeps the command's status)
        if options.debug:
            raise
        _fail(f"internal error before the launch: {e!r}; nothing was run. Rerun with --debug for details", 70)


def _subcommand(name: str, rest: list[str], params: dict[str, Any]) -> NoReturn:
    commands = {"regions": regions, "doctor": doctor, "report": report}
    if name in commands:
        try:
            rv = commands[name].main(rest, prog_name=f"carbonwrap {name}", standalone_mode=False, obj=params)
        except click.ClickException as e:
            _fail(_click_message(e), e.exit_code)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except UsageError as e:
            _fail(str(e))
        sys.exit(rv if isinstance(rv, int) else 0)
    _fail(
        f"'carbonwrap {name}' is not available in this version yet; "
        f"to wrap a program called {name}, write 'carbonwrap -- {name}'"
    )


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
    for r in rows:
        click.echo(f"{r.code:<{width}}  {r.g_per_kwh:>8g}  {r.year}  {r.name}  [{r.source}]")


@click.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print the diagnosis as JSON.")
@click.option("--sysfs", metavar="PATH", help="Root of sysfs [default: /sys, or the option before 'doctor'].")
@click.option("-r", "--region", metavar="CODE", help="Grid region to check.")
@click.pass_context
def doctor(ctx: click.Context, /, as_json: bool, sysfs: str | None, region: str | None) -> int:
    """Say which sensor each domain would use here and why, with the exact fix for what can't be measured.

    Exits 0 when every present domain is measured, 1 when any is estimated or unreadable.
    """
    import json
    from pathlib import Path

    from carbonwrap import doctor as diagnosis

    wrap_params: dict[str, Any] = ctx.obj or {}
    if region is not None:
        wrap_params = {**wrap_params, "region": region, "region_from_env": False}
    options = _options(wrap_params, ["doctor"])
    findings = diagnosis.diagnose(
        sysfs=Path(sysfs or options.sysfs), intensity=options.intensity, cpu_watts=options.cpu_watts
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


if __name__ == "__main__":
    main()
