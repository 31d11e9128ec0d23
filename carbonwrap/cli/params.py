"""Option callbacks that validate values, and the translation of parsed options into RunOptions."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import click
from click.core import ParameterSource

from carbonwrap.model import RunOptions

ENV_PREFIX = "CARBONWRAP"
# Variables the contract names besides the options' own (SPEC.md sections 1, 2, 8), and the test suite's.
KNOWN_VARIABLES = frozenset(
    {
        "CARBONWRAP_PARENT_ID",
        "CARBONWRAP_MARKS",
        "CARBONWRAP_PUSHGATEWAY_AUTH",
        "CARBONWRAP_NESO_URL",
        "CARBONWRAP_ENERGINET_URL",
        "CARBONWRAP_ELECTRICITYMAPS_URL",
        "CARBONWRAP_REQUIRE_REAL",
    }
)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _finite(value: float | None) -> None:
    """NaN, infinity and overflow (1e999 parses as infinity) are usage errors (SPEC.md section 1)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number, got {value}")


def valid_interval(ctx: click.Context, param: click.Parameter, value: float) -> float:
    _finite(value)
    if not 0.05 <= value <= 3600:
        raise click.BadParameter(f"must be between 0.05 and 3600 seconds, got {value:g}; e.g. --interval 1")
    return value


def valid_pue(ctx: click.Context, param: click.Parameter, value: float) -> float:
    _finite(value)
    if value < 1.0:
        raise click.BadParameter(f"must be 1.0 or more (a data centre uses at least the IT power), got {value:g}")
    return value


