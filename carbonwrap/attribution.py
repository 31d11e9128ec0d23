"""The share of a domain's energy charged to the command's process tree (SPEC.md section 3). Pure."""

from __future__ import annotations

from collections.abc import Collection, Mapping

# Above this share of the machine's CPU capacity busy during --baseline, the baseline is not an idle figure.
BUSY_BASELINE_SHARE = 0.10


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
    idle_w: float = 0.0,
) -> float:
    """Energy of one interval charged to the tree, with P the domain's idle power:

    max(0, E - P dt) x min(1, C/B) + min(E, P dt) x C/T. The tree pays for the power above idle by its
    share of the busy time it caused, and for the idle power by its share of the capacity.
    """
    idle_j = max(idle_w, 0.0) * max(dt_s, 0.0)
    above = max(0.0, energy_j - idle_j)
    return above * busy_share(tree_cpu_s, busy_s) + min(energy_j, idle_j) * capacity_share(tree_cpu_s, capacity_s)


def resident_share(tree_rss_bytes: int, basis_bytes: int) -> float:
    """The tree's part of modelled memory power: its resident memory over the memory in use."""
    return _clamp01(tree_rss_bytes / basis_bytes) if basis_bytes > 0 else 0.0


def device_share(samples: Mapping[int, float], mine: Collection[int], users: Collection[int]) -> float:
    """The tree's part of one GPU's energy in an interval: its SM utilisation over all of the device's
    processes'; without samples an equal split among the device's processes; 0 with nobody on it."""
    total = sum(samples.values())
    if total > 0:
        return _clamp01(sum(v for p, v in samples.items() if p in mine) / total)
    if users:
        return _clamp01(sum(1 for p in users if p in mine) / len(users))
    return 0.0


def holder_share(held: Collection[int], mine: Collection[int]) -> float:
    """The tree's part of a GPU whose driver lists no processes: its holders of the device node over all."""
    return _clamp01(sum(1 for p in held if p in mine) / len(held)) if held else 0.0


def baseline_warning(busy_s: float, capacity_s: float, idle_w: dict[str, float]) -> str | None:
    """A warning when the machine was busy during --baseline (other load), else None.

    `busy_s` is the machine's busy CPU time over the baseline, `capacity_s` threads x its duration.
    """
    if capacity_s <= 0:
        return None
    share = busy_s / capacity_s
    if share <= BUSY_BASELINE_SHARE:
        return None
    shown = ", ".join(f"{d} {w:.3g} W" for d, w in sorted(idle_w.items())) or "no domain"
    return (
        f"--baseline: the machine was {share:.0%} busy while idle power was measured ({shown}), so the "
        "baseline includes other work and the command is charged less than the power it causes; "
        "measure it on a quiet machine, or leave --baseline out to use the model"
    )
