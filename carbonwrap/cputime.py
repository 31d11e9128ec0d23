"""Machine CPU time from a psutil cpu_times() tuple (Linux /proc/stat semantics). No imports."""

from __future__ import annotations

from typing import Any


def busy_total(t: Any) -> tuple[float, float]:
    """(busy, total) CPU seconds. Guest time is already inside user and nice, so it is not added twice."""
    guest = getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
    total = float(sum(t)) - guest
    idle = t.idle + getattr(t, "iowait", 0.0)
    return total - idle, total
