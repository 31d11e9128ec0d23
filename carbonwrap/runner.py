"""The child: spawn without a shell, subreaper, signal forwarding, reaping, exit status, tree CPU time."""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import psutil

from carbonwrap import spawn
from carbonwrap.canary import Canary, pending
from carbonwrap.cputime import busy_total
from carbonwrap.model import TreeUsage
from carbonwrap.proctree import Proc, ProcessTree
from carbonwrap.signals import SigInfo, SignalWaiter

FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
PR_SET_CHILD_SUBREAPER = 36
SI_KERNEL = 0x80  # si_code of a signal the tty driver sends to the foreground process group
# How long a signal from outside waits before it is forwarded, so that a group kill sent just after it
# (GNU timeout signals its child, then its process group) is seen for what it is.
SETTLE_S = 0.1
KILL_GRACE_S = 10.0  # --on-budget kill: SIGTERM to the tree, then SIGKILL this long after


def exit_status(waitstatus: int) -> tuple[int, int | None]:
    """(exit code, signal) as SPEC.md section 2 maps them: killed by signal N exits 128 + N."""
    if os.WIFSIGNALED(waitstatus):
        sig = os.WTERMSIG(waitstatus)
        return 128 + sig, sig
    return os.waitstatus_to_exitcode(waitstatus), None


