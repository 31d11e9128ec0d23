"""Signals taken synchronously, with a siginfo that is checked before anything acts on it.

CPython's `signal.sigtimedwait` returns an uninitialised siginfo when the call is interrupted (EINTR, as a
SIGSTOP/SIGCONT pair does) after its deadline has passed: it fills the result from a struct the kernel never
wrote. Acting on that sends a garbage "signal" to the command. Here the libc call is made directly, so EINTR
and a timeout are told apart from a signal, and a signal number outside the waited set is dropped.
"""

from __future__ import annotations

import ctypes
import errno
import signal
import threading
from collections.abc import Collection
from dataclasses import dataclass

_SIGSET_BYTES = 128  # glibc's sigset_t: 1024 bits


@dataclass(frozen=True, slots=True)
class SigInfo:
    """The fields of a siginfo_t that carbonwrap reads."""

    signo: int
    code: int
    pid: int


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _SigInfoT(ctypes.Structure):
    # Linux's generic layout on 64-bit: three ints, padding, then the union; for kill() and SIGCHLD the union
    # starts with si_pid and si_uid. 128 bytes in all.
    _fields_ = (
        ("si_signo", ctypes.c_int),
        ("si_errno", ctypes.c_int),
        ("si_code", ctypes.c_int),
        ("_pad", ctypes.c_int),
        ("si_pid", ctypes.c_int),
        ("si_uid", ctypes.c_uint),
        ("_rest", ctypes.c_char * 104),
    )


def start_quietly(thread: threading.Thread) -> None:
    """Start `thread` with every signal blocked in it, so a process-directed signal can only ever be taken by
    the main thread's sigtimedwait: a helper thread (a push, a fetch) must never die of it or swallow it."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


# The longest single wait: callers loop until their own deadline, and libc takes a time_t.
MAX_WAIT_S = 86400.0


class SignalWaiter:
    """Waits for any of `signals` (which the caller keeps blocked) for at most a given time."""

    def __init__(self, signals: Collection[int]) -> None:
        self.signals = frozenset(int(s) for s in signals)
        self._libc: ctypes.CDLL | None = None
        self._set = (ctypes.c_ubyte * _SIGSET_BYTES)()
        try:
            if ctypes.sizeof(ctypes.c_void_p) != 8 or ctypes.sizeof(_SigInfoT) != 128:
                raise OSError("layout")
            libc = ctypes.CDLL(None, use_errno=True)
            libc.sigemptyset(ctypes.byref(self._set))
            for s in self.signals:
                libc.sigaddset(ctypes.byref(self._set), s)
            self._libc = libc
        except (OSError, AttributeError):
            self._libc = None  # the stdlib call, with its result checked

    def wait(self, timeout_s: float) -> SigInfo | None:
        """One signal, or None after `timeout_s` or an interruption (the caller recomputes its deadline)."""
        timeout_s = min(max(0.0, timeout_s), MAX_WAIT_S) if timeout_s == timeout_s else 0.0
        if self._libc is None:
            return self._wait_stdlib(timeout_s)
        sec = int(timeout_s)
        ts = _Timespec(sec, int((timeout_s - sec) * 1e9))
        info = _SigInfoT()
        got = self._libc.sigtimedwait(ctypes.byref(self._set), ctypes.byref(info), ctypes.byref(ts))
        if got < 0:
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EINTR):
                return None
            raise OSError(err, "sigtimedwait failed")
        return self._checked(got, info.si_code, info.si_pid)

    def _wait_stdlib(self, timeout_s: float) -> SigInfo | None:
        info = signal.sigtimedwait(self.signals, timeout_s)
        if info is None:
            return None
        return self._checked(info.si_signo, info.si_code, info.si_pid)

    def _checked(self, signo: int, code: int, pid: int) -> SigInfo | None:
        if signo not in self.signals:
            return None  # not a signal we wait for: garbage, never acted on
        return SigInfo(signo, code, pid if pid > 0 else 0)
