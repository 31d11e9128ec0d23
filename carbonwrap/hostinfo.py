"""The record's `host_info`: what the figures were measured on. Read after the command has exited."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

from carbonwrap import __version__


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The first 'model name' (x86) or 'Model'/'Hardware' (Arm) line of /proc/cpuinfo."""
    with contextlib.suppress(OSError, UnicodeDecodeError), cpuinfo.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            key, sep, value = line.partition(":")
            if sep and key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()[:200]
    return platform.processor() or None


def memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def collect() -> dict[str, object]:
    return {
        "carbonwrap_version": __version__,
        "python": platform.python_version(),
        "kernel": os.uname().release,
        "cpu_model": cpu_model(),
        "threads": os.cpu_count(),
        "memory_bytes": memory_bytes(),
    }
