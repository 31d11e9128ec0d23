"""GPU measurement through the real entry point: the fake NVML is found first on PYTHONPATH as `pynvml`."""

from __future__ import annotations

import csv
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import clean_env, load_json
from tests.fakes import FAKE_NVML

# The wrapped command "opens the GPU": it adds its pid to the file the fake driver lists as compute
# processes, then works for a while and exits with the code it is given.
OPEN_GPU = "import os, sys, time; open(sys.argv[1], 'a').write(f'{os.getpid()}\\n'); time.sleep(float(sys.argv[2]))"


def _env(tmp_path: Path, devices: list[dict[str, Any]] | None, **extra: str) -> dict[str, str]:
    env = clean_env(FAKE_NVML_LOG=str(tmp_path / "nvml.log"), **extra)
    if devices is not None:
        (tmp_path / "nvml.json").write_text(json.dumps({"driver": "550.54.15", "devices": devices}))
        env["FAKE_NVML_CONFIG"] = str(tmp_path / "nvml.json")
        env["PYTHONPATH"] = f"{FAKE_NVML}{os.pathsep}{env['PYTHONPATH']}"
    return env


def _log(tmp_path: Path) -> list[tuple[str, float]]:
    path = tmp_path / "nvml.log"
    if not path.exists():
        return []
    return [(e, float(t)) for e, t in (line.split() for line in path.read_text().splitlines())]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_measured_gpus_in_every_output(cw, tmp_path: Path) -> None:
    pids = tmp_path / "gpu0.pids"
    foreign = os.getpid()  # pytest itself plays another user's job on GPU 0
    devices = [
        {
            "name": "NVIDIA H100 80GB HBM3",
            "energy_mj": 123_456_789,
            "watts": 200.0,
            "processes": [foreign],
            "pid_file": str(pids),
            "sm_util": {"*": 40},
            "mig": False,
        },
        {"name": "NVIDIA H100 80GB HBM3", "energy_mj": 5_000, "watts": 30.0, "mig": False},
    ]
    out = tmp_path / "out"
    r = cw(
        "--gpu", "-i", "0.1", "--region", "FR", "--label", "train",
        "-o", str(out / "run.json"), "-o", str(out / "run.csv"), "-o", str(out / "run.prom"),
        "--", sys.executable, "-c", OPEN_GPU, str(pids), "1.5",
        env=_env(tmp_path, devices),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    rec = load_json(out / "run.json")
    g0, g1 = rec["gpus"]
    duration = rec["duration_s"]
    # The fake's counters run at 200 W and 30 W from nvmlInit, which comes just before the launch.
    assert g0["energy_j"] == pytest.approx(200.0 * duration, rel=0.03)
    assert g1["energy_j"] == pytest.approx(30.0 * duration, rel=0.03)
    # GPU 0 is shared half and half by SM utilisation once the command has opened it; GPU 1 it never used.
    assert 0.35 * g0["energy_j"] <= g0["charged_j"] <= 0.5 * g0["energy_j"] * 1.01
    assert g1["charged_j"] == 0.0
    assert (g0["index"], g0["method"], g0["uuid"]) == (0, "energy counter", "GPU-00000000-0000-4000-8000-fakefakefake")
    assert rec["energy_j"]["gpu"] == pytest.approx(g0["charged_j"] + g1["charged_j"])
    assert rec["machine_energy_j"]["gpu"] == pytest.approx(g0["energy_j"] + g1["energy_j"])
    assert [s["name"] for s in rec["sensors"] if s["domain"] == "gpu"] == ["gpu0", "gpu1"]
    assert not [w for w in rec["warnings"] if "GPU" in w]
    # NVML opened once before the launch, shut down once after.
    log = _log(tmp_path)
    assert [e for e, _ in log] == ["init", "shutdown"]
    assert log[0][1] <= _epoch(rec["started_at"]) + 0.001 and log[1][1] >= _epoch(rec["ended_at"]) - 0.5
    text = r.stderr.decode()
    assert "GPU 0" in text and "GPU 1" in text and "energy counter" in text
    row = next(csv.DictReader((out / "run.csv").open()))
    assert float(row["energy_gpu_j"]) == pytest.approx(rec["energy_j"]["gpu"])
    assert row["method_gpu"] == "measured"
    prom = (out / "run.prom").read_text()
    assert 'carbonwrap_gpu_energy_joules{label="train",gpu="1",name="NVIDIA H100 80GB HBM3"' in prom
    assert 'carbonwrap_energy_joules{label="train",domain="gpu",scope="tree",method="measured"}' in prom


def test_a_gpu_lost_mid_run_keeps_the_record_and_the_status(cw, tmp_path: Path) -> None:
    pids = tmp_path / "gpu0.pids"
    devices = [{"name": "NVIDIA A100", "energy_mj": 0, "watts": 100.0, "pid_file": str(pids), "lost_after_s": 0.5}]
    out = tmp_path / "run.json"
    r = cw(
        "--gpu", "-i", "0.1", "-q", "-o", str(out), "--", sys.executable, "-c",
        OPEN_GPU + "; sys.exit(3)", str(pids), "1.2",
        env=_env(tmp_path, devices),
    )  # fmt: skip
    assert r.returncode == 3
    rec = load_json(out)
    g = rec["gpus"][0]
    assert "GPU is lost" in g["note"]
    assert 100.0 * 0.3 <= g["energy_j"] <= 100.0 * 0.65  # until the last read before it was lost
    assert any("gpu gpu0: unreadable at" in w and "GPU is lost" in w for w in rec["warnings"])
    assert [e for e, _ in _log(tmp_path)] == ["init", "shutdown"]


def test_pre_volta_gpu_through_the_cli(cw, tmp_path: Path) -> None:
    pids = tmp_path / "gpu0.pids"
    devices = [{"name": "Tesla P100-PCIE-16GB", "energy_mj": None, "watts": 40.0, "pid_file": str(pids)}]
    out = tmp_path / "run.json"
    r = cw(
        "--gpu", "-i", "0.1", "-q", "-o", str(out), "--", sys.executable, "-c", OPEN_GPU, str(pids), "0.8",
        env=_env(tmp_path, devices),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    rec = load_json(out)
    g = rec["gpus"][0]
    assert g["method"] == "integrated power"
    assert g["energy_j"] == pytest.approx(40.0 * rec["duration_s"], rel=0.01)


def test_no_gpu_never_opens_nvml(cw, tmp_path: Path) -> None:
    devices = [{"name": "NVIDIA H100 80GB HBM3", "energy_mj": 0, "watts": 300.0}]
    out = tmp_path / "run.json"
    r = cw("--no-gpu", "-q", "-o", str(out), "--", "true", env=_env(tmp_path, devices))
    assert r.returncode == 0
    rec = load_json(out)
    assert rec["gpus"] == [] and rec["energy_j"]["gpu"] is None
    assert _log(tmp_path) == []


@pytest.mark.skipif(os.path.exists("/proc/driver/nvidia/version"), reason="this machine has an NVIDIA driver")
def test_without_a_driver_pynvml_is_never_imported(cw, tmp_path: Path) -> None:
    # The fake pynvml is first on the path and writes a line when it is imported at all.
    devices = [{"name": "NVIDIA H100 80GB HBM3", "energy_mj": 0}]
    imported = tmp_path / "imported.log"
    env = _env(tmp_path, devices, FAKE_NVML_IMPORT_LOG=str(imported))
    r = cw("-q", "--gpu", "--", "true", env=env)  # the check itself: asked for, it is imported
    assert r.returncode == 0 and imported.read_text().startswith("import ")
    imported.unlink()
    (tmp_path / "nvml.log").unlink()
    out = tmp_path / "run.json"
    r = cw("-q", "-o", str(out), "--", "true", env=env)
    assert r.returncode == 0
    assert not imported.exists() and _log(tmp_path) == []
    rec = load_json(out)
    assert rec["gpus"] == [] and rec["energy_j"]["gpu"] is None
    assert not [w for w in rec["warnings"] if "GPU" in w]


def test_forced_gpu_with_the_real_library(cw, tmp_path: Path) -> None:
    """nvidia-ml-py itself: here it finds no libnvidia-ml and says why; on a GPU machine it measures."""
    out = tmp_path / "run.json"
    r = cw("--gpu", "-q", "-o", str(out), "--", "sh", "-c", "sleep 0.3; exit 4", env=_env(tmp_path, None))
    assert r.returncode == 4
    rec = load_json(out)
    if os.path.exists("/proc/driver/nvidia/version"):
        assert rec["gpus"] and rec["machine_energy_j"]["gpu"] > 0
        assert all(g["method"] in ("energy counter", "integrated power") for g in rec["gpus"])
    else:
        assert rec["gpus"] == [] and rec["energy_j"]["gpu"] is None
        assert any(w.startswith("GPU: NVML could not start (") and "libnvidia-ml.so.1" in w for w in rec["warnings"])
