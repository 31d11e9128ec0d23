"""Command line: flags -> RunOptions, session.run, present, exit with the command's status.

click is imported in this package only. Nothing here measures: sensors and processes live in their own modules.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click
from click.core import ParameterSource

from carbonwrap import __version__
from carbonwrap.cli.params import (
    CONTEXT,
    from_environment,
    run_options,
    valid_amount,
    valid_cpu_watts,
    valid_gateway,
    valid_interval,
    valid_non_negative,
    valid_outputs,
    valid_positive,
    valid_pue,
    valid_samples,
    valid_tags,
)
from carbonwrap.cli.when import valid_duration, valid_expect, valid_finish_by
from carbonwrap.errors import CarbonwrapError, LaunchError, UsageError

RESERVED = ("regions", "doctor", "report", "when", "mark")


@click.command(
    context_settings={**CONTEXT, "allow_interspersed_args": False},
    epilog="Other commands: 'carbonwrap regions [QUERY]' lists the grid-intensity table; "
    "'carbonwrap doctor' says what can be measured here; 'carbonwrap report FILE...' totals earlier records. "
    "Every option can also be set with CARBONWRAP_<NAME> (CARBONWRAP_REGION=FR); the flag wins.",
)
@click.option("-r", "--region", metavar="CODE", help="Grid region: FR, FRA, US-CA, CA-QC, aws:eu-west-3 ...")
@click.option(
    "--intensity",
    type=float,
    metavar="G",
    callback=valid_non_negative,
    help="Fixed grid intensity in gCO2e/kWh; overrides --region.",
)
@click.option(
    "-i",
    "--interval",
    type=float,
    default=1.0,
    show_default=True,
    metavar="S",
    callback=valid_interval,
    help="Sampling period in seconds (0.05-3600).",
)
@click.option(
    "--pue",
    type=float,
    default=1.0,
    show_default=True,
    callback=valid_pue,
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
    callback=valid_non_negative,
    help="Measure idle power for S seconds before launching.",
)
@click.option(
    "-o",
    "--output",
    multiple=True,
    metavar="PATH",
    callback=valid_outputs,
    help="Write the record: .json, .jsonl, .csv, .prom or .html (a page with charts; repeatable).",
)
@click.option(
    "--samples",
    metavar="PATH",
    callback=valid_samples,
    help="Stream one row per interval to PATH (.csv or .jsonl) while the command runs.",
)
@click.option("--tag", multiple=True, metavar="KEY=VALUE", callback=valid_tags, help="Label stored in the record.")
@click.option("--label", metavar="NAME", help="The run's name [default: the command's basename].")
@click.option("--live/--no-live", default=None, help="Live dashboard on stderr [default: when stderr is a terminal].")
@click.option("-q", "--quiet", is_flag=True, help="No dashboard and no summary; records are still written.")
@click.option(
    "--summary",
    type=click.Choice(["full", "short"]),
    default="full",
    show_default=True,
    help="The final summary in full, or as one line (for cron logs).",
)
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
    callback=valid_cpu_watts,
    help="Per-thread watts for the CPU estimate, overriding the model.",
)
@click.option(
    "--pushgateway",
    metavar="URL",
    callback=valid_gateway,
    help="Push metrics to this Prometheus Pushgateway at the end (and every --push-interval).",
)
@click.option(
    "--push-interval",
    type=float,
    default=60.0,
    show_default=True,
    metavar="S",
    callback=valid_positive,
    help="Seconds between pushes during the run.",
)
@click.option(
    "--step-summary/--no-step-summary",
    default=True,
    help="Append a Markdown table to $GITHUB_STEP_SUMMARY when it is set [default: on].",
)
@click.option("--max-co2e", metavar="AMOUNT", callback=valid_amount, help="Carbon budget: 500mg, 20g, 1.5kg.")
@click.option("--max-energy", metavar="AMOUNT", callback=valid_amount, help="Energy budget: 900J, 50Wh, 2kWh.")
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
    callback=valid_non_negative,
    help="Without the live panel (logs, CI): print a progress line every S seconds.",
)
@click.option(
    "--grid",
    type=click.Choice(["table", "live"]),
    default="table",
    show_default=True,
    help="Price the energy with the yearly table, or the grid operator's figures for the run's hours.",
)
@click.option(
    "--start-within", metavar="D", callback=valid_duration, help="Carbon-aware start: any time in the next D (6h)."
)
@click.option(
    "--finish-by", metavar="T", callback=valid_finish_by, help="Carbon-aware start: finish by T (HH:MM or ISO 8601)."
)
@click.option("--expect", metavar="D|auto", callback=valid_expect, help="Expected duration [default: auto].")
@click.option("--debug", is_flag=True, hidden=True, allow_from_autoenv=False, help="Show tracebacks.")
@click.version_option(__version__, "-V", "--version", prog_name="carbonwrap", allow_from_autoenv=False)
@click.help_option("-h", "--help", allow_from_autoenv=False)
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
    from carbonwrap.report import say

    say(f"carbonwrap: {message}\n")
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
        _fail(_click_message(from_environment(e)), e.exit_code)
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


def _wrap(params: dict[str, Any], command: list[str]) -> int:
    try:
        options = run_options(params, command)
    except UsageError as e:
        _fail(str(e))
    from carbonwrap import app
    from carbonwrap.runner import die_by_signal

    try:
        outcome = app.run(options)
        if outcome.signal is not None:  # the command died by a signal: so does carbonwrap, after its records
            die_by_signal(outcome.signal)
        return outcome.status
    except LaunchError as e:
        _fail(str(e), e.exit_code)
    except CarbonwrapError as e:  # before the launch: nothing runs
        _fail(str(e), 1)
    except Exception as e:  # a bug of ours, before the launch (after it, the session keeps the command's status)
        if options.debug:
            raise
        _fail(f"internal error: {e!r}; nothing was run. Rerun with --debug for details", 70)


def _subcommand(name: str, rest: list[str], params: dict[str, Any]) -> NoReturn:
    if name == "mark":  # after options (`carbonwrap -q mark`); entry.py takes a bare one before click loads
        from carbonwrap.marks import cli_mark

        sys.exit(cli_mark(rest))
    from carbonwrap.cli import commands as sub
    from carbonwrap.cli.when import when

    commands = {"regions": sub.regions, "doctor": sub.doctor, "report": sub.report, "when": when}
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


if __name__ == "__main__":
    main()
