#!/usr/bin/env python3
"""ARCHITECTURE.md's dependency rules, checked on the source: which module may import what.

Exits 1 with one line per breach. Imports inside functions count too (a lazy import is still an import)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "carbonwrap"

# A third-party (or network) module, and where it may be imported: paths relative to carbonwrap/, a folder
# when it ends in '/'.
ALLOWED = {
    "click": ("cli/",),
    "rich": ("report/",),
    "pynvml": ("sensors/nvml.py",),
    "psutil": ("runner.py", "sensors/estimate.py"),
    "urllib.request": ("grid/http.py", "report/push.py"),
    "urllib.error": ("grid/http.py", "report/push.py"),
    "http.client": ("grid/http.py", "report/push.py"),
}
# Modules that stay pure: no third-party import at all.
PURE = (
    "model.py",
    "meter.py",
    "summarise.py",
    "runreport.py",
    "attribution.py",
    "phases.py",
    "marks.py",
    "budget.py",
    "grid/",
)
THIRD_PARTY = ("click", "rich", "pynvml", "psutil")


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def _under(rel: str, places: tuple[str, ...]) -> bool:
    return any(rel.startswith(p) if p.endswith("/") else rel == p for p in places)


def breaches(package: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        for line, name in imports(path):
            for module, places in ALLOWED.items():
                if (name == module or name.startswith(module + ".")) and not _under(rel, places):
                    found.append(f"carbonwrap/{rel}:{line}: imports {name}; only {', '.join(places)} may")
            top = name.split(".")[0]
            if _under(rel, PURE) and top in THIRD_PARTY:
                found.append(f"carbonwrap/{rel}:{line}: imports {name}; this module takes no third-party import")
    return sorted(set(found))


def main() -> int:
    found = breaches()
    for f in found:
        print(f)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
