"""Readings and tree usage in, per-interval samples and run totals out. Pure: no I/O, no clock.

A step is one read of every sensor. `absorb` takes a step between reporting ticks (to keep a RAPL counter
from wrapping twice unseen), `update` takes one and returns everything since the previous sample as one
Sample, with the events the meter noticed meanwhile (a counter that failed, reset or read too seldom).
Charging (SPEC.md section 3) is made at every step, by each reading's policy, so memory stays flat however
long the run. The meter keeps running totals and per-channel state, no log.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from carbonwrap import attribution
from carbonwrap.model import Event, Reading, Sample, Scope, SensorInfo, TreeUsage

# Where a zone publishes no maximum power, a delta above twice this is taken as a counter reset.
DEFAULT_MAX_POWER_W = 2000.0
# energy_uj counts 0..max_energy_range_uj inclusive, so one wrap adds the range plus one microjoule.
_ONE_UJ = 1e-6
# RAPL updates about every millisecond: a shorter step gives no usable power for "the lowest seen".
MIN_IDLE_STEP_S = 0.04


def safe_period_s(wrap_j: float, max_power_w: float | None) -> float:
    """How often a counter must be read so it can never wrap twice between reads: range / (2 x max power)."""
    return wrap_j / (2.0 * (max_power_w or DEFAULT_MAX_POWER_W))


@dataclass(slots=True)
class _Channel:
    energy_j: float | None = None  # last good counter value
    t_s: float = 0.0  # when it was read
    failing: bool = False
    estimated_s: float = 0.0  # time the model stood in for an unreadable counter
    missing_s: float = 0.0  # time it was unreadable with no model to stand in
    gap_warned: bool = False
    pending_j: float = 0.0  # energy since the last sample
    now_w: float | None = None  # the hardware's instant power at the last read


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
    """Integrates one run. `prime` once, then `absorb` or `update` at every read with the measured time.

    `idle_w` is the --baseline figure per domain; `model_idle_w` the model's idle power per domain (for an
    estimated domain the model's own, for a measured one the cap on the lowest power seen).
    """

    def __init__(
        self,
        scope: Scope = "tree",
        idle_w: Mapping[str, float] | None = None,
        model_idle_w: Mapping[str, float] | None = None,
    ) -> None:
        self.scope = scope
        self.idle_w = dict(idle_w or {})
        self.model_idle_w = dict(model_idle_w or {})
        self.machine_j: dict[str, float] = {}
        self.charged_j: dict[str, float] = {}
        # (domain, channel) -> [machine J, charged J] of channels that carry their own share: the record's
        # per-GPU figures.
        self.channel_j: dict[tuple[str, str], list[float]] = {}
        # domain -> (watts, source) of the idle power the latest step charged with: the record's idle_w.
        self.idle_used: dict[str, tuple[float, str]] = {}
        self._lowest_w: dict[str, float] = {}
        self._channels: dict[tuple[str, str], _Channel] = {}
        self._usage: TreeUsage | None = None
        self._t_s = 0.0
        self._sample_t_s = 0.0
        self._sample_cpu_s = 0.0  # the tree's CPU seconds at the last sample
        self._pending: dict[str, list[float]] = {}  # domain -> [machine J, charged J] since the last sample
        self._noticed: list[Event] = []  # since the last sample: they go out with it

    def prime(self, readings: Sequence[Reading], usage: TreeUsage, now_s: float) -> None:
        """Take the state just before the launch; nothing is counted yet."""
        self._usage, self._t_s, self._sample_t_s = usage, now_s, now_s
        self._sample_cpu_s = usage.cpu_s
        for r in readings:
            self.machine_j.setdefault(r.domain, 0.0)
            self.charged_j.setdefault(r.domain, 0.0)
            ch = self._channels.setdefault((r.domain, r.name), _Channel())
            if r.error is not None:
                self._fail(r, ch, now_s)
            elif r.energy_j is not None:
                ch.energy_j, ch.t_s = r.energy_j, now_s

    def absorb(self, readings: Sequence[Reading], usage: TreeUsage, now_s: float) -> None:
        """Count a read taken between samples; the next `update` reports it as part of its interval."""
        self._step(readings, usage, now_s)

    def update(self, readings: Sequence[Reading], usage: TreeUsage, now_s: float) -> Sample:
        """Count the interval since the previous read and return everything since the previous sample."""
        self._step(readings, usage, now_s)
        dt = max(now_s - self._sample_t_s, 0.0)
        power: dict[str, float] = {}
        for (domain, _), ch in self._channels.items():
            if domain in self._pending:
                w = ch.now_w if ch.now_w is not None else (ch.pending_j / dt if dt > 0 else 0.0)
                power[domain] = power.get(domain, 0.0) + w
            ch.pending_j = 0.0
        machine = {d: v[0] for d, v in self._pending.items()}
        charged = {d: v[1] for d, v in self._pending.items()}
        self._pending = {}
        self._sample_t_s = now_s
        capacity = usage.threads * dt
        share = (usage.cpu_s - self._sample_cpu_s) / capacity if capacity > 0 else None
        self._sample_cpu_s = usage.cpu_s
        frozen = MappingProxyType
        return Sample(now_s, dt, frozen(machine), frozen(charged), frozen(power), usage.cpu_s, share, self.noticed())

    def noticed(self) -> tuple[Event, ...]:
        """What was noticed since the last sample, handed over once: with the next sample, or now when
        measurement stops before there is one."""
        out, self._noticed = tuple(self._noticed), []
        return out

    def sensor_info(self, infos: Iterable[SensorInfo]) -> list[SensorInfo]:
        """The record's sensor entries: a counter the model stood in for is `estimated`, for how long."""
        out = []
        for i in infos:
            ch = self._channels.get((i.domain, i.name))
            if ch is not None and ch.estimated_s > 0 and i.method == "measured":
                i = replace(
                    i,
                    method="estimated",
                    detail=f"{i.detail}; unreadable during the run, estimated from the model for "
                    f"{ch.estimated_s:.1f} s",
                )
            if ch is not None and ch.missing_s > 0:
                i = replace(i, detail=f"{i.detail}; unreadable for {ch.missing_s:.1f} s, not counted (no model)")
            out.append(i)
        return out

    def idle_record(self) -> dict[str, dict[str, object]]:
        """The record's idle_w: per domain charged by CPU share, the idle watts of the latest step and why."""
        return {d: {"w": w, "source": src} for d, (w, src) in sorted(self.idle_used.items())}

    def _step(self, readings: Sequence[Reading], usage: TreeUsage, now_s: float) -> None:
        assert self._usage is not None, "prime() first"
        dt = max(now_s - self._t_s, 0.0)
        energy: dict[str, float] = {}
        shared: dict[str, float] = {}  # energy of channels that carry their own share, charged directly
        by_cpu: set[str] = set()  # domains with a channel charged by the tree's CPU share
        modelled: set[str] = set()  # domains with a channel that only the model gives
        standin: set[str] = set()  # domains where the model stood in for a counter this step
        direct: dict[str, float] = {}
        basis: dict[str, int] = {}
        for r in readings:
            ch = self._channels.setdefault((r.domain, r.name), _Channel())
            e, estimated = self._delta(r, ch, now_s, dt)
            ch.pending_j += e
            ch.now_w = r.power_now_w if r.power_now_w is not None and r.error is None else None
            energy[r.domain] = energy.get(r.domain, 0.0) + e
            if estimated:
                standin.add(r.domain)
            if r.policy == "own share":
                c = e if self.scope == "machine" else e * r.share
                shared[r.domain] = shared.get(r.domain, 0.0) + e
                direct[r.domain] = direct.get(r.domain, 0.0) + c
                acc = self.channel_j.setdefault((r.domain, r.name), [0.0, 0.0])
                acc[0] += e
                acc[1] += c
            elif r.error is None or r.power_w is not None:
                by_cpu.add(r.domain)
                if r.energy_j is None and r.error is None:
                    modelled.add(r.domain)
            if r.policy == "resident share":
                basis[r.domain] = basis.get(r.domain, 0) + r.basis_bytes

        prev = self._usage
        tree_cpu = usage.cpu_s - prev.cpu_s
        busy = usage.machine_busy_s - prev.machine_busy_s
        capacity = usage.threads * dt
        for domain, total in energy.items():
            e = total - shared.get(domain, 0.0)
            if self.scope == "machine":
                c = e
            elif domain not in by_cpu:
                c = 0.0  # every channel charged itself: an idle baseline must not add a CPU share on top
            elif domain in basis:
                c = e * attribution.resident_share(_interval_rss(prev, usage, tree_cpu), basis[domain])
            else:
                idle = self._idle(domain, e, dt, domain in modelled, domain in standin)
                c = attribution.charge(e, dt, tree_cpu, busy, capacity, idle)
            c += direct.get(domain, 0.0)
            self.machine_j[domain] = self.machine_j.get(domain, 0.0) + total
            self.charged_j[domain] = self.charged_j.get(domain, 0.0) + c
            acc = self._pending.setdefault(domain, [0.0, 0.0])
            acc[0] += total
            acc[1] += c
        self._usage, self._t_s = usage, now_s

    def _idle(self, domain: str, energy_j: float, dt: float, modelled: bool, standin: bool) -> float:
        """P_idle of SPEC.md section 3: --baseline, else the model (capped by the lowest power seen for a
        counter), and remember which for the record."""
        model = self.model_idle_w.get(domain)
        if domain in self.idle_w:
            w, source = self.idle_w[domain], "baseline"
        elif modelled:
            w, source = (model, "model") if model is not None else (0.0, "none")
        else:
            if dt >= MIN_IDLE_STEP_S and not standin:
                seen = energy_j / dt
                self._lowest_w[domain] = min(self._lowest_w.get(domain, seen), seen)
            lowest = self._lowest_w.get(domain)
            if model is not None and (lowest is None or model <= lowest):
                w, source = model, "model"
            elif lowest is not None:
                w, source = lowest, "lowest seen"
            else:
                w, source = 0.0, "none"
        if source != "none":
            self.idle_used[domain] = (w, source)
        return w

    def _delta(self, r: Reading, ch: _Channel, now_s: float, dt: float) -> tuple[float, bool]:
        """The channel's energy since its previous read, and whether the model stood in for its counter."""
        if r.error is not None:
            self._fail(r, ch, now_s)
            ch.energy_j = None  # a counter that reads again starts over: the model covers the gap
            if r.power_w is not None:
                ch.estimated_s += dt
                return r.power_w * dt, True
            ch.missing_s += dt
            return 0.0, False
        was_failing = ch.failing
        if ch.failing:
            ch.failing = False
            self._notice(now_s, f"{r.domain} {r.name}: readable again at {now_s:.1f} s")
        if r.energy_j is None:
            return (r.power_w * dt if r.power_w is not None else 0.0), False  # a modelled channel
        if ch.energy_j is None:
            ch.energy_j, ch.t_s = r.energy_j, now_s
            if r.power_w is not None:  # the model's figure for the interval this first good read ends
                ch.estimated_s += dt
                return r.power_w * dt, True
            if was_failing:
                ch.missing_s += dt
            return 0.0, False
        gap = now_s - ch.t_s
        delta = r.energy_j - ch.energy_j
        if delta < 0 and r.wrap_j is not None:
            # A counter that goes down has wrapped once: reads come at least every safe_period_s, so it
            # cannot wrap twice unseen at any plausible power; the reset check below catches the rest.
            delta = r.wrap_j - ch.energy_j + r.energy_j + _ONE_UJ
        max_w = r.max_power_w or DEFAULT_MAX_POWER_W
        if r.wrap_j is not None and gap > r.wrap_j / max_w and not ch.gap_warned:
            ch.gap_warned = True
            self._notice(
                now_s,
                f"{r.domain} {r.name}: {gap:.0f} s between two reads at {now_s:.1f} s, longer than the "
                f"{r.wrap_j / max_w:.0f} s in which the counter can wrap at its maximum power: a wrap may "
                f"have been missed and the energy undercounted (read it at least every "
                f"{safe_period_s(r.wrap_j, r.max_power_w):.0f} s)",
            )
        limit = 2.0 * max_w * gap
        if delta < 0 or delta > limit or not math.isfinite(delta):
            self._notice(
                now_s,
                f"{r.domain} {r.name}: counter reset at {now_s:.1f} s (a change of {delta:.0f} J in "
                f"{gap:.2f} s is beyond twice the zone's maximum power); that interval is left out of the total",
            )
            delta = 0.0
        ch.energy_j, ch.t_s = r.energy_j, now_s
        return delta, False

    def _fail(self, r: Reading, ch: _Channel, now_s: float) -> None:
        if not ch.failing:
            ch.failing = True
            then = (
                "estimated from the model until it reads again"
                if r.power_w is not None
                else "this channel's energy is missing until it reads again"
            )
            self._notice(now_s, f"{r.domain} {r.name}: unreadable at {now_s:.1f} s ({r.error}); {then}")

    def _notice(self, t_s: float, text: str) -> None:
        self._noticed.append(Event(t_s, "warning", text))
