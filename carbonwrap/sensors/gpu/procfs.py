"""What /proc says about GPU device nodes: who holds them, a process's pids per namespace, and making sure
the NVML library's own descriptors are not inherited by the command."""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

# /dev/nvidiactl, /dev/nvidia-uvm, /dev/nvidia0 ... (and the same names under a test's fake /dev).
_NODE = re.compile(r"(?:^|/)dev/nvidia[^/]*$")
_DEVICE_NODE = re.compile(r"(?:^|/)dev/nvidia(\d+)$")


def device_minor(link: str) -> int | None:
    """N for a descriptor pointing at /dev/nvidiaN, else None."""
    m = _DEVICE_NODE.search(link)
    return int(m.group(1)) if m else None


def nspids(proc: Path, pid: int) -> list[int]:
    """The pid in each PID namespace it belongs to, outermost first (NSpid in /proc/PID/status, Linux 4.1+)."""
    try:
        with open(proc / str(pid) / "status", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return [int(v) for v in line.split()[1:]]
    except (OSError, ValueError):
        pass
    return [pid]


def open_files(proc: Path, pid: int) -> set[str]:
    """What a process's descriptors point at; empty when it is gone or not ours to look at."""
    fd_dir = proc / str(pid) / "fd"
    out = set()
    try:
        for fd in os.listdir(fd_dir):
            try:
                out.add(os.readlink(fd_dir / fd))
            except OSError:
                continue  # closed between listdir and readlink
    except OSError:
        pass  # gone, or another user's: only root sees its descriptors
    return out


def minors_held(proc: Path, pid: int) -> set[int]:
    """The N of every /dev/nvidiaN the process holds open."""
    return {m for m in (device_minor(p) for p in open_files(proc, pid)) if m is not None}


def holders(proc: Path, minors: set[int], exclude: int) -> dict[int, set[int]]:
    """Which pids hold each /dev/nvidiaN open, leaving out `exclude` (carbonwrap: NVML keeps the nodes open
    in the process that called nvmlInit, and that is not the command)."""
    out: dict[int, set[int]] = {m: set() for m in minors}
    for name in os.listdir(proc):
        if name.isdigit() and int(name) != exclude:
            for m in minors_held(proc, int(name)) & minors:
                out[m].add(int(name))
    return out


def close_nvidia_fds_on_exec() -> int:
    """Set FD_CLOEXEC on this process's descriptors of /dev/nvidia*, so a command started after nvmlInit does
    not inherit the library's handles and "hold" every GPU. Returns how many were changed."""
    changed = 0
    fd_dir = "/proc/self/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return 0
    for name in fds:
        try:
            if not _NODE.search(os.readlink(f"{fd_dir}/{name}")):
                continue
            fd = int(name)
            flags = fcntl.fcntl(fd, fcntl.F_GETFD)
            if not flags & fcntl.FD_CLOEXEC:
                fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
                changed += 1
        except (OSError, ValueError):
            continue  # closed meanwhile, or listdir's own descriptor
    return changed


def nvidia_fds(pid: int | str = "self") -> dict[str, bool]:
    """Each /dev/nvidia* descriptor of a process and whether it is close-on-exec (from /proc/PID/fdinfo)."""
    out = {}
    base = f"/proc/{pid}"
    try:
        fds = os.listdir(f"{base}/fd")
    except OSError:
        return {}
    for name in fds:
        try:
            link = os.readlink(f"{base}/fd/{name}")
            if not _NODE.search(link):
                continue
            with open(f"{base}/fdinfo/{name}") as f:
                flags = next(int(line.split()[1], 8) for line in f if line.startswith("flags:"))
            out[f"{name} {link}"] = bool(flags & 0o2000000)  # O_CLOEXEC
        except (OSError, ValueError, StopIteration):
            continue
    return out
