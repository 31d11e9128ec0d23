"""Shared fixtures: the real entry point as a subprocess, and the rule for tests that need a real tool."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    """The environment minus anything that would steer carbonwrap, with a fixed time zone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONWRAP_") and k != "NO_COLOR"}
    env.pop("GITHUB_STEP_SUMMARY", None)
    env["TZ"] = "Etc/UTC"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def require_real(tool: str) -> str:
    """The path of a real tool; skip without it on a laptop, fail under CARBONWRAP_REQUIRE_REAL=1 (CI)."""
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CARBONWRAP_REQUIRE_REAL") == "1":
            pytest.fail(f"{tool} is required (CARBONWRAP_REQUIRE_REAL=1) but not installed")
        pytest.skip(f"{tool} is not installed")
    return path


CW = [sys.executable, "-m", "carbonwrap"]


@pytest.fixture
def cw() -> Callable[..., subprocess.CompletedProcess[bytes]]:
    """Run the real carbonwrap entry point in a subprocess."""

    def run(*args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.CompletedProcess[bytes]:
        kw.setdefault("capture_output", True)
        kw.setdefault("timeout", 60)
        return subprocess.run([*CW, *args], env=env or clean_env(), check=False, **kw)

    return run


def load_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data
