"""The binding's process lists and utilisation samples, made safe to use. `nvml` is the pynvml module.

What real drivers and bindings do that these functions absorb:
- drivers before R510 have no `_v3` process calls: nvidia-ml-py >= 12.550 then raises NVMLLibraryMismatchError
  (not an NVMLError) from the unversioned call, 12.535 NVMLError_FunctionNotFound; the `_v2` call is tried;
- a binding and a driver that disagree on the size of a process entry (nvidia-ml-py 12.535.77 read 32 bytes,
  drivers wrote 24; early R535 drivers the reverse) give garbage pids after the first: such a list is refused;
- a sample can arrive between the utilisation sizing call and the fill: INSUFFICIENT_SIZE, retried once;
- samples with smUtil above 100 and samples already seen do occur, and are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PID_MAX_LIMIT = 4_194_304  # the kernel's largest possible pid (64-bit)
_FUNCTION_NOT_FOUND, _NOT_FOUND, _INSUFFICIENT_SIZE, _GPU_IS_LOST = 13, 6, 7, 15


class ImpossibleList(Exception):
    """The driver's answer cannot be a list of processes (see the module's docstring)."""


def code(nvml: Any, name: str, default: int) -> int:
    return int(getattr(nvml, name, default))


def _lost(nvml: Any, e: BaseException) -> bool:
    return isinstance(e, nvml.NVMLError) and e.value == code(nvml, "NVML_ERROR_GPU_IS_LOST", _GPU_IS_LOST)


def versioned(nvml: Any, name: str, handle: Any) -> Sequence[Any]:
    """nvml.NAME(handle), falling back to NAME_v2 where the driver lacks the binding's default version."""
    mismatch = getattr(nvml, "NVMLLibraryMismatchError", None)
    try:
        return getattr(nvml, name)(handle)  # type: ignore[no-any-return]
    except Exception as e:
        old = getattr(nvml, f"{name}_v2", None)
        missing = code(nvml, "NVML_ERROR_FUNCTION_NOT_FOUND", _FUNCTION_NOT_FOUND)
        absent = (mismatch is not None and isinstance(e, mismatch)) or (
            isinstance(e, nvml.NVMLError) and e.value == missing
        )
        if not absent or old is None:
            raise
        return old(handle)  # type: ignore[no-any-return]


def pids(entries: Sequence[Any]) -> list[int]:
    """The pids of a process list; ImpossibleList where they cannot be real."""
    out = [int(p.pid) for p in entries]
    if any(p <= 0 or p > PID_MAX_LIMIT for p in out) or len(set(out)) != len(out):
        raise ImpossibleList(", ".join(str(p) for p in out[:6]))
    return out


@dataclass(frozen=True, slots=True)
class Processes:
    """Who has a context on the device. `users`: the processes to share among; `servers`: MPS servers
    (nvidia-cuda-mps-server holds the contexts of its clients and is never charged)."""

    users: frozenset[int]
    servers: frozenset[int] = frozenset()


def processes(nvml: Any, handle: Any) -> Processes | None:
    """The device's processes; None where the driver won't list compute processes (MIG without privileges,
    some vGPUs), as an empty graphics list then says nothing. Raises ImpossibleList, and a lost GPU."""
    try:
        compute = set(pids(versioned(nvml, "nvmlDeviceGetComputeRunningProcesses", handle)))
    except ImpossibleList:
        raise
    except Exception as e:
        if _lost(nvml, e):
            raise
        return None
    users = set(compute)
    for name in ("nvmlDeviceGetGraphicsRunningProcesses", "nvmlDeviceGetMPSComputeRunningProcesses"):
        try:
            found = set(pids(versioned(nvml, name, handle)))
        except ImpossibleList:
            raise
        except Exception as e:
            if _lost(nvml, e):
                raise
            continue
        if name.endswith("MPSComputeRunningProcesses") and found:
            servers = compute - found  # under MPS the compute list names the server, not the clients
            return Processes(frozenset((users | found) - servers), frozenset(servers))
        users |= found
    return Processes(frozenset(users))


@dataclass(frozen=True, slots=True)
class Samples:
    """SM utilisation summed per pid over the fresh samples, the newest timestamp, and how many were dropped
    as out of range (smUtil > 100)."""

    sm: dict[int, float]
    newest_us: int
    dropped: int = 0


def utilisation(nvml: Any, handle: Any, since_us: int) -> Samples | None:
    """Samples newer than `since_us` (µs of wall time); None where the driver has no per-process utilisation.
    No fresh sample (NOT_FOUND, or a second INSUFFICIENT_SIZE) is an empty Samples."""
    call = nvml.nvmlDeviceGetProcessUtilization
    for attempt in (1, 2):
        try:
            raw = call(handle, since_us)
            break
        except Exception as e:
            if not isinstance(e, nvml.NVMLError) or _lost(nvml, e):
                raise
            if e.value == code(nvml, "NVML_ERROR_INSUFFICIENT_SIZE", _INSUFFICIENT_SIZE) and attempt == 1:
                continue  # a sample arrived between the binding's sizing call and its fill
            if e.value in (code(nvml, "NVML_ERROR_NOT_FOUND", _NOT_FOUND), 0, _INSUFFICIENT_SIZE):
                return Samples({}, since_us)
            return None
    sm: dict[int, float] = {}
    newest, dropped = since_us, 0
    for s in raw:
        stamp, util = int(s.timeStamp), int(s.smUtil)
        if stamp <= since_us or int(s.pid) <= 0:
            continue  # already counted, or an unfilled entry
        if util > 100:
            dropped += 1
            continue
        newest = max(newest, stamp)
        sm[int(s.pid)] = sm.get(int(s.pid), 0.0) + float(util)
    return Samples(sm, newest, dropped)
