"""Carbon and energy budgets, the GitHub job summary, and tags read from CI and scheduler environments."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carbonwrap import envtags
from carbonwrap.budget import ENERGY_J, MASS_G, Budget, parse_amount
from tests.conftest import CW, clean_env

# IDLE = MAX: the modelled machine draws threads x 10 W whatever the load, so budgets pass at known times.
FIXED = ["--cpu-watts", "10:10", "--scope", "machine", "-i", "0.1"]


def test_amounts() -> None:
    assert parse_amount("500mg", MASS_G) == pytest.approx(0.5)
    assert parse_amount("1.5kg", MASS_G) == 1500.0
    assert parse_amount("2kWh", ENERGY_J) == 7.2e6
    assert parse_amount("50 Wh", ENERGY_J) == 180000.0
    for bad in ("12", "3 parsecs", "kg", "-1g"):
        with pytest.raises(ValueError, match=r"needs a number and a unit|unknown unit"):
            parse_amount(bad, MASS_G)
    b = Budget(max_co2e_g=1.0, max_energy_j=100.0)
    assert b.exceeded(50.0, 0.5) is None
    assert "energy budget passed" in (b.exceeded(150.0, 0.5) or "")
    assert "carbon budget passed" in (b.exceeded(50.0, 2.0) or "")


def test_warn_prints_a_line_and_keeps_the_status(cw, tmp_path: Path) -> None:
    rec = tmp_path / "r.json"
    r = cw("-q", *FIXED, "--max-energy", "1J", "-o", str(rec), "--", "sleep", "0.5")
    assert r.returncode == 0
    assert r.stderr.decode().count("energy budget passed") == 1
    assert json.loads(rec.read_text())["budget"]["exceeded"].startswith("energy budget passed")


def test_fail_exits_3_only_when_the_command_succeeded(cw, tmp_path: Path) -> None:
    rec = tmp_path / "r.json"
    r = cw("-q", *FIXED, "--max-energy", "1J", "--on-budget", "fail", "-o", str(rec), "--", "sleep", "0.3")
    assert r.returncode == 3
    r = cw("-q", *FIXED, "--max-energy", "1J", "--on-budget", "fail", "--", "sh", "-c", "sleep 0.3; exit 5")
    assert r.returncode == 5
    r = cw("-q", *FIXED, "--max-energy", "1kWh", "--on-budget", "fail", "--", "sleep", "0.3")
    assert r.returncode == 0


def test_kill_stops_the_command_and_the_record_says_why(cw, tmp_path: Path) -> None:
    rec = tmp_path / "r.json"
    t = time.monotonic()
    r = cw("-q", *FIXED, "--max-energy", "5J", "--on-budget", "kill", "-o", str(rec), "--", "sleep", "30")
    assert time.monotonic() - t < 10
    assert r.returncode == -signal.SIGTERM  # carbonwrap dies by the command's signal
    out = json.loads(rec.read_text())
    assert out["signal"] == signal.SIGTERM
    assert any("sent SIGTERM to the command's 1 process(es) (--on-budget kill)" in w for w in out["warnings"])


def test_kill_follows_with_sigkill_after_ten_seconds(cw, tmp_path: Path) -> None:
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    rec = tmp_path / "r.json"
    r = cw(
        "-q",
        *FIXED,
        "--max-energy",
        "20J",  # about a second in: the command has long set SIGTERM to ignored by then
        "--on-budget",
        "kill",
        "-o",
        str(rec),
        "--",
        sys.executable,
        "-c",
        stubborn,
        timeout=40,
    )
    assert r.returncode == -signal.SIGKILL
    out = json.loads(rec.read_text())
    assert 10 <= out["duration_s"] < 14
    assert any("sent SIGKILL" in w for w in out["warnings"])


def test_bad_budget_values(cw) -> None:
    for args in (["--max-co2e", "12"], ["--max-energy", "5 parsecs"], ["--on-budget", "panic"]):
        r = cw(*args, "--", "true")
        assert r.returncode == 2 and len(r.stderr.decode().strip().splitlines()) == 1, args


def test_github_step_summary(cw, tmp_path: Path) -> None:
    summary = tmp_path / "step.md"
    summary.write_text("earlier step\n")
    r = cw(
        "-q", "--region", "FR", "--label", "unit|tests", "--", "true", env=clean_env(GITHUB_STEP_SUMMARY=str(summary))
    )
    assert r.returncode == 0
    text = summary.read_text()
    assert text.startswith("earlier step\n### carbonwrap: unit\\|tests")
    assert "| CO2e |" in text and "| region | FR France" in text
    r = cw("-q", "--no-step-summary", "--", "true", env=clean_env(GITHUB_STEP_SUMMARY=str(summary)))
    assert summary.read_text() == text


def test_tags_from_ci_environments_and_user_tags_win(cw, tmp_path: Path) -> None:
    rec = tmp_path / "r.json"
    env = clean_env(
        GITHUB_WORKFLOW="ci",
        GITHUB_JOB="test",
        GITHUB_RUN_ID="42",
        GITHUB_SHA="abc123",
        SLURM_JOB_ID="9001",
        SLURMD_NODENAME="node7",
    )
    r = cw("-q", "-o", str(rec), "--tag", "github_job=mine", "--", "true", env=env)
    assert r.returncode == 0
    tags = json.loads(rec.read_text())["tags"]
    assert tags == {
        "github_workflow": "ci",
        "github_job": "mine",
        "github_run_id": "42",
        "github_sha": "abc123",
        "slurm_job_id": "9001",
        "slurm_node": "node7",
    }


def test_kubernetes_and_gitlab_tags(tmp_path: Path) -> None:
    ns = tmp_path / "namespace"
    ns.write_text("batch\n")
    env = {
        "KUBERNETES_SERVICE_HOST": "10.0.0.1",
        "HOSTNAME": "train-7f9c",
        "CI_PIPELINE_ID": "77",
        "CI_JOB_ID": "88",
        "CI_JOB_NAME": "bench",
    }
    assert envtags.from_environment(env, ns) == {
        "gitlab_pipeline_id": "77",
        "gitlab_job_id": "88",
        "gitlab_job_name": "bench",
        "k8s_pod": "train-7f9c",
        "k8s_namespace": "batch",
    }
    assert envtags.from_environment({"HOSTNAME": "laptop"}, ns) == {}


def _records(tmp_path: Path, n_hosts: int = 3) -> list[Path]:
    """Real records from real runs, then copied as if from several hosts and days."""
    base = tmp_path / "base.jsonl"
    for label, team in (("train", "a"), ("eval", "b"), ("train", "b")):
        subprocess.run(
            [
                *CW,
                "-q",
                "--region",
                "FR",
                "--label",
                label,
                "--tag",
                f"team={team}",
                "-o",
                str(base),
                "-o",
                str(tmp_path / "base.csv"),
                "--",
                "sh",
                "-c",
                "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done",
            ],
            env=clean_env(),
            check=True,
        )
    recs = [json.loads(line) for line in base.read_text().splitlines()]
    files = []
    for h in range(n_hosts):
        f = tmp_path / f"host{h}.jsonl"
        with f.open("w") as out:
            for day, r in enumerate(recs):
                out.write(
                    json.dumps(
                        {
                            **r,
                            "id": f"{r['id']}-{h}",  # another host's run, not a copy of the same run
                            "host": f"host{h}",
                            "started_at": f"2026-11-{10 + day:02d}T08:00:00.000Z",
                        }
                    )
                    + "\n"
                )
        files.append(f)
    return files


def test_report_groups_and_totals(cw, tmp_path: Path) -> None:
    files = _records(tmp_path)
    (tmp_path / "host0.jsonl").open("a").write('{"schema": "other"}\nnot json at all\n\n')
    r = cw("report", *map(str, files), "--by", "label", "--format", "json")
    assert r.returncode == 0, r.stderr
    groups = {g["group"]: g for g in json.loads(r.stdout)["groups"]}
    assert groups["train"]["runs"] == 6 and groups["eval"]["runs"] == 3
    assert groups["train"]["mean_g_per_kwh"] == pytest.approx(44.18)
    assert groups["train"]["energy_gpu_j"] is None
    assert groups["train"]["estimated_runs"] == 6  # this machine has no RAPL: every run is an estimate
    assert b"skipped 2 malformed line(s)" in r.stderr and b"Traceback" not in r.stderr
    r = cw("report", *map(str, files), "--by", "tag:team", "--format", "csv")
    rows = r.stdout.decode().splitlines()
    assert rows[0].startswith("group,runs,") and len(rows) == 3 + 1  # two teams, then the grand total
    r = cw("report", *map(str, files), "--by", "day", "--since", "2026-11-11", "--format", "markdown")
    lines = r.stdout.decode().splitlines()
    assert lines[0].startswith("| day (UTC) | scope | runs |") and len(lines) == 2 + 2 + 1  # days 11, 12, total
    r = cw("report", *map(str, files), "--by", "host")
    assert r.returncode == 0 and all(f"host{h}" in r.stdout.decode() for h in range(3))


def test_report_reads_csv_too(cw, tmp_path: Path) -> None:
    _records(tmp_path, n_hosts=1)
    r = cw("report", str(tmp_path / "base.csv"), "--format", "json")
    groups = {g["group"]: g for g in json.loads(r.stdout)["groups"]}
    assert groups["train"]["runs"] == 2 and groups["eval"]["runs"] == 1
    assert groups["train"]["estimated_runs"] == 2


def test_report_bad_input(cw, tmp_path: Path) -> None:
    assert cw("report").returncode == 2
    assert cw("report", str(tmp_path / "missing.jsonl")).returncode == 2
    f = tmp_path / "x.jsonl"
    f.write_text("")
    r = cw("report", str(f), "--by", "colour")
    assert r.returncode == 2 and b"label, host, day, month, region, scope or tag:KEY" in r.stderr
    r = cw("report", str(f), "--since", "yesterday")
    assert r.returncode == 2 and b"not a date" in r.stderr
