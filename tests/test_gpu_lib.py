"""GPU measurement through the REAL nvidia-ml-py, at several releases, on the fake libnvidia-ml.so.1.

Each driver personality is a config of tests/fake_libnvml/fake_nvml.c; carbonwrap runs as a subprocess with
the library first on LD_LIBRARY_PATH and one binding release first on PYTHONPATH (fetched by
`python -m tests.fake_libnvml fetch`; .ci/run does it). The wrapped command plays a CUDA program: it adds its
pid to the file the fake driver lists, may hold the device node open, and records what it inherited.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import fake_libnvml as fl
from tests.conftest import clean_env, load_json, require_real

FOREIGN = os.getpid()  # pytest plays another user's job on the GPU: a live pid that is not in the tree

CHILD = r"""
import os, sys, time
pids, node, inherited, seconds = sys.argv[1:5]
links = []
for fd in os.listdir("/proc/self/fd"):
    try:
        links.append(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        pass
open(inherited, "w").write("\n".join(l for l in links if "/dev/nvidia" in l))
held = open(node, "a") if node != "-" else None  # as CUDA holds /dev/nvidiaN
open(pids, "a").write(f"{os.getpid()}\n")
time.sleep(float(seconds))
"""


@pytest.fixture(scope="session")
def libnvml(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The fake library, compiled once per variant."""
    cc = require_real("cc")
    out = tmp_path_factory.mktemp("libnvml")
    return {v: fl.build(out, v, cc) for v in fl.VARIANTS}


def _binding(version: str) -> Path:
    d = fl.binding_dir(version)
    if d is None:  # once per version and checkout: pip download from the package index, then cached
        with contextlib.suppress(subprocess.CalledProcessError, OSError, ValueError):
            fl.fetch((version,))
        d = fl.binding_dir(version)
    if d is None:
        msg = f"nvidia-ml-py {version} could not be fetched: run 'python -m tests.fake_libnvml fetch'"
        if os.environ.get("CARBONWRAP_REQUIRE_REAL") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return d


@pytest.fixture(params=fl.BINDINGS)
def binding(request: pytest.FixtureRequest) -> Path:
    return _binding(str(request.param))


Run = Callable[..., tuple[Any, dict[str, Any]]]


@pytest.fixture
def run(cw: Any, tmp_path: Path, libnvml: dict[str, Path]) -> Run:
    """run(binding, devices, variant=, args=, seconds=, hold=, **top) -> (completed process, record)."""

    def go(
        binding: Path,
        devices: list[dict[str, Any]],
        variant: str = "r550",
        args: tuple[str, ...] = ("-i", "0.1"),
        seconds: float = 1.5,
        hold: bool = False,
        extra_path: Path | None = None,
        **top: Any,
    ) -> tuple[Any, dict[str, Any]]:
        dev = tmp_path / "dev"
        dev.mkdir(exist_ok=True)
        top.setdefault("driver", "550.54.15")
        top.setdefault("fd_dir", str(dev))
        top.setdefault("log", str(tmp_path / "nvml.log"))
        config = fl.write_config(tmp_path / "libnvml.conf", devices, **top)
        env = fl.env(clean_env(), libnvml[variant], config, binding)
        if extra_path is not None:
            env["PYTHONPATH"] = f"{extra_path}{os.pathsep}{env['PYTHONPATH']}"
        node = str(dev / "nvidia0") if hold else "-"
        out = tmp_path / "run.json"
        child = [sys.executable, "-c", CHILD, str(tmp_path / "pids"), node, str(tmp_path / "inherited"), str(seconds)]
        r = cw("--gpu", "-q", *args, "-o", str(out), "--", *child, env=env)
        rec = load_json(out) if out.exists() else {}
        return r, rec

    return go


def _share(rec: dict[str, Any], i: int = 0) -> float:
    g = rec["gpus"][i]
    return float(g["charged_j"]) / float(g["energy_j"])


def _pids(tmp_path: Path) -> str:
    return str(tmp_path / "pids")


def _shared(tmp_path: Path, **kw: Any) -> dict[str, Any]:
    """A device used by the command and by FOREIGN, the command at 25 % SM and FOREIGN at 75 %."""
    d: dict[str, Any] = {"energy_mj": 1_000, "watts": 200.0, "procs": [FOREIGN], "pid_file": _pids(tmp_path)}
    d["sm"] = {FOREIGN: 75, 0: 25}
    d.update(kw)
    return d


def test_r550_default_measures_and_records_the_binding(run: Run, binding: Path, tmp_path: Path) -> None:
    devices = [
        {"energy_mj": 123_456_789, "watts": 200.0, "procs": [FOREIGN], "pid_file": _pids(tmp_path), "sm": {0: 40}},
        {"energy_mj": 5_000, "watts": 30.0, "mig": 0},
    ]
    r, rec = run(binding, devices)
    assert r.returncode == 0, r.stderr.decode()
    g0, g1 = rec["gpus"]
    assert g0["energy_j"] == pytest.approx(200.0 * rec["duration_s"], rel=0.03)
    assert g1["energy_j"] == pytest.approx(30.0 * rec["duration_s"], rel=0.03)
    assert 0.35 <= _share(rec) <= 0.505 and g1["charged_j"] == 0.0
    version = binding.name
    detail = [s["detail"] for s in rec["sensors"] if s["domain"] == "gpu"]
    assert all(f"nvidia-ml-py {version} ({binding / 'pynvml.py'})" in d for d in detail), detail
    assert not [w for w in rec["warnings"] if "GPU" in w]
    log = (tmp_path / "nvml.log").read_text().split()
    assert log[0::2] == ["init", "shutdown"]


def test_nvml_descriptors_are_not_inherited_by_the_command(run: Run, binding: Path, tmp_path: Path) -> None:
    r, _ = run(binding, [_shared(tmp_path)], seconds=0.3)
    assert r.returncode == 0, r.stderr.decode()
    assert (tmp_path / "dev" / "nvidiactl").exists()  # the fake library opened it (and dev/nvidia0) in carbonwrap
    assert (tmp_path / "inherited").read_text() == ""


def test_r470_without_v3_process_calls(run: Run, binding: Path, tmp_path: Path) -> None:
    r, rec = run(binding, [_shared(tmp_path, sm={FOREIGN: 50, 0: 50})], variant="r470", driver="470.256.02")
    assert r.returncode == 0, r.stderr.decode()
    assert 0.35 <= _share(rec) <= 0.505
    assert rec["gpus"][0]["note"] == ""


def test_early_r535_32_byte_process_entries(run: Run, binding: Path, tmp_path: Path) -> None:
    # An idle GPU (no SM activity): the equal split among its processes decides.
    r, rec = run(binding, [_shared(tmp_path, sm={0: 0})], driver="535.54.03", proc_stride=32)
    assert r.returncode == 0, r.stderr.decode()
    assert 0.35 <= _share(rec) <= 0.505
    assert any("process list is impossible" in w for w in rec["warnings"])


def test_a_binding_below_the_pin_reads_garbage_pids_and_says_so(run: Run, tmp_path: Path) -> None:
    # nvidia-ml-py 12.535.77 reads 32-byte entries from a driver that writes 24.
    r, rec = run(_binding(fl.BELOW_PIN), [_shared(tmp_path, sm={0: 0})])
    assert r.returncode == 0, r.stderr.decode()
    assert 0.35 <= _share(rec) <= 0.505
    assert any("process list is impossible" in w and ">= 12.535.108" in w for w in rec["warnings"])


def test_mig_without_privileges_charges_by_holders_without_carbonwrap(run: Run, binding: Path, tmp_path: Path) -> None:
    denied = {"nvmlDeviceGetComputeRunningProcesses": 4, "nvmlDeviceGetGraphicsRunningProcesses": 4}
    device = {"name": "NVIDIA A100-SXM4-40GB", "energy_mj": 0, "watts": 100.0, "mig": 1, "err": denied}
    r, rec = run(binding, [{**device, "util_period_ms": 0}], hold=True)
    assert r.returncode == 0, r.stderr.decode()
    # carbonwrap holds the node too (NVML's descriptor), but only the command is a user.
    assert _share(rec) >= 0.75  # 0 until the command has opened the node, then 1
    assert any("MIG mode" in w for w in rec["warnings"])


def test_container_with_host_pids(run: Run, binding: Path, tmp_path: Path) -> None:
    device = _shared(tmp_path, pid_offset=1_000_000, sm={0: 50})
    r, rec = run(binding, [device], hold=True)
    assert r.returncode == 0, r.stderr.decode()
    assert 0.35 <= _share(rec) <= 0.505
    assert any("own PID namespace" in w for w in rec["warnings"])


def test_mps_shares_among_the_clients(run: Run, binding: Path, tmp_path: Path) -> None:
    # The compute list shows only the MPS server (a live pid here); its clients are the command and another.
    device = {"energy_mj": 0, "watts": 200.0, "procs": [FOREIGN], "mps_procs": [os.getppid()], "sm": {0: 60}}
    r, rec = run(binding, [{**device, "mps_pid_file": _pids(tmp_path)}])
    assert r.returncode == 0, r.stderr.decode()
    assert 0.35 <= _share(rec) <= 0.505
    assert any("MPS" in w for w in rec["warnings"])


def test_utilisation_sampled_slower_than_the_interval(run: Run, binding: Path, tmp_path: Path) -> None:
    # The driver samples every 0.5 s; carbonwrap reads every 0.1 s: most reads find no fresh sample.
    # This driver answers SUCCESS with no samples there, which the binding raises as an error.
    r, rec = run(binding, [_shared(tmp_path, util_period_ms=500)], seconds=2.5, util_empty_success=1)
    assert r.returncode == 0, r.stderr.decode()
    # 0.25 once sampled; until the first sample that names the command, an equal split (0.5) stands in.
    assert 0.15 <= _share(rec) <= 0.33


def test_a_sizing_count_of_100(run: Run, binding: Path, tmp_path: Path) -> None:
    r, rec = run(binding, [_shared(tmp_path)], util_sizing_count=100)
    assert r.returncode == 0, r.stderr.decode()
    assert 0.15 <= _share(rec) <= 0.26


def test_out_of_range_samples_are_left_out(run: Run, binding: Path, tmp_path: Path) -> None:
    r, rec = run(binding, [_shared(tmp_path, bad_sample=(FOREIGN, 5000))])
    assert r.returncode == 0, r.stderr.decode()
    assert 0.15 <= _share(rec) <= 0.26
    assert any("above 100 %" in w for w in rec["warnings"])


def test_a_sample_arriving_between_sizing_and_fill_is_retried(run: Run, binding: Path, tmp_path: Path) -> None:
    r, rec = run(binding, [_shared(tmp_path)], util_grow=1)
    assert r.returncode == 0, r.stderr.decode()
    assert 0.15 <= _share(rec) <= 0.26


def test_driver_upgraded_without_reboot_gives_the_fix(run: Run, binding: Path, tmp_path: Path) -> None:
    r, rec = run(binding, [_shared(tmp_path)], init_error=18, seconds=0.2)
    assert r.returncode == 0, r.stderr.decode()
    assert rec["gpus"] == []
    assert any("GPU: NVML could not start" in w and "reboot" in w for w in rec["warnings"]), rec["warnings"]


def test_gh200_says_the_counter_covers_the_module(run: Run, binding: Path, tmp_path: Path) -> None:
    r, rec = run(binding, [_shared(tmp_path, name="NVIDIA GH200 480GB")], seconds=0.3)
    assert r.returncode == 0, r.stderr.decode()
    assert "whole Grace Hopper module" in rec["gpus"][0]["note"]
    assert any("whole Grace Hopper module" in s["detail"] for s in rec["sensors"] if s["domain"] == "gpu")


def test_the_deprecated_pynvml_package_warning_stays_off_stderr(run: Run, binding: Path, tmp_path: Path) -> None:
    # pynvml 13.x, the deprecated package installed beside nvidia-ml-py, warns on import and serves the binding.
    pkg = tmp_path / "site" / "pynvml"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "import warnings\n"
        "warnings.warn('The pynvml package is deprecated. Please install nvidia-ml-py instead.', FutureWarning)\n"
        f"exec(compile(open({str(binding / 'pynvml.py')!r}).read(), __file__, 'exec'))\n"
    )
    r, rec = run(binding, [_shared(tmp_path)], seconds=0.3, extra_path=tmp_path / "site", args=())
    assert r.returncode == 0, r.stderr.decode()
    assert rec["gpus"] and rec["gpus"][0]["method"] == "energy counter"
    assert "FutureWarning" not in r.stderr.decode() and "deprecated" not in r.stderr.decode()


