"""The child: spawn without a shell, subreaper, signal forwarding, reaping, exit status, tree CPU time."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import resource
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from carbonwrap.cputime import busy_total
from carbonwrap.errors import LaunchError
from carbonwrap.model import TreeUsage

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
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class Proc:
    """One live descendant, as of the last scan."""

    pid: int
    ppid: int
    start: int  # clock ticks after boot; with the pid, the process's identity
    cpu_s: float  # utime + stime + cutime + cstime
    rss_bytes: int
    comm: str


def parse_stat(text: str) -> tuple[str, list[str]]:
    """(comm, fields 3 on) of /proc/PID/stat; comm may hold spaces and ')': split at the last ')'."""
    head, _, rest = text.rpartition(")")
    return head.partition("(")[2], rest.split()


class ProcessTree:
    """The descendants of `root`, found by scanning /proc for parent links.

    A process that is not a descendant can never become one (orphans are reparented to us, the subreaper,
    or to init), so known outsiders are not read again while their pid stays alive: only members and new pids
    cost a read per scan. Membership is recomputed from parent links at every scan and the tree's time is a
    sum over live members, so a reused pid needs no bookkeeping, with one exception: an outsider's pid freed
    and taken by a new descendant within one interval is missed by the per-interval sums until that process
    exits, when RUSAGE_CHILDREN counts it; the run's total stays exact. (pid, start time) identifies a
    process in what the record names.
    """

    def __init__(self, root: int, proc: Path = Path("/proc")) -> None:
        self.root = root
        self.proc = proc
        self.members: dict[int, Proc] = {}
        self._outsiders: set[int] = set()

    def _read(self, pid: int) -> Proc | None:
        try:
            with open(f"{self.proc}/{pid}/stat", "rb") as f:
                comm, f3 = parse_stat(f.read().decode("utf-8", "replace"))
            # f3[0] is field 3 (state); ppid is field 4, utime..cstime 14..17, starttime 22, rss 24.
            ticks = int(f3[11]) + int(f3[12]) + int(f3[13]) + int(f3[14])
            return Proc(pid, int(f3[1]), int(f3[19]), ticks / CLK_TCK, int(f3[21]) * PAGE, comm)
        except (OSError, ValueError, IndexError):
            return None  # it exited between listdir and read

    def scan(self) -> dict[int, Proc]:
        alive = {int(n) for n in os.listdir(self.proc) if n.isdigit()}
        self._outsiders &= alive
        seen: dict[int, Proc] = {}
        for pid in alive - self._outsiders:
            p = self._read(pid)
            if p is not None:
                seen[pid] = p
        verdict: dict[int, bool] = {}

        def member(pid: int) -> bool:
            chain = []
            while pid not in verdict:
                p = seen.get(pid)
                if p is None or p.ppid in (0, pid):
                    verdict[pid] = False
                    break
                if p.ppid == self.root:
                    verdict[pid] = True
                    break
                chain.append(pid)
                pid = p.ppid
            for c in chain:
                verdict[c] = verdict[pid]
            return verdict[pid]

        members = {pid: p for pid, p in seen.items() if pid != self.root and member(pid)}
        self._outsiders |= set(seen) - set(members)
        self.members = members
        return members


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
    ) -> None:
        self.command = list(command)
        self.proc = proc
        self.pid = 0
        self.status: tuple[int, int | None] | None = None
        self.forwarded: list[str] = []
        self.subreaper = False
        self._tree = ProcessTree(os.getpid(), proc)
        self._extra = set(extra_signals)
        self._on_signal = on_signal
        self._waited = set(FORWARDED) | {signal.SIGCHLD} | self._extra
        self.threads = psutil.cpu_count() or 1
        self._old_mask: set[int | signal.Signals] | None = None

    def spawn(self) -> int:
        """Start the command (execvp semantics) or raise LaunchError with exit status 127 or 126."""
        if not self.command[0]:
            raise LaunchError("command not found: '' (the command name is empty)", 127)
        # An inherited SIGCHLD=SIG_IGN would make the kernel reap the child and lose its status.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.subreaper = _subreaper()
        old = signal.pthread_sigmask(signal.SIG_BLOCK, self._waited)
        self._old_mask = old
        try:
            # posix_spawnp: vfork speed, PATH lookup, exec errors reported back. The child gets an empty
            # signal mask and default SIGPIPE/SIGXFSZ (Python ignores both; a shell would not).
            self.pid = os.posix_spawnp(
                self.command[0],
                self.command,
                os.environ,
                setsigmask=(),
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
            )
        except OSError as e:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
            raise _launch_error(self.command[0], e) from None
        return self.pid

    def release(self) -> None:
        """Give back the signal mask spawn() took, for callers that live on after the run (tests, libraries).

        carbonwrap's own command line never calls it: its signals stay blocked until it exits, so that a
        SIGTERM arriving while the records are written cannot cut them short.
        """
        if self._old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
            self._old_mask = None

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to `timeout_s`, handling signals as they come; True once the command has exited."""
        info = signal.sigtimedwait(self._waited, max(timeout_s, 0.0))
        while info is not None:
            self._handle(info)
            info = signal.sigtimedwait(self._waited, 0)
        self.reap()
        return self.status is not None

    def _handle(self, info: signal.struct_siginfo) -> None:
        sig = info.si_signo
        if sig == signal.SIGCHLD:
            return
        if sig in self._extra:
            if self._on_signal is not None:
                self._on_signal(sig)
            return
        # From the terminal (Ctrl-C, Ctrl-\): the command got it too, so it is not sent twice.
        if info.si_code == SI_KERNEL or self.status is not None or info.si_pid == self.pid:
            return
        try:
            os.kill(self.pid, sig)
            self.forwarded.append(signal.Signals(sig).name)
        except ProcessLookupError:
            pass

    def send(self, sig: int) -> None:
        """Signal the command (a budget kill), unless it has already exited."""
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def reap(self) -> None:
        """Collect every exited child (orphans reparented to us included), keeping the command's status."""
        while True:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid:
                self.status = exit_status(st)

    def usage(self, scan: bool = True) -> TreeUsage:
        """The tree's cumulative CPU seconds: live descendants plus everything reaped by us."""
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        members = self._tree.scan() if scan else {}
        busy, _ = busy_total(psutil.cpu_times())
        return TreeUsage(
            cpu_s=ru.ru_utime + ru.ru_stime + sum(p.cpu_s for p in members.values()),
            rss_bytes=sum(p.rss_bytes for p in members.values()),
            reaped_peak_rss_bytes=ru.ru_maxrss * 1024,  # Linux reports kilobytes
            machine_busy_s=busy,
            threads=self.threads,
        )

    def tree_pids(self) -> set[int]:
        """The pids of the command's process tree as of the last usage scan."""
        return set(self._tree.members)

    def leftovers(self) -> list[Proc]:
        """Descendants still running after the command exited (from the last usage scan)."""
        return [p for p in self._tree.members.values() if p.pid != self.pid]


def _launch_error(name: str, e: OSError) -> LaunchError:
    if e.errno == errno.ENOENT:
        hint = "check the spelling and PATH" if "/" not in name else "check the path"
        return LaunchError(f"command not found: {name} ({hint}; carbonwrap runs no shell)", 127)
    why = e.strerror or str(e)
    if e.errno == errno.EACCES:
        hint = "it is a directory or lacks execute permission: chmod +x it, or run it with its interpreter"
    elif e.errno == errno.ENOEXEC:
        hint = "it is not a program and has no #! line: run it with its interpreter, e.g. 'sh FILE'"
    else:
        hint = "check that it is a program this machine can run"
    return LaunchError(f"cannot execute {name}: {why} ({hint})", 126)
