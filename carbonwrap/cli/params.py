"""Option callbacks that validate values, and the translation of parsed options into RunOptions."""

from __future__ import annotations

import math
import os
from typing import Any

import click

from carbonwrap.model import RunOptions

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


def run_options(params: dict[str, Any], command: list[str]) -> RunOptions:
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
