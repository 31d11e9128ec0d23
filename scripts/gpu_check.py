#!/usr/bin/env python3
"""Check carbonwrap's GPU energy against the GPUs' own counters, and its overhead, on a machine with GPUs.

    python scripts/gpu_check.py                       # ~30 s of PyTorch fp16 matrix multiplies
    python scripts/gpu_check.py --workload sleep      # no PyTorch: an idle GPU, for the plumbing

1. Reads every GPU's nvmlDeviceGetTotalEnergyConsumption (mJ) in this process, runs the workload under
   `carbonwrap --scope machine`, reads the counters again, and sets the record's per-GPU energy beside the
   counters' difference. The counters bracket carbonwrap's own start and end too, so they run a little
   longer than the record's interval; the table gives both durations.
2. Overhead: the same fixed amount of work run directly and under carbonwrap, alternating, --repeats times
   each; the workload times itself, and the medians are compared.

Prints a Markdown table; a JSON copy goes to bench-out/gpu_check.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WORKLOAD = r"""
import json, sys, time
kind, mode, amount = sys.argv[1], sys.argv[2], float(sys.argv[3])
t0 = time.perf_counter()
n = 0
if kind == "torch":
    import torch
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    while (time.perf_counter() - t0 < amount) if mode == "seconds" else (n < amount):
        for _ in range(10):
            c = a @ b
        torch.cuda.synchronize()
        n += 10
else:
    while (time.perf_counter() - t0 < amount) if mode == "seconds" else (n < amount):
        time.sleep(0.01)
        n += 1
print(json.dumps({"iterations": n, "seconds": time.perf_counter() - t0}))
"""


def counters(nvml: Any) -> list[float]:
    """Every GPU's energy counter in joules."""
    return [
        nvml.nvmlDeviceGetTotalEnergyConsumption(nvml.nvmlDeviceGetHandleByIndex(i)) / 1000.0
        for i in range(nvml.nvmlDeviceGetCount())
    ]


def _text(v: object) -> str:
    """Older nvidia-ml-py releases return names as bytes."""
    return v.decode() if isinstance(v, bytes) else str(v)


def workload(kind: str, mode: str, amount: float) -> list[str]:
    return [sys.executable, "-c", WORKLOAD, kind, mode, str(amount)]


def timed(cmd: list[str]) -> dict[str, float]:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=("torch", "sleep"), default="torch")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the measured run")
    ap.add_argument("--repeats", type=int, default=3, help="runs each, direct and wrapped, for the overhead")
    ap.add_argument("--carbonwrap", default=f"{sys.executable} -m carbonwrap", help="how to call carbonwrap")
    ap.add_argument("--out", type=Path, default=Path("bench-out/gpu_check.json"))
    args = ap.parse_args()
    import pynvml as nvml

    cw = args.carbonwrap.split()
    nvml.nvmlInit()
    try:
        names = [
            _text(nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(i))) for i in range(nvml.nvmlDeviceGetCount())
        ]
        with tempfile.TemporaryDirectory() as tmp:
            record = Path(tmp) / "run.json"
            before, t0 = counters(nvml), time.monotonic()
            run = subprocess.run(
                [*cw, "--scope", "machine", "--gpu", "-q", "-o", str(record), "--",
                 *workload(args.workload, "seconds", args.seconds)],
                check=False, capture_output=True, text=True,
            )  # fmt: skip
            after, bracket_s = counters(nvml), time.monotonic() - t0
            if run.returncode != 0 or not record.exists():
                print(f"carbonwrap failed ({run.returncode}): {run.stderr.strip()}", file=sys.stderr)
                return 1
            rec = json.loads(record.read_text())
    finally:
        nvml.nvmlShutdown()
    work = json.loads(run.stdout.strip().splitlines()[-1])
    rows = []
    for g in rec["gpus"]:
        i = g["index"]
        delta = after[i] - before[i]
        rows.append(
            {
                "gpu": i,
                "name": names[i],
                "carbonwrap_j": g["energy_j"],
                "counter_j": delta,
                "ratio": g["energy_j"] / delta if delta else None,
                "method": g["method"],
            }
        )
    # Overhead: a fixed amount of work, timed by the workload itself, direct and wrapped in turn.
    amount = max(1.0, work["iterations"] * min(1.0, 10.0 / max(work["seconds"], 1e-9)))  # about 10 s each
    direct, wrapped = [], []
    for _ in range(args.repeats):
        direct.append(timed(workload(args.workload, "iterations", amount))["seconds"])
        wrapped.append(timed([*cw, "-q", "--", *workload(args.workload, "iterations", amount)])["seconds"])
    d, w = statistics.median(direct), statistics.median(wrapped)
    result = {
        "workload": args.workload,
        "record_duration_s": rec["duration_s"],
        "bracket_s": bracket_s,
        "gpus": rows,
        "total_carbonwrap_j": rec["machine_energy_j"]["gpu"],
        "total_counter_j": sum(after) - sum(before),
        "overhead": {"iterations": amount, "direct_s": direct, "wrapped_s": wrapped, "ratio": w / d if d else None},
        "warnings": rec["warnings"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"workload {args.workload}: record {rec['duration_s']:.2f} s, counters bracket {bracket_s:.2f} s\n")
    print("| GPU | carbonwrap (J) | device counter (J) | ratio | method |")
    print("|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['ratio']:.4f}" if r["ratio"] is not None else "n/a"
        print(f"| {r['gpu']} {r['name']} | {r['carbonwrap_j']:.1f} | {r['counter_j']:.1f} | {ratio} | {r['method']} |")
    print(f"\noverhead: {amount:.0f} iterations, median {d:.3f} s direct vs {w:.3f} s wrapped ({w / d - 1:+.2%})")
    for warning in rec["warnings"]:
        print(f"warning: {warning}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
