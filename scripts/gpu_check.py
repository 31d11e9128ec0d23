#!/usr/bin/env python3
"""Check carbonwrap's GPU energy for accuracy on a machine with NVIDIA GPUs; or dump the driver's answers.

    python scripts/gpu_check.py                    # PyTorch fp16 matmuls on every GPU, ~20 s per scenario
    python scripts/gpu_check.py --workload sleep   # no PyTorch: idle GPUs, for the plumbing
    python scripts/gpu_check.py --probe            # raw driver answers as JSON, loadable as a fake driver profile

Accuracy, per GPU: a sandwich. The workload reads each GPU's energy counter itself after CUDA init and just
before it exits (inner); this script reads them before starting carbonwrap and after it exits (outer); so
inner <= carbonwrap <= outer must hold. An independent reference integrates the instant power field at 20 Hz
in a thread over the outer bracket; node power comes from `ipmitool dcmi power reading` where it answers.
Scenarios run with --scope tree: one worker per GPU; only the last GPU (CUDA_VISIBLE_DEVICES); a foreign
process on GPU 0 beside the command's worker; and -i 0.1. The output (JSON and a Markdown table) carries the
environment: driver, binding version and path, persistence mode, MIG, container, foreign processes.
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from carbonwrap.sensors import nvml as cw_nvml
from carbonwrap.sensors.gpu import procfs

# The workload: one process per GPU in its list; it reads the counters itself after CUDA init and at the end.
WORKLOAD = r"""
import json, os, sys, time
kind, seconds, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
import pynvml as n
n.nvmlInit()
handles = [n.nvmlDeviceGetHandleByIndex(i) for i in range(n.nvmlDeviceGetCount())]
# The fake driver lists the pids written to GPU_CHECK_PID_FILE, "{gpu}" replaced by the GPU's index.
pid_file = os.environ.get("GPU_CHECK_PID_FILE", "").replace("{gpu}", os.environ.get("CUDA_VISIBLE_DEVICES", "0"))
if pid_file:
    open(pid_file, "a").write(f"{os.getpid()}\n")
if kind == "torch":
    import torch
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = a.clone()
    torch.cuda.synchronize()
inner = [n.nvmlDeviceGetTotalEnergyConsumption(h) for h in handles]
t0 = time.perf_counter()
while time.perf_counter() - t0 < seconds:
    if kind == "torch":
        for _ in range(10):
            c = a @ b
        torch.cuda.synchronize()
    else:
        time.sleep(0.01)
