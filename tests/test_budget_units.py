"""Budgets (issue 15 item 7): case-sensitive units, µg accepted, and the outcome in the record and summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carbonwrap.budget import ENERGY_J, MASS_G, Budget, parse_amount

# IDLE = MAX: the modelled machine draws threads x 10 W whatever the load, so budgets pass at known times.
FIXED = ["--cpu-watts", "10:10", "--scope", "machine", "-i", "0.1"]


@pytest.mark.parametrize(
    ("text", "joules"),
    [("1mWh", 3.6), ("1MWh", 3.6e9), ("1Wh", 3600.0), ("2kWh", 7.2e6), ("5mJ", 5e-3), ("3MJ", 3e6), ("7kJ", 7e3)],
)
def test_energy_units_are_case_sensitive(text: str, joules: float) -> None:
    assert parse_amount(text, ENERGY_J) == pytest.approx(joules)


@pytest.mark.parametrize(
    ("text", "grams"), [("5µg", 5e-6), ("5\u03bcg", 5e-6), ("5ug", 5e-6), ("2mg", 2e-3), ("1t", 1e6)]
)
def test_mass_units_include_micrograms(text: str, grams: float) -> None:
    assert parse_amount(text, MASS_G) == pytest.approx(grams)


@pytest.mark.parametrize(
    ("text", "hint"), [("1kwh", "did you mean kWh"), ("1mwh", "did you mean mWh or MWh"), ("2KG", "kg")]
)
def test_a_unit_in_the_wrong_case_is_refused_with_the_right_one(text: str, hint: str) -> None:
    units = MASS_G if text.endswith(("G", "g")) else ENERGY_J
    with pytest.raises(ValueError, match="case-sensitive") as e:
        parse_amount(text, units)
    assert hint in str(e.value)


def test_overflow_is_refused() -> None:
    with pytest.raises(ValueError, match="too large"):
        parse_amount("1e308MWh", ENERGY_J)


def test_outcome_keeps_the_commands_exit_code_and_adds_the_status() -> None:
    b = Budget(max_energy_j=1.0, on_budget="fail")
    assert b.outcome("energy budget passed", 0)["exit_status"] == 3
    assert b.outcome("energy budget passed", 5)["exit_status"] == 5
    assert b.outcome(None, 0) == {
        "max_co2e_g": None,
        "max_energy_j": 1.0,
        "on_budget": "fail",
        "exceeded": None,
        "exit_status": 0,
    }
    assert Budget(max_energy_j=1.0).outcome("passed", 0)["exit_status"] == 0  # warn


def test_a_milliwatt_hour_budget_fires(cw, tmp_path: Path) -> None:
    # threads x 10 W for 0.5 s is at least 5 J, more than 1 mWh (3.6 J); read as 1 MWh it never fired.
    rec = tmp_path / "r.json"
    r = cw("-q", *FIXED, "--max-energy", "1mWh", "-o", str(rec), "--", "sleep", "0.5")
    assert r.returncode == 0
    assert json.loads(rec.read_text())["budget"]["max_energy_j"] == pytest.approx(3.6)
    assert "energy budget passed" in r.stderr.decode()


def test_fail_keeps_exit_code_records_exit_status_and_the_summary_says_so(cw, tmp_path: Path) -> None:
    rec = tmp_path / "r.json"
    r = cw(*FIXED, "--max-energy", "1J", "--on-budget", "fail", "-o", str(rec), "--", "sleep", "0.3")
    assert r.returncode == 3
    out = json.loads(rec.read_text())
    assert out["exit_code"] == 0
    assert out["budget"]["exit_status"] == 3
    assert out["budget"]["exceeded"].startswith("energy budget passed")
    text = r.stderr.decode()
    assert "budget     PASSED: energy budget passed" in text and "--on-budget fail: exit status 3" in text


def test_a_budget_kept_is_shown_too(cw, tmp_path: Path) -> None:
    r = cw(*FIXED, "--max-co2e", "5µg", "--intensity", "0", "--", "true")
    assert r.returncode == 0, r.stderr
    assert "budget     within budget (CO2e 5 µg)" in r.stderr.decode()


def test_short_summary_is_one_line(cw) -> None:
    r = cw(*FIXED, "--summary", "short", "--region", "FR", "--", "sleep", "0.2")
    assert r.returncode == 0
    lines = r.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("carbonwrap: 0.") and " J (estimated), " in line and " CO2e @ FR 44 g/kWh, exit 0" in line
