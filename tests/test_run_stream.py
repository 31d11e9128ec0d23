"""A whole run through the real entry point with the stream's new consumers: marks and phases, --samples, the
HTML page, --grid live against the replay server, and the carbon-aware start."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from carbonwrap.grid.series import floor_to
from tests.conftest import CW, clean_env
from tests.replay import NESO_24H, NESO_24H_ASKED, NesoSeries, Replay, em_time, fixture, replay, shift_neso, wall

assert replay  # the fixture, imported for pytest
PY = sys.executable

PHASED = """
import subprocess, sys, time
from carbonwrap import mark

def burn(s):
    end = time.time() + s
    while time.time() < end:
        pass

mark("phase", "load")
burn(0.6)
mark("phase", "train")
for i in range(1, 4):
    burn(0.3)
    mark("progress", f"{i}/4")
subprocess.run([sys.executable, "-m", "carbonwrap", "mark", "phase", "eval"], check=True)
burn(0.3)
"""


def test_phases_from_both_helpers_sum_to_the_run(tmp_path: Path) -> None:
    rec, samples, page = tmp_path / "r.json", tmp_path / "s.csv", tmp_path / "r.html"
    script = tmp_path / "phased.py"
    script.write_text(PHASED)
    r = subprocess.run(
        [*CW, "-q", "-i", "0.2", "--samples", str(samples), "-o", str(rec), "-o", str(page), "--", PY, str(script)],
        capture_output=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(rec.read_text())
    names = [p["name"] for p in out["phases"]]
    assert names[-3:] == ["load", "train", "eval"] and set(names) <= {"main", "load", "train", "eval"}
    total = out["energy_j"]["total"]
    assert sum(p["energy_j"]["total"] for p in out["phases"]) == pytest.approx(total, rel=1e-9)
    assert sum(p["co2e_g"] for p in out["phases"]) == pytest.approx(out["co2e_g"], rel=1e-9)
    train = next(p for p in out["phases"] if p["name"] == "train")
    assert train["end_s"] - train["start_s"] == pytest.approx(0.9, abs=0.5)
    assert out["prediction"]["progress"] == 0.75 and out["prediction"]["predicted_energy_j"] > 0
    # The samples file: a row per interval, the run's id in the first, energy as the record's within 1 %.
    with samples.open() as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["run_id"] == out["id"]
    energy = sum(float(row[f"charged_w_{d}"] or 0) * float(row["dt_s"]) for row in rows for d in ("cpu", "dram", "gpu"))
    assert energy == pytest.approx(total, rel=0.01)
    assert {row["phase"] for row in rows} >= {"load", "train"}
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "train" in html


def test_marks_go_to_the_innermost_carbonwrap(tmp_path: Path) -> None:
    outer, inner = tmp_path / "outer.json", tmp_path / "inner.json"
    mark = "from carbonwrap import mark; mark('phase', 'deep')"
    r = subprocess.run(
        [*CW, "-q", "-o", str(outer), "--", *CW, "-q", "-o", str(inner), "--", PY, "-c", mark],
        capture_output=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    o, i = json.loads(outer.read_text()), json.loads(inner.read_text())
    assert [p["name"] for p in i["phases"]][-1] == "deep"
    assert [p["name"] for p in o["phases"]] == ["main"]
    assert i["parent_id"] == o["id"]  # the inner run knows it is nested


def _neso(server: Replay, t0: float) -> list[dict[str, Any]]:
    rows = shift_neso(fixture(NESO_24H)["data"], t0 - wall(NESO_24H_ASKED))
    server.routes["/intensity/"] = NesoSeries(rows).answer
    return rows


def test_grid_live_prices_the_run_with_the_replayed_series(replay: Replay, tmp_path: Path) -> None:
    # The recording is shifted so that the half hour now running is its first; every value is the recorded one.
    rows = _neso(replay, floor_to(time.time()) - 1800)
    rec = tmp_path / "r.json"
    env = clean_env(CARBONWRAP_NESO_URL=replay.url, XDG_CACHE_HOME=str(tmp_path / "cache"))
    r = subprocess.run(
        [*CW, "--region", "GB", "--grid", "live", "-o", str(rec), "--", "sleep", "0.5"],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(rec.read_text())
    it = out["intensity"]
    assert it["grid"] == "live" and it["provider"] == "NESO" and it["coverage"] == pytest.approx(1.0)
    now_row = next(row for row in rows if wall(row["from"]) <= time.time() - 1 < wall(row["to"]))
    assert it["g_per_kwh"] == pytest.approx(now_row["intensity"]["forecast"], rel=0.05)
    assert it["table_g_per_kwh"] != it["g_per_kwh"]
    assert out["co2e_g"] == pytest.approx(out["energy_j"]["total"] / 3.6e6 * it["g_per_kwh"], rel=1e-6)
    assert len(replay.paths("/intensity/")) == 1


def test_grid_live_hanging_provider_and_sigterm_after_the_exit(replay: Replay, tmp_path: Path) -> None:
    replay.routes["/intensity/"] = "hang"
    rec = tmp_path / "r.json"
    env = clean_env(CARBONWRAP_NESO_URL=replay.url, XDG_CACHE_HOME=str(tmp_path / "cache"))
    p = subprocess.Popen(
        [*CW, "-q", "--region", "GB", "--grid", "live", "-o", str(rec), "--", "true"],
        stderr=subprocess.PIPE,
        env=env,
    )
    end = time.monotonic() + 30
    while not replay.paths("/intensity/") and time.monotonic() < end:
        time.sleep(0.02)
    t = time.monotonic()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    took = time.monotonic() - t
    print(f"SIGTERM to exit with a hanging intensity provider: {took:.2f} s")
    assert p.returncode == 0, err
    assert took < 5
    out = json.loads(rec.read_text())
    assert out["intensity"]["grid"] == "live" and out["intensity"]["coverage"] == 0.0
    assert b"cut short by SIGTERM" in err


def _em_forecast(server: Replay, boundary_s: float) -> tuple[float, float]:
    """The recorded Electricity Maps forecast shifted so that a cleaner hour begins at `boundary_s`."""
    doc = fixture("electricitymaps/green-elephpant__forecast_DE_2023-05-02.json")
    rows = doc["forecast"]
    i = next(k for k in range(1, len(rows)) if rows[k]["carbonIntensity"] < rows[k - 1]["carbonIntensity"] - 5)
    by = boundary_s - wall(rows[i]["datetime"])
    for r in rows:
        r["datetime"] = em_time(wall(r["datetime"]) + by)
    server.routes["/v3/carbon-intensity/forecast"] = (200, json.dumps(doc).encode())
    return rows[i - 1]["carbonIntensity"], rows[i]["carbonIntensity"]


def test_start_within_waits_for_the_cleaner_hour(replay: Replay, tmp_path: Path) -> None:
    boundary = float(int(time.time()) + 5)  # the provider stamps whole seconds
    now_g, clean_g = _em_forecast(replay, boundary)
    rec, marker = tmp_path / "r.json", tmp_path / "ran"
    env = clean_env(
        CARBONWRAP_ELECTRICITYMAPS_URL=replay.url, ELECTRICITYMAPS_TOKEN="tok", XDG_CACHE_HOME=str(tmp_path / "c")
    )
    probe = (
        f"import os, time; open({str(marker)!r}, 'w')"
        ".write(str(time.time()) + ' ' + str('ELECTRICITYMAPS_TOKEN' in os.environ))"
    )
    r = subprocess.run(
        [*CW, "--region", "em:DE", "--start-within", "30s", "--expect", "2s", "-o", str(rec), "--", PY, "-c", probe],
        capture_output=True,
        env=env,
        timeout=90,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    started, token_seen = marker.read_text().split()
    assert float(started) >= boundary - 0.05  # not before the cleaner hour
    assert token_seen == "False"  # the token never reaches the command
    s = json.loads(rec.read_text())["schedule"]
    assert s["waited_s"] > 1 and s["expected_from"] == "flag" and s["expected_duration_s"] == 2
    assert s["forecast_now_g_per_kwh"] == now_g and s["forecast_chosen_g_per_kwh"] == clean_g
    assert b"tok" not in r.stderr


def test_a_signal_while_waiting_launches_nothing(replay: Replay, tmp_path: Path) -> None:
    _em_forecast(replay, time.time() + 120)
    marker = tmp_path / "ran"
    env = clean_env(
        CARBONWRAP_ELECTRICITYMAPS_URL=replay.url, ELECTRICITYMAPS_TOKEN="tok", XDG_CACHE_HOME=str(tmp_path / "c")
    )
    p = subprocess.Popen(
        [*CW, "--region", "em:DE", "--start-within", "10m", "--expect", "2s", "--", "touch", str(marker)],
        stderr=subprocess.PIPE,
        env=env,
    )
    assert p.stderr is not None
    line = p.stderr.readline()
    while line and b"forecast" not in line:
        line = p.stderr.readline()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 128 + signal.SIGTERM, err
    assert b"nothing was launched" in err
    assert not marker.exists()


def test_no_forecast_starts_at_once_with_one_warning(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    env = clean_env(CARBONWRAP_ELECTRICITYMAPS_URL="http://127.0.0.1:9", XDG_CACHE_HOME=str(tmp_path / "c"))
    env.pop("ELECTRICITYMAPS_TOKEN", None)
    r = subprocess.run(
        [*CW, "-q", "--region", "FR", "--start-within", "6h", "--", "touch", str(marker)],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0 and marker.exists()
    assert r.stderr.count(b"starting now") == 1, r.stderr


def test_doctor_checks_the_live_provider(replay: Replay, tmp_path: Path) -> None:
    rows = _neso(replay, floor_to(time.time()) - 1800)
    env = clean_env(CARBONWRAP_NESO_URL=replay.url, XDG_CACHE_HOME=str(tmp_path / "cache"))
    r = subprocess.run([*CW, "--region", "GB", "--grid", "live", "doctor"], capture_output=True, env=env, timeout=60)
    text = r.stdout.decode()
    assert "live intensity: NESO for GB answered in" in text, text
    assert any(f"{row['intensity']['forecast']} g/kWh" in text for row in rows)
    assert len(replay.paths("/intensity/")) == 1
    replay.routes["/intensity/"] = (500, b"{}")
    r = subprocess.run([*CW, "--region", "GB", "--grid", "live", "doctor"], capture_output=True, env=env, timeout=60)
    assert "runs fall back to the yearly table" in r.stdout.decode() and r.returncode == 1


def test_a_live_only_zone_is_priced_by_its_countrys_row_with_the_table(tmp_path: Path) -> None:
    rec = tmp_path / "r.json"
    for code in ("GB-13", "DK-DK1", "em:FR"):
        r = subprocess.run(
            [*CW, "-q", "--region", code, "-o", str(rec), "--", "true"], capture_output=True, env=clean_env()
        )
        assert r.returncode == 0, (code, r.stderr)
        assert json.loads(rec.read_text())["intensity"]["region"] == code.removeprefix("em:")[:2].upper(), code
