"""The fake libnvidia-ml.so.1 (fake_nvml.c): building it, configuring it, and the real nvidia-ml-py releases
the GPU tests load it through.

    python -m tests.fake_libnvml fetch     # download each binding in BINDINGS once into .ci/nvml-bindings/

A test builds the library with the session fixture in tests/test_gpu_lib.py, writes a config with
`write_config`, and runs carbonwrap with `env(...)`: LD_LIBRARY_PATH and the binding go only into the
child's environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SOURCE = HERE / "fake_nvml.c"
BINDINGS_DIR = ROOT / ".ci" / "nvml-bindings"
# The oldest nvidia-ml-py pyproject.toml allows, the first with throwOnVersionMismatch, and the newest; and
# 12.535.77, below the pin, whose 32-byte process entries are why the pin is there.
PINNED = "12.535.108"
BINDINGS = (PINNED, "12.550.52", "13.615.71")
BELOW_PIN = "12.535.77"
# Variants of the library: symbols a driver lacks cannot be configured away at run time.
VARIANTS = {"r550": [], "r470": ["-DFAKE_R470"]}


def build(out: Path, variant: str, cc: str = "cc") -> Path:
    """Compile the library as out/VARIANT/libnvidia-ml.so.1; returns its directory (for LD_LIBRARY_PATH)."""
    d = out / variant
    d.mkdir(parents=True, exist_ok=True)
    cmd = [cc, "-shared", "-fPIC", "-O1", "-Wall", "-Wl,-soname,libnvidia-ml.so.1", *VARIANTS[variant]]
    subprocess.run([*cmd, "-o", str(d / "libnvidia-ml.so.1"), str(SOURCE)], check=True, capture_output=True)
    return d


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, list | tuple):
        return " ".join(str(x) for x in v)
    return str(v)


def write_config(path: Path, devices: list[Mapping[str, Any]], **top: Any) -> Path:
    """The library's config: `top` keys (driver, fd_dir, proc_stride, util_sizing_count, ...) and per device
    the keys of fake_nvml.c, with sm={pid: percent} (pid 0: the rest), err={function: code} and
    bad_sample=(pid, value)."""
    lines = [f"{k} {_value(v)}" for k, v in top.items() if v is not None]
    for d in devices:
        lines.append("device")
        for k, v in d.items():
            if k == "sm":
                lines += [f"sm {pid} {pct}" for pid, pct in v.items()]
            elif k == "err":
                lines += [f"err {fn} {c}" for fn, c in v.items()]
            elif v is not None:
                lines.append(f"{k} {_value(v)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def env(base: dict[str, str], lib_dir: Path, config: Path, binding: Path) -> dict[str, str]:
    """A child's environment: the fake library first on LD_LIBRARY_PATH, the binding first on PYTHONPATH."""
    out = dict(base)
    out["LD_LIBRARY_PATH"] = f"{lib_dir}{os.pathsep}{base.get('LD_LIBRARY_PATH', '')}".rstrip(os.pathsep)
    out["PYTHONPATH"] = f"{binding}{os.pathsep}{base.get('PYTHONPATH', '')}"
    out["FAKE_LIBNVML_CONFIG"] = str(config)
    return out


def binding_dir(version: str) -> Path | None:
    """The directory holding nvidia-ml-py VERSION's pynvml.py (and its dist-info), if fetched."""
    d = BINDINGS_DIR / version
    return d if (d / "pynvml.py").exists() else None


def fetch(versions: tuple[str, ...] = (*BINDINGS, BELOW_PIN)) -> None:
    """Download each wheel once (pip download --no-deps) and extract it into BINDINGS_DIR/VERSION."""
    for v in versions:
        if binding_dir(v):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"nvidia-ml-py=={v}", "-d", tmp]
            subprocess.run(pip, check=True)
            (wheel,) = Path(tmp).glob("*.whl")
            with zipfile.ZipFile(wheel) as z:
                z.extractall(BINDINGS_DIR / v)
        print(f"nvidia-ml-py {v} -> {BINDINGS_DIR / v}")


def profile_config(probe: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """(variant, devices, top keys) for write_config from `scripts/gpu_check.py --probe` output: a real
    driver's answers become a personality of the fake library."""
    variant = "r550" if probe["symbols"].get("nvmlDeviceGetComputeRunningProcesses_v3", True) else "r470"
    top: dict[str, Any] = {"driver": probe["environment"]["driver"]}
    devices = []
    for d in probe["devices"]:
        dev: dict[str, Any] = {"name": d["name"], "mig": d["mig"] if isinstance(d["mig"], int) else -1}
        if d.get("util_period_ms"):
            dev["util_period_ms"] = d["util_period_ms"]
        devices.append(dev)
        if d.get("process_sizing", {}).get("second_pid_at") == [32]:
            top["proc_stride"] = 32
        if d["util_sizing"]["count"] >= 100:
            top["util_sizing_count"] = d["util_sizing"]["count"]
    return variant, devices, top
