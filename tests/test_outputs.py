"""Records: exactly the SPEC.md section 5 fields, JSON/JSONL/CSV/Prometheus, locking, CSV injection."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from carbonwrap.report.record import CSV_COLUMNS
from carbonwrap.report.sinks import escape_cell, prometheus_text
from tests.conftest import CW, clean_env
from tests.record_schema import strict_loads, validate

SPEC_FIELDS = {
    "schema",
    "id",
    "label",
    "command",
    "cwd",
    "host",
    "started_at",
    "ended_at",
    "duration_s",
    "exit_code",
    "signal",
    "cpu_time_s",
    "scope",
    "pue",
    "energy_j",
    "machine_energy_j",
    "co2e_g",
    "intensity",
    "sensors",
    "gpus",
    "warnings",
    "tags",
}


def _record(cw, tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "r.json"
    r = cw("-q", "-o", str(out), *args)
    assert r.returncode == 0, r.stderr
    return validate(strict_loads(out.read_text()))


def test_json_record_has_every_spec_field(cw, tmp_path: Path) -> None:
    rec = _record(
        cw,
        tmp_path,
        "--tag",
        "team=ml",
        "--tag",
        "run=7",
        "--label",
        "nightly",
        "--region",
        "DE",
        "--",
        "sh",
        "-c",
        "exit 0",
    )
    assert set(rec) >= SPEC_FIELDS
    assert rec["schema"] == "carbonwrap.run/1"
    assert rec["label"] == "nightly" and rec["command"] == ["sh", "-c", "exit 0"]
    assert rec["tags"] == {"team": "ml", "run": "7"}
    assert rec["started_at"].endswith("Z") and rec["ended_at"].endswith("Z")
    assert set(rec["energy_j"]) == set(rec["machine_energy_j"]) == {"cpu", "dram", "gpu", "total"}
    assert rec["energy_j"]["gpu"] is None  # no GPU domain here: absent, not a measured 0
    assert set(rec["intensity"]) >= {"region", "g_per_kwh", "year", "source", "how"}
    assert rec["intensity"]["region"] == "DE" and rec["intensity"]["how"] == "flag"
    for s in rec["sensors"]:
        assert set(s) == {"domain", "name", "method", "detail"}
    assert rec["energy_j"]["total"] == pytest.approx(rec["energy_j"]["cpu"] + rec["energy_j"]["dram"])
    assert rec["co2e_g"] == pytest.approx(rec["energy_j"]["total"] / 3.6e6 * rec["intensity"]["g_per_kwh"])


def test_label_defaults_to_the_commands_basename(cw, tmp_path: Path) -> None:
    assert _record(cw, tmp_path, "--", "/bin/true")["label"] == "true"


def test_json_is_replaced_and_jsonl_appended(cw, tmp_path: Path) -> None:
    j, jl = tmp_path / "r.json", tmp_path / "r.jsonl"
    for code in (0, 3):
        cw("-q", "-o", str(j), "-o", str(jl), "--", "sh", "-c", f"exit {code}")
    assert json.loads(j.read_text())["exit_code"] == 3
    lines = jl.read_text().splitlines()
    assert [json.loads(x)["exit_code"] for x in lines] == [0, 3]
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_csv_has_one_header_and_escapes_formulas(cw, tmp_path: Path) -> None:
    out = tmp_path / "runs.csv"
    for label in ('=HYPERLINK("http://x")', "+1", "plain"):
        r = cw("-q", "-o", str(out), "--label", label, "--tag", "who=@evil", "--", "true")
        assert r.returncode == 0
    rows = list(csv.reader(out.open()))
    assert rows[0] == list(CSV_COLUMNS)
    assert len(rows) == 4
    labels = [r[CSV_COLUMNS.index("label")] for r in rows[1:]]
    assert labels == ['\'=HYPERLINK("http://x")', "'+1", "plain"]
    assert json.loads(rows[1][CSV_COLUMNS.index("tags")]) == {"who": "@evil"}  # a JSON object: '{' is no formula
    assert escape_cell("-2+3") == "'-2+3" and escape_cell("@SUM(A1)") == "'@SUM(A1)" and escape_cell(5) == 5


def test_twenty_concurrent_writers_leave_twenty_intact_records(tmp_path: Path) -> None:
    jl, c = tmp_path / "all.jsonl", tmp_path / "all.csv"
    procs = [
        subprocess.Popen(
            [*CW, "-q", "-o", str(jl), "-o", str(c), "--tag", f"n={i}", "--", "true"],
            env=clean_env(),
            stderr=subprocess.PIPE,
        )
        for i in range(20)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    recs = [validate(strict_loads(line)) for line in jl.read_text().splitlines()]
    assert sorted(int(r["tags"]["n"]) for r in recs) == list(range(20))
    rows = list(csv.reader(c.open()))
    assert rows[0] == list(CSV_COLUMNS) and len(rows) == 21
    assert sum(r == list(CSV_COLUMNS) for r in rows) == 1
    assert all(len(r) == len(CSV_COLUMNS) for r in rows)


def test_prometheus_textfile_parses_with_the_reference_parser(cw, tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    out = tmp_path / "job.prom"
    r = cw(
        "-q",
        "-o",
        str(out),
        "--label",
        'say "hi"\\n',
        "--tag",
        "team=ml",
        "--tag",
        "9bad-key=x",
        "--",
        "sh",
        "-c",
        "exit 4",
    )
    assert r.returncode == 4
    families = {f.name: f for f in text_string_to_metric_families(out.read_text())}
    assert set(families) == {
        "carbonwrap_energy_joules",
        "carbonwrap_co2e_grams",
        "carbonwrap_duration_seconds",
        "carbonwrap_cpu_seconds",
        "carbonwrap_exit_code",
        "carbonwrap_last_run_timestamp_seconds",
    }
    energy = {(s.labels["domain"], s.labels["scope"]): s.value for s in families["carbonwrap_energy_joules"].samples}
    assert {("cpu", "tree"), ("cpu", "machine"), ("total", "tree"), ("total", "machine")} <= set(energy)
    # This machine has no RAPL: every energy series and the CO2e say they are estimates.
    assert {x.labels["method"] for x in families["carbonwrap_energy_joules"].samples} == {"estimated"}
    assert families["carbonwrap_co2e_grams"].samples[0].labels["method"] == "estimated"
    exit_sample = families["carbonwrap_exit_code"].samples[0]
    assert exit_sample.value == 4
    assert exit_sample.labels["label"] == 'say "hi"\\n' and exit_sample.labels["team"] == "ml"
    assert exit_sample.labels["_9bad_key"] == "x"


def test_prometheus_text_in_machine_scope_has_no_duplicate_series() -> None:
    rec = {
        "label": "x",
        "tags": {},
        "scope": "machine",
        "co2e_g": 1.0,
        "duration_s": 1.0,
        "cpu_time_s": 1.0,
        "exit_code": 0,
        "ended_at": "2026-01-01T00:00:00.000Z",
        "sensors": [{"domain": "cpu", "name": "package-0", "method": "measured", "detail": "RAPL"}],
        "energy_j": {"cpu": 1.0, "dram": None, "gpu": None, "total": 1.0},
        "machine_energy_j": {"cpu": 1.0, "dram": None, "gpu": None, "total": 1.0},
    }
    text = prometheus_text(rec)
    assert text.count('carbonwrap_energy_joules{label="x",domain="cpu",scope="machine",method="measured"}') == 1
    assert 'carbonwrap_co2e_grams{label="x",method="measured"}' in text
    assert "dram" not in text


def test_python_dash_m_and_version(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "carbonwrap", "--version"], capture_output=True, env=clean_env(), check=False
    )
    assert r.returncode == 0 and b"carbonwrap" in r.stdout


def test_an_append_that_fails_midway_leaves_no_half_record(tmp_path: Path) -> None:
    import resource

    log = tmp_path / "runs.jsonl"
    subprocess.run([*CW, "-q", "-o", str(log), "--", "true"], env=clean_env(), check=True)
    before = log.read_bytes()
    limit = len(before) + 100  # room for 100 bytes of the next record: the write fails part way (EFBIG)

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    r = subprocess.run(
        [*CW, "-q", "-o", str(log), "--", "true"],
        env=clean_env(),
        preexec_fn=small_files,
        capture_output=True,
        check=False,
    )
    assert r.returncode == 1
    assert b"cannot write" in r.stderr and json.loads(r.stderr.decode().splitlines()[-1])["exit_code"] == 0
    assert log.read_bytes() == before  # cut back to the last whole record