def test_config_writer_round_trip(tmp_path: Path) -> None:
    path = fl.write_config(tmp_path / "c", [{"procs": [1, 2], "sm": {0: 5}, "err": {"f": 3}}], driver="1")
    assert path.read_text().split("\n") == ["driver 1", "device", "procs 1 2", "sm 0 5", "err f 3", ""]


GPU_CHECK = fl.ROOT / "scripts" / "gpu_check.py"


def _gpu_check(tmp_path: Path, libnvml: dict[str, Path], binding: Path, devices: list[dict[str, Any]], *args: str):
    (tmp_path / "dev").mkdir(exist_ok=True)
    config = fl.write_config(tmp_path / "libnvml.conf", devices, driver="550.54.15", fd_dir=str(tmp_path / "dev"))
    env = fl.env(clean_env(), libnvml["r550"], config, binding)
    env["GPU_CHECK_PID_FILE"] = str(tmp_path / "pids.{gpu}")
    out = tmp_path / "check.json"
    cmd = [sys.executable, str(GPU_CHECK), "--workload", "sleep", "--out", str(out), *args]
    r = subprocess.run(cmd, env=env, capture_output=True, timeout=180, check=False)
    return r, (json.loads(out.read_text()) if out.exists() else {})


def test_gpu_check_accuracy_scenarios_on_the_fake(tmp_path: Path, libnvml: dict[str, Path]) -> None:
    binding = _binding(fl.BINDINGS[-1])
    devices = [
        {"energy_mj": 0, "watts": 120.0, "pid_file": str(tmp_path / "pids.0"), "sm": {0: 50}},
        {"energy_mj": 0, "watts": 80.0, "pid_file": str(tmp_path / "pids.1"), "sm": {0: 50}},
    ]
    r, result = _gpu_check(tmp_path, libnvml, binding, devices, "--seconds", "1")
    assert r.returncode == 0, r.stderr.decode() + r.stdout.decode()
    env = result["environment"]
    assert env["driver"] == "550.54.15" and f"nvidia-ml-py {binding.name}" in env["binding"]
    names = [s["scenario"] for s in result["scenarios"]]
    assert names == ["per-gpu", "last-gpu", "foreign", "fast"]
    for s in result["scenarios"]:
        # inner <= carbonwrap <= outer on every GPU a worker ran on (last-gpu: GPU 1 only; foreign: GPU 0).
        ran = {"last-gpu": [None, True], "foreign": [True, None]}.get(s["scenario"], [True, True])
        assert [g["sandwich_ok"] for g in s["gpus"]] == ran, s
        for g, watts in zip(s["gpus"], (120.0, 80.0), strict=True):
            # The 20 Hz integral of instant power brackets the same interval as the outer counters.
            assert g["instant_power_j"] == pytest.approx(g["outer_j"], rel=0.2)
            assert g["carbonwrap_j"] == pytest.approx(watts * s["duration_s"], rel=0.05)
    shares = {s["scenario"]: [g["share"] for g in s["gpus"]] for s in result["scenarios"]}
    # Tree scope: each GPU is the command's alone, but for the start-up before a worker is listed; with a
    # foreign process at the same SM utilisation on GPU 0, half of it; a GPU nothing ran on, nothing.
    assert all(x >= 0.6 for x in shares["per-gpu"] + shares["fast"]), shares
    assert 0.25 <= shares["foreign"][0] <= 0.55 and shares["foreign"][1] == 0.0, shares
    assert shares["last-gpu"][0] == 0.0 and shares["last-gpu"][1] >= 0.6, shares
    last = next(s for s in result["scenarios"] if s["scenario"] == "last-gpu")
    assert last["gpus"][0]["inner_j"] is None and last["gpus"][1]["inner_j"] > 0
    assert "| per-gpu | 0 |" in r.stdout.decode()


