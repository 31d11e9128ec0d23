"""Presenting a run: the record, the summary, the sinks."""

from __future__ import annotations

from pathlib import Path

SUFFIXES = (".json", ".jsonl", ".csv", ".prom")


def check_suffix(path: str) -> None:
    """Raise ValueError for a path whose format carbonwrap cannot tell from its suffix."""
    if Path(path).suffix.lower() not in SUFFIXES:
        raise ValueError(f"cannot tell the format of '{path}': end it in {', '.join(SUFFIXES)}")
