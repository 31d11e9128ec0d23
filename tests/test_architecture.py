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
