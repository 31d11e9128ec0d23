"""The tree's share of one GPU's energy in an interval (SPEC.md section 3): its part of the SM utilisation
among the device's processes, an equal split among them without samples, and who holds /dev/nvidiaN open
where the driver lists no processes at all."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from carbonwrap import attribution
from carbonwrap.model import Device as GpuDevice
from carbonwrap.sensors.gpu import procfs, queries


class GpuState:
    """What the share needs to keep about one device between reads."""

    def __init__(self, info: GpuDevice, minor: int | None, since_us: int) -> None:
        self.info = info
        self.minor = minor
        self.last_seen_us = since_us  # utilisation samples not newer than this were counted already
        self.prev_users: set[int] = set()
        self.last_sm: dict[int, float] = {}  # the last SM distribution, carried forward without fresh samples
        self.warned: set[str] = set()


Note = Callable[[GpuState, str, str], None]


class Shares:
    """Decides each device's share; `own_pid` (carbonwrap, where NVML keeps the nodes open) is never a holder."""

    def __init__(self, nvml: Any, proc: Path, note: Note, own_pid: int) -> None:
        self.nvml = nvml
        self.proc = proc
        self.note = note
        self.own_pid = own_pid
        self._gpus: Sequence[GpuState] = ()
        self._holders: dict[int, set[int]] | None = None

    def start_read(self, gpus: Sequence[GpuState]) -> None:
        self._gpus = gpus
        self._holders = None  # scanned at most once per read, and only when a device needs it

    def share(self, g: GpuState, handle: Any, members: set[int]) -> float:
        """The tree's share of this device's energy since the previous read."""
        procs = self._processes(g, handle)
        sm = self._samples(g, handle, procs)
        if procs is None and not sm:
            return self._by_holders(g, members)
        if procs is not None and procs.servers:
            self.note(g, "mps", "MPS: shared among the MPS server's clients, not charged to the server")
        # Without a process list, the processes that have samples are the ones on the device.
        listed = set(procs.users) if procs is not None else set(sm or {})
        users = listed | g.prev_users
        g.prev_users = listed
        mine = self._match(users | set(sm or {}), members)
        if not mine and members and users:
            by_namespace = self._other_namespace(g, users, members)
            if by_namespace is not None:
                return by_namespace
        return attribution.device_share(self._usable(g, sm, procs, users, mine), mine, users)

    def _processes(self, g: GpuState, handle: Any) -> queries.Processes | None:
        try:
            return queries.processes(self.nvml, handle)
        except queries.ImpossibleList as e:
            self.note(
                g,
                "impossible",
                f"the driver's process list is impossible (pids {e}): the binding and the driver disagree on "
                "the size of a process entry; install an nvidia-ml-py that matches the driver (>= 12.535.108). "
                "Shared by utilisation samples alone meanwhile",
            )
            return None

    def _other_namespace(self, g: GpuState, users: set[int], members: set[int]) -> float | None:
        """The tree holds the device open, yet none of the driver's pids is ours: the driver speaks host pids
        into a container's PID namespace. The tree's holders among the device's processes; None otherwise."""
        unmatched = {p for p in users if not (self.proc / str(p)).exists()}
        held = self._tree_holding(members, g.minor) if unmatched else 0
        if not held:
            return None
        self.note(
            g,
            "pidns",
            f"NVML reports pids ({', '.join(str(p) for p in sorted(unmatched)[:5])}) that this /proc does "
            "not show while the command holds the device open: carbonwrap seems to run in a container with "
            "its own PID namespace. Charged by an equal split among the device's processes; run the "
            "container with --pid=host for utilisation shares",
        )
        return min(1.0, held / max(len(users), 1))

    def _usable(
        self,
        g: GpuState,
        sm: dict[int, float] | None,
        procs: queries.Processes | None,
        users: set[int],
        mine: set[int],
    ) -> dict[int, float]:
        """The samples to share by. They count only for pids the process list knows, or the tree's: some
        drivers list processes in the caller's PID namespace but stamp samples with host pids, and those
        cannot be told apart."""
        usable = {p: v for p, v in (sm or {}).items() if procs is None or p in users or p in mine}
        if sum(usable.values()) > 0:
            g.last_sm = usable
        elif sm is not None and not sm:
            # No fresh sample (the driver samples every 1/6 to 1 s): the last distribution still holds for
            # the processes still on the device.
            usable = {p: v for p, v in g.last_sm.items() if procs is None or p in users}
        return usable

    def _samples(self, g: GpuState, handle: Any, procs: queries.Processes | None) -> dict[int, float] | None:
        got = queries.utilisation(self.nvml, handle, g.last_seen_us)
        if got is None:
            return None
        g.last_seen_us = got.newest_us
        if got.dropped:
            self.note(g, "range", "the driver gave utilisation samples above 100 %: they are left out")
        return got.sm

    def _match(self, pids: set[int], members: set[int]) -> set[int]:
        """The pids in `pids` that belong to the tree, directly or through NSpid (a process in a nested PID
        namespace is known by one pid per namespace; the driver may use any one of them)."""
        mine = pids & members
        rest = pids - members
        if not rest:
            return mine
        for pid in members:
            for alias in procfs.nspids(self.proc, pid)[1:]:
                # An inner pid that is also a live pid here would be ambiguous: it is not taken.
                if alias in rest and not (self.proc / str(alias)).exists():
                    mine.add(alias)
        return mine

    def _tree_holding(self, members: set[int], minor: int | None) -> int:
        """How many of the tree's processes hold /dev/nvidiaN open."""
        if minor is None:
            return 0
        return sum(1 for pid in members if minor in procfs.minors_held(self.proc, pid))

    def _by_holders(self, g: GpuState, members: set[int]) -> float:
        """No process information from the driver: decide from who holds the device node open."""
        if g.minor is None:
            self.note(
                g,
                "noinfo",
                "no process information and no device number: the whole device is charged, and it may include "
                "other processes",
            )
            return 1.0 if members else 0.0
        if self._holders is None:
            minors = {s.minor for s in self._gpus if s.minor is not None}
            self._holders = procfs.holders(self.proc, minors, exclude=self.own_pid)
        node = f"/dev/nvidia{g.minor}"
        held = self._holders.get(g.minor, set())
        mine, others = held & members, held - members
        unseen = "" if os.geteuid() == 0 else " (other users' processes are visible only to root)"
        if not mine:
            return 0.0
        if not others:
            self.note(
                g,
                "noinfo",
                "no process information from the driver: the whole device is charged, as no other process was "
                f"seen holding {node} open{unseen}",
            )
            return 1.0
        self.note(
            g,
            "noinfo-split",
            f"no process information from the driver: charged by an equal split among the processes holding "
            f"{node} open{unseen}",
        )
        return attribution.holder_share(held, members)
