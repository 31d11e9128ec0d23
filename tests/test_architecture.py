"""ARCHITECTURE.md's import rules hold, and the checker that enforces them can fail."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("check_imports", ROOT / "scripts" / "check_imports.py")
assert spec is not None and spec.loader is not None
check_imports = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_imports)


def test_the_package_keeps_its_import_rules() -> None:
    assert check_imports.breaches() == []


def test_the_checker_catches_each_kind_of_breach(tmp_path: Path) -> None:
    pkg = tmp_path / "carbonwrap"
    (pkg / "grid").mkdir(parents=True)
    (pkg / "cli").mkdir()
    (pkg / "meter.py").write_text("def f():\n    import rich.console\n")  # lazy, and in a pure module
    (pkg / "grid" / "zones.py").write_text("from psutil import cpu_count\n")
    (pkg / "session.py").write_text("import click\nimport urllib.request\n")
    (pkg / "cli" / "ok.py").write_text("import click\n")
    found = check_imports.breaches(pkg)
    assert any("meter.py:2: imports rich.console; only report/ may" in f for f in found)
    assert any("meter.py:2: imports rich.console; this module takes no third-party import" in f for f in found)
    assert any("grid/zones.py:1: imports psutil" in f for f in found)
    assert any("session.py:1: imports click" in f for f in found)
    assert any("session.py:2: imports urllib.request" in f for f in found)
    assert not any("cli/ok.py" in f for f in found)


def _sources_matching(pattern: str) -> set[str]:
    import re

    rx = re.compile(pattern)
    pkg = ROOT / "carbonwrap"
    return {p.relative_to(pkg).as_posix() for p in pkg.rglob("*.py") if rx.search(p.read_text(encoding="utf-8"))}


def test_each_figure_is_made_in_one_place() -> None:
    # Joules to kWh (so CO2e), the RunReport, and the measured/estimated rule: summarise.py alone. The
    # RunReport is also read back from a record (record.from_record), never made anywhere else.
    assert _sources_matching(r"3\.6e6|3_600_000") == {"model.py"}  # J_PER_KWH, defined once
    assert _sources_matching(r"/ *J_PER_KWH") == {"summarise.py"}
    assert _sources_matching(r"RunReport\(") == {"summarise.py", "report/record.py"}
    assert _sources_matching(r"def decide_methods|\"measured\" if") == {"summarise.py"}
    assert _sources_matching(r"(?m)^DOMAINS = ") == {"model.py"}