def valid_non_negative(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    _finite(value)
    if value is not None and value < 0:
        raise click.BadParameter(f"must not be negative, got {value:g}")
    return value


def valid_tags(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    out = []
    for t in value:
        key, sep, val = t.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"needs KEY=VALUE, got '{t}'; e.g. --tag team=ml")
        out.append((key.strip(), val))
    return tuple(out)


def valid_outputs(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    from carbonwrap.report import check_suffix

    for v in value:
        try:
            check_suffix(v)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
    return value


def valid_samples(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    from carbonwrap.report.samples import SUFFIXES  # only when --samples is given

    if os.path.splitext(value)[1].lower() not in SUFFIXES:
        raise click.BadParameter(f"cannot tell the format of '{value}': end it in .csv or .jsonl")
    return value


def valid_amount(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """--max-co2e in grams or --max-energy in joules, from an amount with its unit."""
    if value is None:  # each validator imports what it needs only when its option is given
        return None
    from carbonwrap.budget import ENERGY_J, MASS_G, parse_amount

    try:
        return parse_amount(value, MASS_G if param.name == "max_co2e" else ENERGY_J)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def valid_gateway(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A Pushgateway URL; the message never shows the value (it may hold a password)."""
    if not value:
        return None
    from carbonwrap.report.push import AUTH_VAR, check_auth, check_url

    try:
        check_url(value)
        if os.environ.get(AUTH_VAR) is not None:
            check_auth(os.environ[AUTH_VAR])
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return value


def valid_positive(ctx: click.Context, param: click.Parameter, value: float) -> float:
    _finite(value)
    if value <= 0:
        raise click.BadParameter(f"must be more than 0 seconds, got {value:g}")
    return value


def valid_cpu_watts(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    idle, sep, peak = value.partition(":")
    try:
        pair = (float(idle), float(peak))
    except ValueError:
        pair = (-1.0, -1.0)
    if not sep or not all(map(math.isfinite, pair)) or pair[0] < 0 or pair[1] < pair[0]:
        raise click.BadParameter(
            f"needs IDLE:MAX watts per hardware thread with 0 <= IDLE <= MAX, got '{value}'; e.g. --cpu-watts 0.5:2.5"
        )
    return pair


# Interpreters whose run is named after their script (SPEC.md section 1), with the options of each that take
# a separate argument, and those that give the program inline (no script to name the run after).
_PYTHON = re.compile(r"^(python|pypy)(\d+(\.\d+)*)?$")
_INTERPRETERS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "python": (frozenset({"-X", "-W", "--check-hash-based-pycs"}), frozenset({"-c"})),
    "node": (
        frozenset({"-r", "--require", "--import", "--loader", "--experimental-loader"}),
        frozenset({"-e", "--eval", "-p", "--print"}),
    ),
    "sh": (frozenset({"-o", "+o", "-O", "+O"}), frozenset({"-c"})),
    "ruby": (frozenset({"-I", "-r", "-E", "--encoding"}), frozenset({"-e"})),
    "perl": (frozenset({"-I", "-M", "-m"}), frozenset({"-e", "-E"})),
    "Rscript": (frozenset(), frozenset({"-e"})),
}
_SHELLS = {"sh", "bash", "dash", "zsh", "ksh"}


def default_label(command: Sequence[str]) -> str:
    """The run's name: the command's basename, or for an interpreter its script's or module's.

    `python3 train.py` -> train.py, `python -m pkg` -> pkg, `java -jar app.jar` -> app.jar,
    `sh -c '...'` -> sh (no script to name it after).
    """
    base = os.path.basename(command[0]) or command[0]
    if base == "java":
        rest = list(command[1:])
        if "-jar" in rest and rest.index("-jar") + 1 < len(rest):
            return os.path.basename(rest[rest.index("-jar") + 1]) or base
        return base
    kind = "python" if _PYTHON.match(base) else "sh" if base in _SHELLS else base
    if kind not in _INTERPRETERS:
        return base
    with_value, inline = _INTERPRETERS[kind]
    args = iter(command[1:])
    for a in args:
        if a == "--":
            return os.path.basename(next(args, "")) or base
        if a in inline:
            return base  # the program is given inline: no script
        if a in with_value:
            next(args, None)
            continue
        if a.startswith("--"):
            continue
        if a.startswith(("-", "+")) and len(a) > 1:
            # A cluster of one-letter options (perl -we, sh -euc, python -uc, python -mpkg, ruby -Ilib).
            for k, letter in enumerate(a[1:], start=2):
                if kind == "python" and letter == "m":
                    return (a[k:] or next(args, "")) or base
                if f"-{letter}" in inline:
                    return base
                if f"-{letter}" in with_value or f"+{letter}" in with_value:
                    if k == len(a):
                        next(args, None)
                    break
            continue
        return base if a == "-" else os.path.basename(a) or base
    return base


def from_environment(e: click.ClickException) -> click.ClickException:
    """The error, naming CARBONWRAP_<NAME> instead of the flag when the bad value came from there."""
    if not isinstance(e, click.BadParameter) or e.ctx is None or e.param is None or not e.param.name:
        return e
    if e.ctx.get_parameter_source(e.param.name) == ParameterSource.ENVIRONMENT:
        e.param_hint = f"{ENV_PREFIX}_{e.param.name.upper()}"
    return e


def unknown_variables(env: Mapping[str, str], option_names: Sequence[str]) -> list[str]:
    """One warning per CARBONWRAP_* variable that is neither an option's nor one the contract names."""
    import difflib

    options = {f"{ENV_PREFIX}_{n.upper()}": n for n in option_names}
    known = set(options) | KNOWN_VARIABLES
    out = []
    for name in sorted(env):
        if not name.startswith(f"{ENV_PREFIX}_") or name in known:
            continue
        close = difflib.get_close_matches(name, sorted(options), n=1, cutoff=0.0)
        hint = f"; did you mean {close[0]} (--{options[close[0]].replace('_', '-')})?" if close else ""
        out.append(f"{name} is not a carbonwrap setting and is ignored{hint}")
    return out


def run_options(params: dict[str, Any], command: list[str]) -> RunOptions:
    from carbonwrap import envtags, intensity
    from carbonwrap.errors import UsageError

    names = [k for k in params if k not in ("command", "region_from_env")]
    if names:
        from carbonwrap.report import say

        for w in unknown_variables(os.environ, names):
            say(f"carbonwrap: warning: {w}\n")
    region = params["region"]
    grid_region = region
    if region:
        from carbonwrap.grid.zones import table_region

        # A live-only zone (GB-13, DK-DK1, em:FR) is priced by its country's yearly row with the table, and
        # where live figures lack with --grid live.
        region = table_region(region) or region
    try:
        it = intensity.resolve(
            intensity.Table.load(),
            intensity=params["intensity"],
            region=region,
            region_from_env=params["region_from_env"],
            env=os.environ,
        )
    except UsageError as e:
        if params["region_from_env"]:
            raise UsageError(f"{ENV_PREFIX}_REGION: {e}") from None
        raise
    live = params["live"]
    if live is None:
        from carbonwrap.report import stderr_is_terminal

        live = stderr_is_terminal()
    return RunOptions(
        command=tuple(command),
        intensity=it,
        interval_s=params["interval"],
        pue=params["pue"],
        scope=params["scope"],
        baseline_s=params["baseline"],
        outputs=tuple(params["output"]),
        tags=tuple({**envtags.from_environment(os.environ), **dict(params["tag"])}.items()),
        label=params["label"] or default_label(command),
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
        grid=params.get("grid") or "table",
        start_within_s=params.get("start_within"),
        finish_by_s=params.get("finish_by"),
        expect_s=params.get("expect"),
        samples=params.get("samples"),
        grid_region=grid_region,
        summary=params.get("summary") or "full",
    )
