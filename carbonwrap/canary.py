"""The canary: how carbonwrap tells a signal sent to its process group from one sent to it alone."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Sequence
from pathlib import Path


def pending(pid: int, proc: Path) -> int:
    """The process-wide pending signal set of `pid` (ShdPnd), as a bit mask; 0 when unreadable."""
    try:
        with open(f"{proc}/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"ShdPnd:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return 0


class Canary:
    """A sleeping helper in carbonwrap's process group that keeps the forwarded signals blocked.

    A signal sent to the whole group (`kill -TERM -PGID`, GNU timeout, a supervisor) stays pending in it, one
    sent to carbonwrap alone does not: that tells carbonwrap whether the command got the signal directly.
    It reads a pipe that only carbonwrap holds, so it ends when carbonwrap does, however carbonwrap ends.
    """

    def __init__(self, signals: Sequence[int], proc: Path) -> None:
        self.signals, self.proc = signals, proc
        self.pid = 0
        self._w = -1
        self.start()

    def start(self) -> None:
        r, w = os.pipe()
        try:
            self.pid = os.posix_spawnp(
                "cat",
                ["cat"],
                {"PATH": os.defpath + ":/usr/local/bin"},
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, r, 0),
                    (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                ],
                setsigmask=self.signals,
            )
            self._w = w
        except OSError:
            self.pid = 0
            os.close(w)
        finally:
            os.close(r)

    def got(self, sig: int) -> bool:
        return self.pid > 0 and bool(pending(self.pid, self.proc) & (1 << (sig - 1)))

    def stop(self) -> None:
        if self.pid > 0:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
        if self._w >= 0:
            os.close(self._w)
        self.pid, self._w = 0, -1

    def renew(self) -> None:
        """A fresh one, once the old one holds a pending signal (a pending signal cannot be cleared)."""
        self.stop()
        self.start()
