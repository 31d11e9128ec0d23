"""Helpers for tests that run carbonwrap on a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from collections.abc import Sequence
from pathlib import Path


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


def start_on_terminal(
    argv: Sequence[str], env: dict[str, str], *, cwd: Path | str | None = None, rows_cols: tuple[int, int] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """`argv` in a new session whose controlling terminal is a fresh pty (stdin, stdout and stderr), as a
    login shell would run it; `rows_cols` sizes the terminal. Returns the process and the master side."""
    master, slave = pty.openpty()
    if rows_cols is not None:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows_cols[0], rows_cols[1], 0, 0))
    try:
        p = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=take_terminal,
        )
    finally:
        os.close(slave)
    return p, master
