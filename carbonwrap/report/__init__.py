"""Presenting a run: the record, the summary, the sinks."""

from __future__ import annotations

import sys
from pathlib import Path

SUFFIXES = (".json", ".jsonl", ".csv", ".prom")


def check_suffix(path: str) -> None:
    """Raise ValueError for a path whose format carbonwrap cannot tell from its suffix."""
    if Path(path).suffix.lower() not in SUFFIXES:
        raise ValueError(f"cannot tell the format of '{path}': end it in {', '.join(SUFFIXES)}")


def say(text: str) -> None:
    """Write carbonwrap's own text to stderr. A closed or broken stderr loses the text, never the status:
    the command's exit status must pass through whatever happens to carbonwrap's messages."""
    stream = sys.stderr
    if stream is None:  # fd 2 was closed when carbonwrap started
        return
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        pass


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (OSError, ValueError):
        return False