def _subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class Child:
    """The wrapped command. Signals are blocked in carbonwrap and taken synchronously in `wait`."""

    def __init__(
        self,
        command: Sequence[str],
        proc: Path = Path("/proc"),
        extra_signals: Sequence[int] = (),
        on_signal: Callable[[int], None] | None = None,
        env: Mapping[bytes, bytes] | None = None,
        settle_s: float = SETTLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.command = list(command)
        self.proc = proc
        self.pid = 0
        self.status: tuple[int, int | None] | None = None
        self.forwarded: list[str] = []
        self.not_forwarded: list[str] = []
        self.subreaper = False
        # The CLI passes the environment it was started with (spawn.startup_environ); a library caller that
        # gives none gets os.environ as it stands, its own changes included.
        self.env = dict(env) if env is not None else dict(os.environb)
        self._tree = ProcessTree(os.getpid(), proc)
        self._extra = set(extra_signals)
        self._on_signal = on_signal
        self._waited = set(FORWARDED) | {signal.SIGCHLD} | self._extra
        self._waiter = SignalWaiter(self._waited)
        self.threads = psutil.cpu_count() or 1
        self._old_mask: set[int | signal.Signals] | None = None
        # The mask the command gets: carbonwrap's as it was when this was made, before anything blocked more.
        self._inherited_mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        self._canary: Canary | None = None
        self._deferred: dict[int, float] = {}  # signal -> when it is forwarded unless the group got it
        self._renew_at: float | None = None  # when the canary is replaced after a signal that reached the group
        self._group_seen: set[int] = set()  # deferred signals an old canary held when it was replaced
        self._settle_s, self._clock = settle_s, clock
        self._helpers_cpu_s = 0.0  # reaped helpers' CPU time, not the command's

    def spawn(self) -> int:
        """Start the command (execvp semantics) or raise LaunchError with exit status 127 or 126."""
        # An inherited SIGCHLD=SIG_IGN would make the kernel reap the child and lose its status: default here,
        # ignored again in the command, which inherited it so.
        inherited_ignored = [signal.SIGCHLD] if signal.getsignal(signal.SIGCHLD) is signal.SIG_IGN else []
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.subreaper = _subreaper()
        old = signal.pthread_sigmask(signal.SIG_BLOCK, self._waited)
        self._old_mask = old
        try:
            self.pid = spawn.spawn(self.command, self.env, self._inherited_mask, inherited_ignored)
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
            self._old_mask = None
            raise
        self._canary = Canary(FORWARDED, self.proc)  # after the launch: the command never waits for it
        if self._canary.pid:
            self._tree.exclude.add(self._canary.pid)
        return self.pid

    def release(self) -> None:
        """Give back the signal mask spawn() took, for callers that live on after the run (tests, libraries).

        carbonwrap's own command line never calls it: its signals stay blocked until it exits, so that a
        SIGTERM arriving while the records are written cannot cut them short.
        """
        self.close()
        if self._old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
            self._old_mask = None

    def close(self) -> None:
        """End carbonwrap's helper process."""
        if self._canary is not None:
            pid = self._canary.pid
            self._canary.stop()
            self._canary = None
            if pid:
                with contextlib.suppress(ChildProcessError):
                    self._collect(*os.wait4(pid, 0))

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to `timeout_s` (less when a signal needs attention); True once the command has exited."""
        now = self._clock()
        due = [*self._deferred.values(), *([self._renew_at] if self._renew_at is not None else [])]
        if due:
            timeout_s = min(timeout_s, min(due) - now)
        info = self._waiter.wait(timeout_s)
        while info is not None:
            self._handle(info)
            info = self._waiter.wait(0)
        self.reap()
        self._settle()
        return self.status is not None

    def _handle(self, info: SigInfo) -> None:
        sig = info.signo
        if sig == signal.SIGCHLD:
            return
        if sig in self._extra:
            if self._on_signal is not None:
                self._on_signal(sig)
            return
        if self.status is not None:
            return
        # From the terminal (Ctrl-C, Ctrl-\, a hang-up): the command got it too. From the command's own tree:
        # it is the tree's business. Neither is sent again.
        if info.code == SI_KERNEL or (info.pid and self._in_tree(info.pid)):
            self._note_direct(sig, "from the terminal" if info.code == SI_KERNEL else "sent by the command's tree")
            return
        self._deferred.setdefault(sig, self._clock() + self._settle_s)

    def _settle(self) -> None:
        """Forward each deferred signal that the command's process group did not get directly."""
        now = self._clock()
        if self._renew_at is not None and self._renew_at <= now:
            self._renew_at = None
            self._renew_canary()
        for sig, due in list(self._deferred.items()):
            if due > now:
                continue
            del self._deferred[sig]
            if self.status is not None:
                continue
            seen = sig in self._group_seen or (self._canary is not None and self._canary.got(sig))
            self._group_seen.discard(sig)
            if seen and self._same_group():
                self.not_forwarded.append(f"{signal.Signals(sig).name} (sent to the process group)")
                self._renew_canary()
                continue
            try:
                os.kill(self.pid, sig)
                self.forwarded.append(signal.Signals(sig).name)
            except ProcessLookupError:
                pass

    def _note_direct(self, sig: int, why: str) -> None:
        if why != "from the terminal":  # the usual case, not worth a note
            self.not_forwarded.append(f"{signal.Signals(sig).name} ({why})")
        # A terminal's or the tree's signal to the group may reach the canary just after us.
        self._renew_at = self._clock() + self._settle_s

    def _renew_canary(self) -> None:
        held = pending(self._canary.pid, self.proc) if self._canary is not None else 0
        if self._canary is not None and held:
            # What the old one holds is the evidence for signals still deferred: keep it before it goes.
            self._group_seen |= {sig for sig in self._deferred if held & (1 << (sig - 1))}
            self._canary.renew()
            if self._canary.pid:
                self._tree.exclude.add(self._canary.pid)

    def _same_group(self) -> bool:
        try:
            return os.getpgid(self.pid) == os.getpgrp()
        except OSError:
            return False

    def _in_tree(self, pid: int) -> bool:
        """Whether `pid` is the command or one of its descendants, from the parent links as they are now."""
        seen = 0
        while pid > 1 and seen < 4096:
            if pid == self.pid or pid in self._tree.members:
                return True
            p = self._tree._read(pid)
            if p is None or p.ppid == pid:
                return False
            pid, seen = p.ppid, seen + 1
        return False

    def send(self, sig: int) -> None:
        """Signal the command (a budget kill), unless it has already exited."""
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def signal_tree(self, sig: int) -> int:
        """Send `sig` to the command and every live process of its tree; returns how many were signalled."""
        targets = set(self._tree.scan()) - self._tree.exclude
        if self.status is None:
            targets.add(self.pid)
        sent = 0
        for pid in targets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
                sent += 1
        return sent

    def tree_alive(self) -> bool:
        """Whether the command or any process of its tree still runs (scans /proc)."""
        self.reap()
        return self.status is None or bool(set(self._tree.scan()) - self._tree.exclude)

    def reap(self) -> None:
        """Collect every exited child (orphans reparented to us included), keeping the command's status."""
        while True:
            try:
                got = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if got[0] == 0:
                return
            self._collect(*got)

    def _collect(self, pid: int, st: int, ru: resource.struct_rusage) -> None:
        if pid == self.pid:
            self.status = exit_status(st)
        elif pid in self._tree.exclude:
            self._helpers_cpu_s += ru.ru_utime + ru.ru_stime
            self._tree.exclude.discard(pid)  # its pid may now be reused by the command's tree
            if self._canary is not None and self._canary.pid == pid:
                self._canary.pid = 0

    def usage(self, scan: bool = True) -> TreeUsage:
        """The tree's cumulative CPU seconds: live descendants plus everything reaped by us."""
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        members = self._tree.scan() if scan else {}
        busy, _ = busy_total(psutil.cpu_times())
        return TreeUsage(
            cpu_s=ru.ru_utime + ru.ru_stime - self._helpers_cpu_s + sum(p.cpu_s for p in members.values()),
            rss_bytes=sum(p.rss_bytes for p in members.values()),
            reaped_peak_rss_bytes=self._own_peak(ru.ru_maxrss),
            machine_busy_s=busy,
            threads=self.threads,
            pids=frozenset(members),
        )

    @staticmethod
    def _own_peak(children_maxrss_kb: int) -> int:
        """The reaped processes' peak resident memory, when it is theirs.

        A process that exec()s keeps the larger of its new peak and the peak of the memory it was forked
        with, so every child of carbonwrap reports at least carbonwrap's own resident size then (about 16 MB).
        A figure no larger than carbonwrap's own peak says nothing about the command: 0, not carbonwrap's."""
        own_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return children_maxrss_kb * 1024 if children_maxrss_kb > own_kb else 0

    def leftovers(self) -> list[Proc]:
        """Descendants still running after the command exited (from the last usage scan)."""
        return [p for p in self._tree.members.values() if p.pid != self.pid]


def die_by_signal(sig: int) -> None:
    """End carbonwrap by `sig`, as the command ended, so a calling shell sees the same death (no core dump).

    Returns only if the signal did not end the process; the caller then exits with 128 + sig.
    """
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stderr.flush()
    try:
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})  # delivered here, if it is fatal
    except (OSError, ValueError):
        pass