end = [n.nvmlDeviceGetTotalEnergyConsumption(h) for h in handles]
open(out, "w").write(json.dumps({"j": [(e - s) / 1000 for s, e in zip(inner, end)]}))
if pid_file:  # gone from the fake driver's list as from a real one's
    import fcntl
    with open(pid_file, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        rest = [p for p in f.read().split() if p != str(os.getpid())]
        f.seek(0)
        f.truncate()
        f.write("".join(p + "\n" for p in rest))
"""


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _try(f: Any, *a: Any) -> Any:
    try:
        return f(*a)
    except Exception as e:
        return f"error: {e or type(e).__name__}"


def environment(n: Any) -> dict[str, Any]:
    gpus = []
    for i in range(n.nvmlDeviceGetCount()):
        h = n.nvmlDeviceGetHandleByIndex(i)
        procs = _try(lambda h=h: [int(p.pid) for p in n.nvmlDeviceGetComputeRunningProcesses(h)])
        gpus.append(
            {
                "index": i,
                "name": _text(n.nvmlDeviceGetName(h)),
                "persistence": _try(n.nvmlDeviceGetPersistenceMode, h),
                "mig": _try(lambda h=h: n.nvmlDeviceGetMigMode(h)[0]),
                "foreign_processes": procs,
            }
        )
    container = Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()
    return {
        "driver": _text(n.nvmlSystemGetDriverVersion()),
        "binding": cw_nvml.binding(n),
        "container": container,
        "python": sys.version.split()[0],
        "gpus": gpus,
    }


def counters_j(n: Any) -> list[float]:
    return [
        n.nvmlDeviceGetTotalEnergyConsumption(n.nvmlDeviceGetHandleByIndex(i)) / 1000.0
        for i in range(n.nvmlDeviceGetCount())
    ]


class PowerIntegrator(threading.Thread):
    """Integrates each GPU's instant power (field 186, else nvmlDeviceGetPowerUsage) at 20 Hz."""

    def __init__(self, n: Any) -> None:
        super().__init__(daemon=True)
        self.n, self.stop, self.j = n, threading.Event(), [0.0] * n.nvmlDeviceGetCount()

    def watts(self, i: int) -> float:
        h = self.n.nvmlDeviceGetHandleByIndex(i)
        try:
            v = self.n.nvmlDeviceGetFieldValues(h, [186])[0]
            if v.nvmlReturn == 0:
                return float(v.value.uiVal) / 1000.0
        except Exception:
            pass
        return float(self.n.nvmlDeviceGetPowerUsage(h)) / 1000.0

    def run(self) -> None:
        last = time.monotonic()
        while not self.stop.wait(0.05):
            now = time.monotonic()
            for i in range(len(self.j)):
                self.j[i] += self.watts(i) * (now - last)
            last = now


def ipmi_w() -> float | None:
    if not shutil.which("ipmitool"):
        return None
    out = _try(lambda: subprocess.run(["ipmitool", "dcmi", "power", "reading"], capture_output=True, text=True).stdout)
    for line in str(out).splitlines():
        if "Instantaneous power reading" in line:
            return float(line.split(":")[1].split()[0])
    return None


def scenario(n: Any, args: argparse.Namespace, name: str, gpus: list[int], extra: list[str], foreign: bool) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    env = dict(os.environ)
    if gpus != list(range(n.nvmlDeviceGetCount())):
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    code = shlex.quote(WORKLOAD)
    workers = " ".join(
        f"CUDA_VISIBLE_DEVICES={g} {sys.executable} -c {code} {args.workload} {args.seconds} {tmp}/w{g} &" for g in gpus
    )
    other = None
    if foreign:  # another user's job on GPU 0, started outside carbonwrap
        fenv = {**env, "CUDA_VISIBLE_DEVICES": "0"}
        cmd = [sys.executable, "-c", WORKLOAD, args.workload, str(args.seconds + 4), str(tmp / "foreign")]
        other = subprocess.Popen(cmd, env=fenv)
        time.sleep(2)
    power = PowerIntegrator(n)
    ipmi_before, before = ipmi_w(), counters_j(n)
    power.start()
    cw = [*args.carbonwrap.split(), "--gpu", "-q", "--scope", "tree", *extra, "-o", str(tmp / "run.json")]
    r = subprocess.run([*cw, "--", "sh", "-c", f"{workers} wait"], env=env, capture_output=True, text=True)
    after = counters_j(n)
    power.stop.set()
    power.join()
    if other is not None:
        other.wait()
    if r.returncode != 0 or not (tmp / "run.json").exists():
        return {"scenario": name, "error": f"carbonwrap exited {r.returncode}: {r.stderr.strip()[-500:]}"}
    rec = json.loads((tmp / "run.json").read_text())
    rows = []
    for g in rec["gpus"]:
        i = g["index"]
        inner_path = tmp / f"w{i}"
        inner = json.loads(inner_path.read_text())["j"][i] if inner_path.exists() else None
        outer = after[i] - before[i]
        ok = None if inner is None else inner <= g["energy_j"] + 1e-3 and g["energy_j"] <= outer + 1e-3
        rows.append(
            {
                "gpu": i,
                "inner_j": inner,
                "carbonwrap_j": g["energy_j"],
                "outer_j": outer,
                "instant_power_j": power.j[i],
                "charged_j": g["charged_j"],
                "share": g["charged_j"] / g["energy_j"] if g["energy_j"] else None,
                "sandwich_ok": ok,
                "note": g["note"],
            }
        )
    return {
        "scenario": name,
        "gpus": rows,
        "node_power_w": {"before": ipmi_before, "after": ipmi_w()},
        "duration_s": rec["duration_s"],
        "warnings": rec["warnings"],
    }


def probe(n: Any, seconds: float) -> dict[str, Any]:
    """The driver's raw answers, in the form tests/fake_libnvml.profile_config reads."""
    lib = n.nvmlLib
    names = [
        "nvmlInitWithFlags", "nvmlDeviceGetCount_v2", "nvmlDeviceGetHandleByIndex_v2",
        "nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetFieldValues", "nvmlDeviceGetProcessUtilization",
        "nvmlDeviceGetComputeRunningProcesses_v2", "nvmlDeviceGetComputeRunningProcesses_v3",
        "nvmlDeviceGetGraphicsRunningProcesses_v3", "nvmlDeviceGetMPSComputeRunningProcesses_v3",
        "nvmlDeviceGetMigMode",
    ]  # fmt: skip
    symbols = {s: hasattr(lib, s) for s in names}
    devices = []
    for i in range(n.nvmlDeviceGetCount()):
        h = n.nvmlDeviceGetHandleByIndex(i)
        d: dict[str, Any] = {"index": i, "name": _text(n.nvmlDeviceGetName(h)), "latency_us": {}}
        for call, fn in (
            ("energy", lambda h=h: n.nvmlDeviceGetTotalEnergyConsumption(h)),
            ("power", lambda h=h: n.nvmlDeviceGetPowerUsage(h)),
            ("processes", lambda h=h: n.nvmlDeviceGetComputeRunningProcesses(h)),
        ):
            t = time.perf_counter()
            d[call] = _try(fn)
            d["latency_us"][call] = (time.perf_counter() - t) * 1e6
        d["processes"] = [int(p.pid) for p in d["processes"]] if isinstance(d["processes"], list) else d["processes"]
        d["mig"] = _try(lambda h=h: n.nvmlDeviceGetMigMode(h)[0])
        # Sizing counts and the stride of a process entry, from raw calls into the library.
        count = ctypes.c_uint(0)
        if symbols["nvmlDeviceGetComputeRunningProcesses_v3"]:
            rc = lib.nvmlDeviceGetComputeRunningProcesses_v3(h, ctypes.byref(count), None)
            buf = (ctypes.c_ubyte * (64 * (count.value + 2)))()
            count2 = ctypes.c_uint(count.value + 2)
            rc2 = lib.nvmlDeviceGetComputeRunningProcesses_v3(h, ctypes.byref(count2), buf)
            pids = set(d["processes"]) if isinstance(d["processes"], list) else set()
            offsets = [o for o in range(4, 64, 4) if int.from_bytes(bytes(buf[o : o + 4]), "little") in pids]
            d["process_sizing"] = {"rc": rc, "count": count.value, "fill_rc": rc2, "second_pid_at": offsets[:1]}
        ucount = ctypes.c_uint(0)
        urc = lib.nvmlDeviceGetProcessUtilization(h, None, ctypes.byref(ucount), ctypes.c_ulonglong(0))
        d["util_sizing"] = {"rc": urc, "count": ucount.value}
        stamps: list[list[int]] = []
        last, t_end = 0, time.monotonic() + seconds
        while time.monotonic() < t_end:  # 10 Hz, as carbonwrap at -i 0.1
            got = _try(n.nvmlDeviceGetProcessUtilization, h, last)
            if isinstance(got, list):
                stamps.append(sorted({int(s.timeStamp) for s in got}))
                last = max([last, *(int(s.timeStamp) for s in got)])
                d.setdefault("sm_max", 0)
                d["sm_max"] = max([d["sm_max"], *(int(s.smUtil) for s in got)])
            time.sleep(0.1)
        flat = sorted({t for s in stamps for t in s})
        gaps = [b - a for a, b in itertools.pairwise(flat)]
        d["util_period_ms"] = round(sorted(gaps)[len(gaps) // 2] / 1000) if gaps else None
        d["util_reads_without_sample"] = sum(1 for s in stamps if not s)
        d["util_timestamps_us"] = stamps
        devices.append(d)
    sensor = cw_nvml.NvmlSensor(n)  # carbonwrap's own path: nvmlInit, then close-on-exec
    mine = procfs.nvidia_fds()
    child = subprocess.run(
        [sys.executable, "-c", "import json,sys; sys.path[:0]=sys.argv[1:]; from carbonwrap.sensors.gpu import "
         "procfs; print(json.dumps(procfs.nvidia_fds()))", str(Path(__file__).resolve().parent.parent)],
        capture_output=True, text=True, close_fds=False,
    )  # fmt: skip
    sensor.close()
    fds = {"carbonwrap": mine, "child": json.loads(child.stdout or "{}")}
    return {"probe": 1, "environment": environment(n), "symbols": symbols, "devices": devices, "fds": fds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=("torch", "sleep"), default="torch")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each scenario's workload")
    ap.add_argument("--carbonwrap", default=f"{sys.executable} -m carbonwrap", help="how to call carbonwrap")
    ap.add_argument("--probe", action="store_true", help="dump the driver's raw answers instead")
    ap.add_argument("--probe-seconds", type=float, default=10.0)
    ap.add_argument("--scenarios", default="per-gpu,last-gpu,foreign,fast", help="comma-separated")
    ap.add_argument("--out", type=Path, default=Path("bench-out/gpu_check.json"))
    args = ap.parse_args()
    n = cw_nvml.load()
    n.nvmlInit()
    try:
        if args.probe:
            result: dict[str, Any] = probe(n, args.probe_seconds)
        else:
            count = n.nvmlDeviceGetCount()
            every = list(range(count))
            plan = {
                "per-gpu": (every, [], False),
                "last-gpu": ([count - 1], [], False),
                "foreign": ([0], [], True),
                "fast": (every, ["-i", "0.1"], False),
            }
            runs = [scenario(n, args, s, *plan[s]) for s in args.scenarios.split(",")]
            result = {"environment": environment(n), "workload": args.workload, "scenarios": runs}
    finally:
        n.nvmlShutdown()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.probe:
        print(f"probe written to {args.out}")
        return 0
    env = result["environment"]
    print(f"driver {env['driver']}, {env['binding']}, container {env['container']}\n")
    print("| scenario | GPU | inner (J) | carbonwrap (J) | outer (J) | instant power (J) | share | sandwich |")
    print("|---|---|---|---|---|---|---|---|")
    bad = 0
    for s in result["scenarios"]:
        if "error" in s:
            print(f"| {s['scenario']} | error: {s['error']} |")
            bad += 1
            continue
        for g in s["gpus"]:
            inner = "n/a" if g["inner_j"] is None else f"{g['inner_j']:.1f}"
            share = "n/a" if g["share"] is None else f"{g['share']:.3f}"
            mark = {True: "ok", False: "FAIL", None: "-"}[g["sandwich_ok"]]
            bad += g["sandwich_ok"] is False
            print(
                f"| {s['scenario']} | {g['gpu']} | {inner} | {g['carbonwrap_j']:.1f} | {g['outer_j']:.1f} "
                f"| {g['instant_power_j']:.1f} | {share} | {mark} |"
            )
    return 1 if bad else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
