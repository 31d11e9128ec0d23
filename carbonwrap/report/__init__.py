"""Presenting a run: the record, the summary, the sinks."""

from __future__ import annotations

import os
import select
import sys
import time
from pathlib import Path

SUFFIXES = (".json", ".jsonl", ".csv", ".prom", ".html")


def check_suffix(path: str) -> None:
    """Raise ValueError for a path whose format carbonwrap cannot tell from its suffix."""
    if Path(path).suffix.lower() not in SUFFIXES:
        raise ValueError(f"cannot tell the format of '{path}': end it in {', '.join(SUFFIXES)}")


# After the command has exited, carbonwrap's own text may hold up its exit this long in all (a stderr pipe
# that nobody reads); what does not fit is dropped. Set by `limit_stderr`; only time spent waiting counts.
_budget: list[float] = []
STDERR_BUDGET_S = 2.0  # SPEC section 2: a stderr nobody reads delays the exit by at most this
PER_MESSAGE_S = 1.0  # while the command runs: one message never blocks the tick loop longer than this
_PIPE_BUF = 4096  # a write of at most this many bytes to a pipe with room never blocks


def limit_stderr(seconds: float) -> None:
    """From now on, all of carbonwrap's stderr text together waits at most `seconds` for a slow reader.

    The first call sets the budget; later calls cannot extend it (the command's exit starts the clock)."""
    if not _budget:
        _budget[:] = [seconds]


def say(text: str) -> None:
    """Write carbonwrap's own text to stderr, never waiting past the budget. A closed or broken stderr
    loses the text, never the status: the command's exit status must pass through whatever happens to
    carbonwrap's messages."""
    stream = sys.stderr
    if stream is None:  # fd 2 was closed when carbonwrap started
        return
    try:
        stream.flush()
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        fd = -1
    if fd < 0:  # not a real file (a test's capture): plain write
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            pass
        return
    budget = _budget[0] if _budget else PER_MESSAGE_S
    data = text.encode("utf-8", "backslashreplace")
    try:
        while data and budget > 0:
            t = time.monotonic()
            _, ready, _ = select.select([], [fd], [], budget)
            budget -= time.monotonic() - t
            if ready:
                data = data[os.write(fd, data[:_PIPE_BUF]) :]
    except (OSError, ValueError):
        pass
    finally:
        if _budget:
            _budget[0] = max(budget, 0.0)


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (OSError, ValueError):
        return False