def test_gpu_check_probe_becomes_a_driver_profile(tmp_path: Path, libnvml: dict[str, Path], run: Run) -> None:
    binding = _binding(fl.BINDINGS[-1])
    devices = [{"energy_mj": 0, "watts": 50.0, "procs": [FOREIGN, os.getppid()], "util_period_ms": 200, "mig": 0}]
    r, probe = _gpu_check(tmp_path, libnvml, binding, devices, "--probe", "--probe-seconds", "1.5")
    assert r.returncode == 0, r.stderr.decode()
    d = probe["devices"][0]
    assert probe["symbols"]["nvmlDeviceGetComputeRunningProcesses_v3"] is True
    assert d["process_sizing"]["count"] == 2 and d["process_sizing"]["second_pid_at"] == [24]
    assert d["util_period_ms"] == 200 and d["processes"] == [FOREIGN, os.getppid()]
    # NVML's descriptors in carbonwrap are close-on-exec, and the child inherited none.
    assert probe["fds"]["carbonwrap"] and all(probe["fds"]["carbonwrap"].values())
    assert probe["fds"]["child"] == {}
    variant, profile, top = fl.profile_config(probe)
    assert (variant, top["driver"], profile[0]["util_period_ms"]) == ("r550", "550.54.15", 200)
    profile[0].update(_shared(tmp_path))
    r, rec = run(binding, profile, variant=variant, **top)
    assert r.returncode == 0, r.stderr.decode()
    assert 0.15 <= _share(rec) <= 0.33
