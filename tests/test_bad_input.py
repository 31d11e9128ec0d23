"""Bad input: one line on stderr naming the fix, exit 2 (or 126/127), nothing launched or written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import clean_env

CASES = {
    "unknown option": (["--frobnicate"], "unknown option --frobnicate"),
    "mistyped option": (["--regoin", "FR"], "did you mean --region?"),
    "unknown region": (["--region", "XX-NOPE"], "unknown region 'XX-NOPE'"),
    "interval 0": (["--interval", "0"], "between 0.05 and 3600"),
    "interval not a number": (["-i", "fast"], "'fast' is not a valid float"),
    "pue below 1": (["--pue", "0.5"], "must be 1.0 or more"),
    "tag without value": (["--tag", "novalue"], "needs KEY=VALUE"),
    "unknown suffix": (["-o", "{tmp}/out.xml"], "end it in .json, .jsonl, .csv, .prom"),
    "bad scope": (["--scope", "galaxy"], "'galaxy' is not one of 'tree', 'machine'"),
    "bad cpu watts": (["--cpu-watts", "3:1"], "IDLE:MAX"),
    "negative intensity": (["--intensity", "-5"], "must not be negative"),
    "negative baseline": (["--baseline", "-1"], "must not be negative"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_nothing_runs(cw, tmp_path: Path, case: str) -> None:
    args, expected = CASES[case]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    marker = tmp_path / "launched"
    out = tmp_path / "r.json"
    r = cw(*args, "-o", str(out), "--", "touch", str(marker))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("carbonwrap: ") and expected in lines[0], lines[0]
    assert b"Traceback" not in r.stderr and r.stdout == b""
    assert not marker.exists() and not out.exists()


def test_no_command_at_all(cw) -> None:
    r = cw()
    assert r.returncode == 2
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "no command given" in lines[0]


def test_bad_environment_variable_is_a_usage_error(cw, tmp_path: Path) -> None:
    marker = tmp_path / "launched"
    r = cw("--", "touch", str(marker), env=clean_env(CARBONWRAP_INTERVAL="0"))
    assert r.returncode == 2 and b"between 0.05 and 3600" in r.stderr
    assert not marker.exists()


def test_environment_variables_set_options_and_flags_win(cw, tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    r = cw("--", "true", env=clean_env(CARBONWRAP_OUTPUT=str(out), CARBONWRAP_QUIET="1", CARBONWRAP_PUE="1.5"))
    assert r.returncode == 0 and r.stderr == b"" and out.exists()
    r = cw(
        "--pue",
        "1.1",
        "--",
        "true",
        env=clean_env(CARBONWRAP_OUTPUT=str(out), CARBONWRAP_QUIET="1", CARBONWRAP_PUE="1.5"),
    )
    import json

    assert json.loads(out.read_text())["pue"] == 1.1
