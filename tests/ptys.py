"""Helpers for tests that run carbonwrap on a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import select
import termios
import time


def read_until(fd: int, marker: bytes, timeout: float = 20.0) -> bytes:
    """What the terminal's master side gives until `marker` shows (or the time is up, or the pty closes)."""
    buf = b""
    end = time.monotonic() + timeout
    while marker not in buf and time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def take_terminal() -> None:
    """preexec_fn: the new session's controlling terminal (stdin), as a login shell gets it."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
