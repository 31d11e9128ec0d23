"""`carbonwrap doctor`: which sensor each domain would use here, why, and the exact fix for what can't."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from carbonwrap.errors import SensorError
from carbonwrap.model import DOMAINS, Intensity
from carbonwrap.sensors import nvidia_driver_present, nvml, rapl

GROUP = "powercap"
UDEV_RULE = (
    'ACTION=="add", SUBSYSTEM=="powercap", KERNEL=="intel-rapl:*", '
    f'RUN+="/bin/chgrp {GROUP} /sys%p/energy_uj", RUN+="/bin/chmod 0440 /sys%p/energy_uj"'
)


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the diagnosis. `status` is measured, estimated, unreadable, absent or info."""

    topic: str
    status: str
    summary: str
    details: tuple[str, ...] = ()
    fix: tuple[str, ...] = field(default_factory=tuple)


def rapl_fix(sysfs: Path) -> tuple[str, ...]:
    """Commands that let one group read energy_uj (not everyone: Linux made it root-only for
    CVE-2020-8694, a power side channel), now and after every boot."""
    base = sysfs / "class" / "powercap"
    return (
        f'sudo groupadd --system {GROUP}; sudo usermod -aG {GROUP} "$USER"   # then log in again',
        f"echo '{UDEV_RULE}' | sudo tee /etc/udev/rules.d/70-carbonwrap-rapl.rules",
        "sudo udevadm control --reload && sudo udevadm trigger --subsystem-match=powercap --action=add",
        f"# or for this boot only: sudo chgrp {GROUP} {base}/intel-rapl:*/energy_uj "
        f"{base}/intel-rapl:*:*/energy_uj && sudo chmod g+r {base}/intel-rapl:*/energy_uj "
        f"{base}/intel-rapl:*:*/energy_uj",
    )


def in_container(root: Path = Path("/")) -> bool:
    return (root / ".dockerenv").exists() or (root / "run" / ".containerenv").exists()


def _powercap(sysfs: Path, reader: rapl.Reader, proc: Path, container: bool) -> tuple[list[Finding], dict[str, str]]:
    zones, notes = rapl.discover(sysfs, reader)
    status: dict[str, str] = {}
    out: list[Finding] = []
    for domain in ("cpu", "dram"):
        mine = [z for z in zones if z.domain == domain]
        if not mine:
            continue
        lines, bad = [], False
        for z in mine:
            try:
                rapl.RaplSensor([z], reader)
                lines.append(f"{z.name} ({z.path.name}): readable")
            except SensorError as e:
                bad = True
                lines.append(f"{z.name} ({z.path.name}): {e}")
        status[domain] = "unreadable" if bad else "measured"
        summary = "RAPL counters found but not readable: falls back to the estimate" if bad else "RAPL"
        out.append(Finding(domain, status[domain], summary, tuple(lines), rapl_fix(sysfs) if bad else ()))
    if not zones:
        fix: tuple[str, ...] = ()
        if container:
            fix = (
                "this looks like a container: mount the host's sysfs and point carbonwrap at it:",
                "docker run -v /sys:/host/sys:ro ... carbonwrap --sysfs /host/sys -- COMMAND",
            )
        out.append(
            Finding("powercap", "info", f"no RAPL zones under {sysfs / 'class' / 'powercap'}", tuple(notes), fix)
        )
    return out, status


def _estimate(proc: Path, cpu_watts: tuple[float, float] | None, domains: list[str]) -> list[Finding]:
    from carbonwrap.sensors.estimate import DRAM_W_PER_GB, EstimateSensor

    s = EstimateSensor(tuple(domains), proc=proc, cpu_watts=cpu_watts)
    out = []
    for d in domains:
        if d == "cpu" and cpu_watts is not None:
            details: tuple[str, ...] = (
                f"--cpu-watts override: {s.idle_w:g}-{s.max_w:g} W per thread, {s.threads} threads "
                f"(the model row {s.model.microarchitecture} would give {s.model.idle_w:g}-{s.model.max_w:g} W)",
                f"matched from /proc/cpuinfo: {s.model.matched}",
            )
        elif d == "cpu":
            details = (
                f"model row: {s.model.microarchitecture}, {s.idle_w:g}-{s.max_w:g} W per thread, {s.threads} threads",
                f"matched from /proc/cpuinfo: {s.model.matched}",
            )
        else:
            details = (f"{DRAM_W_PER_GB} W per GB of memory in use",)
        out.append(Finding(d, "estimated", "labelled estimate (no readable counter)", details))
    return out


