"""Readings and tree usage in, per-interval samples and run totals out. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from carbonwrap import attribution
from carbonwrap.model import Reading, Sample, TreeUsage

# Where a zone publishes no maximum power, a delta above twice this is taken as a counter reset.
DEFAULT_MAX_POWER_W = 2000.0
# energy_uj counts 0..max_energy_range_uj inclusive, so one wrap adds the range plus one microjoule.
_ONE_UJ = 1e-6


@dataclass(slots=True)
class _Channel:
    energy_j: float | None = None  # last good counter value
    t_s: float = 0.0  # when it was read
    failing: bool = False


def _interval_rss(prev: TreeUsage, now: TreeUsage, tree_cpu_s: float) -> int:
    """The tree's resident memory over an interval, from the samples at both ends.

    A tree that ran in the interval but is alive at neither end (a command shorter than one interval) is
    charged the peak resident memory of its largest finished process, the only figure the kernel keeps.
    """
    rss = max(prev.rss_bytes, now.rss_bytes)
    if rss == 0 and tree_cpu_s > 0:
        rss = now.reaped_peak_rss_bytes
    return rss


class Meter:
    """Integrates one run. `prime` once, then `update` at every tick with the measured time."""

    def __init__(self, scope: str = "tree", idle_w: dict[str, float] | None = None) -> None:
        self.scope = scope
        self.idle_w = idle_w or {}
        self.machine_j: dict[str, float] = {}
        self.charged_j: dict[str, float] = {}
        self.warnings: list[str] = []
        # (domain, channel) -> [machine J, charged J] of channels that carry their own share: the record's
        # per-GPU figures.
        self.channel_j: dict[tuple[str, str], list[float]] = {}
        self._channels: dict[tuple[str, str], _Channel] = {}
        self._usage: TreeUsage | None = None
        self._t_s = 0.0

    def prime(self, readings: Sequence[Reading], usage: TreeUsage, now_s: float) -> None:
        """Take the state just before the launch; nothing is counted yet."""
        self._usage, self._t_s = usage, now_s
        for r in readings:
            self.machine_j.setdefault(r.domain, 0.0)
            self.charged_j.setdefault(r.domain, 0.0)
            ch = self._channels.setdefault((r.domain, r.name), _Channel())
            if r.energy_j is not None:
                ch.energy_j, ch.t_s = r.energy_j, now_s
            elif r.error is not None:
                self._fail(r, ch, now_s)

    def update(self, readings: Sequence[Reading], usage: TreeUsage, now_s: float) -> Sample:
        """Count the interval since the previous call and return it as a sample."""
        assert self._usage is not None, "prime() first"
        dt = max(now_s - self._t_s, 0.0)
        energy: dict[str, float] = {}
        shared: dict[str, float] = {}  # energy of channels that carry their own share, charged directly
        by_cpu: set[str] = set()  # domains with a channel charged by the tree's CPU share
        direct: dict[str, float] = {}
        basis: dict[str, int] = {}
        power: dict[str, float] = {}
        for r in readings:
            e = self._delta(r, now_s, dt)
            energy[r.domain] = energy.get(r.domain, 0.0) + e
            now_w = r.power_now_w if r.power_now_w is not None and r.error is None else (e / dt if dt > 0 else 0.0)
            power[r.domain] = power.get(r.domain, 0.0) + now_w
            if r.share is not None:
                c = e if self.scope == "machine" else e * r.share
                shared[r.domain] = shared.get(r.domain, 0.0) + e
                direct[r.domain] = direct.get(r.domain, 0.0) + c
                acc = self.channel_j.setdefault((r.domain, r.name), [0.0, 0.0])
                acc[0] += e
                acc[1] += c
            else:
                by_cpu.add(r.domain)
            if r.basis_bytes is not None:
                basis[r.domain] = basis.get(r.domain, 0) + r.basis_bytes

        prev = self._usage
        tree_cpu = usage.cpu_s - prev.cpu_s
        busy = usage.machine_busy_s - prev.machine_busy_s
        capacity = usage.threads * dt
        charged: dict[str, float] = {}
        for domain, total in energy.items():
            e = total - shared.get(domain, 0.0)
            if self.scope == "machine":
                c = e
            elif domain not in by_cpu:
                c = 0.0  # every channel charged itself: an idle baseline must not add a CPU share on top
            elif domain in basis:
                c = e * attribution.resident_share(_interval_rss(prev, usage, tree_cpu), basis[domain])
            else:
                c = attribution.charge(e, dt, tree_cpu, busy, capacity, self.idle_w.get(domain))
            charged[domain] = c + direct.get(domain, 0.0)
            self.machine_j[domain] = self.machine_j.get(domain, 0.0) + total
            self.charged_j[domain] = self.charged_j.get(domain, 0.0) + charged[domain]

        self._usage, self._t_s = usage, now_s
        share = tree_cpu / capacity if capacity > 0 else None
        return Sample(now_s, dt, energy, charged, power, usage.cpu_s, share)

    def _delta(self, r: Reading, now_s: float, dt: float) -> float:
        ch = self._channels.setdefault((r.domain, r.name), _Channel())
        if r.error is not None:
            self._fail(r, ch, now_s)
            return 0.0
        if ch.failing:
            ch.failing = False
            self.warnings.append(f"{r.domain} {r.name}: readable again at {now_s:.1f} s")
        if r.power_w is not None:
            return r.power_w * dt
        if r.energy_j is None:
            return 0.0
        if ch.energy_j is None:
            ch.energy_j, ch.t_s = r.energy_j, now_s
            return 0.0
        delta = r.energy_j - ch.energy_j
        if delta < 0 and r.wrap_j is not None:
            # A counter that goes down has wrapped once (it cannot wrap twice between reads at any
            # plausible power; the reset check below catches what is not plausible).
            delta = r.wrap_j - ch.energy_j + r.energy_j + _ONE_UJ
        limit = 2.0 * (r.max_power_w or DEFAULT_MAX_POWER_W) * (now_s - ch.t_s)
        if delta < 0 or delta > limit:
            self.warnings.append(
                f"{r.domain} {r.name}: counter reset at {now_s:.1f} s (a change of {delta:.0f} J in "
                f"{now_s - ch.t_s:.2f} s is beyond twice the zone's maximum power); "
                "that interval is left out of the total"
            )
            delta = 0.0
        ch.energy_j, ch.t_s = r.energy_j, now_s
        return delta

    def _fail(self, r: Reading, ch: _Channel, now_s: float) -> None:
        if not ch.failing:
            ch.failing = True
            self.warnings.append(
                f"{r.domain} {r.name}: unreadable at {now_s:.1f} s ({r.error}); a counter that reads "
                "again covers the gap, otherwise this channel's energy from then on is missing"
            )
