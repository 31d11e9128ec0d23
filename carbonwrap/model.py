"""Frozen values passed between the modules. No third-party imports.

The run's outcome, RunReport, is in carbonwrap.summarise with what makes it: nothing before the launch
needs it, and each frozen dataclass costs about a millisecond to create at import."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

DOMAINS = ("cpu", "dram", "gpu")
J_PER_KWH = 3.6e6

Scope = Literal["tree", "machine"]
Method = Literal["measured", "estimated"]
# How a channel's energy is charged to the tree (SPEC.md section 3): by the tree's CPU share of the machine,
# by its resident share of the memory the model was given, or by the share the device itself reports.
Policy = Literal["cpu share", "resident share", "own share"]
How = Literal["flag", "env", "time zone", "intensity", "default"]
OnBudget = Literal["warn", "fail", "kill"]
# What an Event says: a warning for the record, a signal passed on to the command, a budget passed, a
# device that degraded.
EventKind = Literal["warning", "signal", "budget", "degraded"]


@dataclass(frozen=True, slots=True)
class Reading:
    """One sensor channel at one instant.

    A measured channel carries a cumulative counter (`energy_j`, wrapping at `wrap_j`); a modelled one
    carries the mean power since its previous read (`power_w`). `error` is set when the channel could not
    be read this time; the value fields are then None, except a `power_w` that the model gives in the
    counter's place (as it does on the first good read after a failure, beside `energy_j`).
    """

    domain: str
    name: str
    energy_j: float | None = None
    power_w: float | None = None
    wrap_j: float | None = None
    max_power_w: float | None = None
    # How the tree is charged for this channel's energy, and the figure that policy needs:
    # "resident share": `basis_bytes`, the machine's used memory the power was modelled on;
    # "own share": `share`, the fraction of this interval's energy the tree caused (a GPU, from the
    # driver's process list); "cpu share" needs neither.
    policy: Policy = "cpu share"
    basis_bytes: int = 0
    share: float = 0.0
    # Power at the instant of the read, where the hardware has a figure fresher than the interval's mean
    # (NVML's instant power field). Only the live view shows it; energy comes from the counter.
    power_now_w: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SensorInfo:
    """What the record says about one channel: how its domain is measured and why."""

    domain: str
    name: str
    method: Method
    detail: str


@dataclass(frozen=True, slots=True)
class Device:
    """One GPU as the record lists it; `channel` is the name of its readings."""

    index: int
    name: str
    uuid: str
    channel: str
    method: str  # "energy counter" | "integrated power"
    mig: bool = False
    note: str = ""  # how it degraded, if it did


@dataclass(frozen=True, slots=True)
class TreeUsage:
    """Cumulative CPU use at one instant: the command's process tree and the whole machine."""

    cpu_s: float  # live descendants' utime+stime+cutime+cstime plus our RUSAGE_CHILDREN
    rss_bytes: int  # resident memory of the live descendants
    reaped_peak_rss_bytes: int  # largest peak resident memory of any finished descendant (ru_maxrss)
    machine_busy_s: float  # busy CPU seconds of all threads since boot
    threads: int  # hardware threads of the machine
    pids: frozenset[int] = frozenset()  # the tree's live processes at this scan (a GPU's share needs them)


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened during a run, at `t_s` seconds after the launch."""

    t_s: float
    kind: EventKind
    text: str


@dataclass(frozen=True, slots=True)
class Sample:
    """One interval: energy per domain for the machine and charged to the scope, and power now. Read-only
    through and through: the meter hands its figures out as mapping proxies."""

    t_s: float
    dt_s: float
    machine_j: Mapping[str, float]
    charged_j: Mapping[str, float]
    power_w: Mapping[str, float]
    tree_cpu_s: float
    # The tree's CPU seconds in the interval over the machine's capacity (threads x dt_s); None when dt_s is 0.
    tree_cpu_share: float | None = None
    events: tuple[Event, ...] = ()  # what the meter noticed in the interval (a counter reset, a gap)


@dataclass(frozen=True, slots=True)
class Intensity:
    """Grid carbon intensity used to turn energy into CO2e."""

    region: str | None
    name: str | None
    g_per_kwh: float
    year: int | None
    source: str
    how: How
    note: str = ""  # "no region set; world average", "guessed from time zone Europe/Paris"


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Everything the command line decided, already validated."""

    command: tuple[str, ...]
    intensity: Intensity
    interval_s: float = 1.0
    pue: float = 1.0
    scope: Scope = "tree"
    baseline_s: float = 0.0
    outputs: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    label: str = ""
    live: bool = False
    quiet: bool = False
    sysfs: str = "/sys"
    gpu: bool | None = None
    cpu_watts: tuple[float, float] | None = None
    debug: bool = False
    pushgateway: str | None = None
    push_interval_s: float = 60.0
    step_summary: bool = True
    max_co2e_g: float | None = None
    max_energy_j: float | None = None
    on_budget: OnBudget = "warn"
    progress_s: float | None = None
    # SPEC.md sections 8 and 9: live pricing and the carbon-aware start (grid/). finish_by_s is wall-clock
    # seconds; expect_s None means 'auto' (the median of earlier runs, else 1 h).
    grid: Literal["table", "live"] = "table"
    start_within_s: float | None = None
    finish_by_s: float | None = None
    expect_s: float | None = None
    samples: str | None = None  # --samples PATH: one row per interval (SPEC section 10.1)
    grid_region: str | None = None  # the region as given, for the live providers (GB-13, DK-DK1, em:...)
    summary: Literal["full", "short"] = "full"  # --summary