def _gpu(proc: Path, load_nvml: Callable[[], ModuleType], gpu: bool | None = None) -> Finding:
    """The GPU finding; `gpu` is --gpu (True: try NVML even without the driver probe) or --no-gpu (False)."""
    version_file = proc / "driver" / "nvidia" / "version"
    if gpu is False:
        return Finding("gpu", "absent", "--no-gpu: GPU energy is not measured")
    if not nvidia_driver_present(proc) and gpu is not True:
        return Finding("gpu", "absent", f"no NVIDIA driver ({version_file} missing): no GPU to measure")
    try:
        kernel = version_file.read_text(errors="replace").splitlines()[0].strip()
    except (OSError, IndexError):
        kernel = "NVIDIA kernel module present" if version_file.exists() else f"--gpu given ({version_file} missing)"
    try:
        driver, devices = nvml.describe(load_nvml())
    except Exception as e:  # ImportError, or the library's own NVMLError with its code
        return Finding(
            "gpu",
            "unreadable",
            f"NVIDIA driver loaded, but NVML cannot be used: {e}",
            (kernel,),
            (
                "install the driver's management library libnvidia-ml.so.1 (Debian/Ubuntu: the "
                "nvidia-utils or libnvidia-compute package matching the driver)",
                "pip install nvidia-ml-py",
            ),
        )
    details = [kernel, f"NVML driver version {driver}"]
    if not devices:
        return Finding("gpu", "absent", "NVML works but lists no GPU: no GPU to measure", tuple(details))
    for d in devices:
        how = (
            "energy counter (nvmlDeviceGetTotalEnergyConsumption)"
            if d.energy_counter
            else f"no energy counter ({d.why_not}): power is integrated over each interval"
        )
        who = (
            "processes listed, charged by SM utilisation"
            if not d.processes
            else f"processes not listed ({d.processes}): charged by who holds /dev/nvidiaN open"
        )
        mig = "; MIG mode: measured and charged per GPU, not per instance" if d.mig else ""
        details.append(f"GPU {d.index}: {d.name}: {how}; {who}{mig}")
    return Finding("gpu", "measured", f"NVML: {len(devices)} GPU(s) measured", tuple(details))


def _virtual(proc: Path, container: bool) -> Finding:
    signs = []
    try:
        if " hypervisor" in (proc / "cpuinfo").read_text(errors="replace"):
            signs.append("CPU flag 'hypervisor' set")
    except OSError:
        pass
    try:
        fields = (proc / "stat").read_text().splitlines()[0].split()
        steal = int(fields[8]) if len(fields) > 8 else 0
        if steal:
            signs.append(f"steal time {steal / os.sysconf('SC_CLK_TCK'):.1f} s since boot")
    except (OSError, ValueError):
        pass
    if container:
        signs.append("inside a container")
    if signs and any("hypervisor" in s or "steal" in s for s in signs):
        return Finding("machine", "info", "virtual machine: RAPL is usually not exposed to guests", tuple(signs))
    return Finding("machine", "info", "no sign of a hypervisor" if not signs else "container", tuple(signs))


def diagnose(
    *,
    sysfs: Path,
    intensity: Intensity,
    proc: Path = Path("/proc"),
    reader: rapl.Reader = rapl.read_text,
    load_nvml: Callable[[], ModuleType] | None = None,
    cpu_watts: tuple[float, float] | None = None,
    container: bool | None = None,
    gpu: bool | None = None,
) -> list[Finding]:
    """Everything doctor reports, in order: cpu, dram, gpu, powercap notes, region, machine."""
    container = in_container() if container is None else container
    found, status = _powercap(sysfs, reader, proc, container)
    estimated = [d for d in ("cpu", "dram") if status.get(d) != "measured"]
    findings = [f for f in found if f.topic in ("cpu", "dram")]
    findings += [f for f in _estimate(proc, cpu_watts, estimated) if f.topic not in status]
    findings.sort(key=lambda f: ("cpu", "dram").index(f.topic))
    findings.append(_gpu(proc, load_nvml or nvml.load, gpu))
    findings += [f for f in found if f.topic == "powercap"]
    where = f"{intensity.region} {intensity.name or ''}".strip() if intensity.region else "fixed figure"
    findings.append(
        Finding(
            "region",
            "info",
            f"{where}: {intensity.g_per_kwh:g} g/kWh [{intensity.note or intensity.how}]",
            (f"{intensity.source}" + (f", {intensity.year}" if intensity.year else ""),),
        )
    )
    findings.append(_virtual(proc, container))
    return findings


def exit_status(findings: list[Finding]) -> int:
    """0 when every present domain is measured; 1 when any is estimated or unreadable."""
    bad = [f for f in findings if f.topic in DOMAINS and f.status in ("estimated", "unreadable")]
    return 1 if bad else 0


def as_json(findings: list[Finding]) -> dict[str, object]:
    return {
        "ok": exit_status(findings) == 0,
        "findings": [
            {
                "topic": f.topic,
                "status": f.status,
                "summary": f.summary,
                "details": list(f.details),
                "fix": list(f.fix),
            }
            for f in findings
        ],
    }


def as_text(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        lines.append(f"{f.topic:<9} {f.status:<11} {f.summary}")
        lines += [f"{'':<21} {d}" for d in f.details]
        if f.fix:
            lines.append(f"{'':<21} fix:")
            lines += [f"{'':<23} {c}" for c in f.fix]
    verdict = (
        "every present domain is measured"
        if exit_status(findings) == 0
        else ("some domains are estimated or unreadable (exit status 1)")
    )
    lines.append(f"\n{verdict}")
    return "\n".join(lines) + "\n"
