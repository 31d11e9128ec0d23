"""The share of a domain's energy charged to the command's process tree (SPEC.md section 3). Pure."""

from __future__ import annotations


def _clamp01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def capacity_share(tree_cpu_s: float, capacity_s: float) -> float:
    """C/T: the tree's CPU time over the machine's whole CPU capacity in the interval."""
    return _clamp01(tree_cpu_s / capacity_s) if capacity_s > 0 else 0.0


def busy_share(tree_cpu_s: float, busy_s: float) -> float:
    """min(1, C/B): the tree's part of the CPU time the machine actually spent."""
    if busy_s <= 0:
        return 1.0 if tree_cpu_s > 0 else 0.0
    return _clamp01(tree_cpu_s / busy_s)


def charge(
    energy_j: float,
    dt_s: float,
    tree_cpu_s: float,
    busy_s: float,
    capacity_s: float,
    idle_w: float | None = None,
) -> float:
    """Energy of one interval charged to the tree.

    Without a baseline, E x C/T: idle power is shared by capacity and the rest stays unattributed. With an
    idle baseline P, max(0, E - P dt) x min(1, C/B) + P dt x C/T: the tree pays for the power above idle in
    proportion to the busy time it caused, and for idle power by its capacity share.
    """
    if idle_w is None:
        return energy_j * capacity_share(tree_cpu_s, capacity_s)
    idle_j = idle_w * dt_s
    return max(0.0, energy_j - idle_j) * busy_share(tree_cpu_s, busy_s) + idle_j * capacity_share(
        tree_cpu_s, capacity_s
    )


def resident_share(tree_rss_bytes: int, basis_bytes: int) -> float:
    """The tree's part of modelled memory power: its resident memory over the memory in use."""
    return _clamp01(tree_rss_bytes / basis_bytes) if basis_bytes > 0 else 0.0
