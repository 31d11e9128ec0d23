"""The command's process tree, found by scanning /proc for parent links."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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
        self.exclude: set[int] = set()  # carbonwrap's own helper processes
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
                if p is None or p.ppid in (0, pid) or pid in self.exclude:
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
