"""Every numeric option is finite: nan, inf and overflow are usage errors naming the option (SPEC.md section 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

OPTIONS = {
    "--pue": "{}",
    "--intensity": "{}",
    "--baseline": "{}",
    "--progress": "{}",
    "--push-interval": "{}",
    "--interval": "{}",
    "--cpu-watts": "0.5:{}",
}
VALUES = ("nan", "inf", "-inf", "1e999", "NaN")


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("value", VALUES)
def test_non_finite_numbers_are_usage_errors(cw, tmp_path: Path, option: str, value: str) -> None:
    # Before: --pue/--intensity/--cpu-watts/--progress/--push-interval took NaN (NaN in the JSON, nan in the
    # summary), --baseline inf was an internal error (70).
    marker = tmp_path / "launched"
    out = tmp_path / "r.json"
    r = cw(option, OPTIONS[option].format(value), "-o", str(out), "--", "touch", str(marker))
    err = r.stderr.decode()
    assert r.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and option in lines[0], lines
    assert "finite" in lines[0] or "IDLE:MAX" in lines[0] or "between" in lines[0]
    assert not marker.exists() and not out.exists()


def test_non_finite_value_from_the_environment_is_a_usage_error(cw, tmp_path: Path) -> None:
    marker = tmp_path / "launched"
    from tests.conftest import clean_env

    r = cw("--", "touch", str(marker), env=clean_env(CARBONWRAP_PUE="nan"))
    assert r.returncode == 2 and b"finite" in r.stderr and not marker.exists()
