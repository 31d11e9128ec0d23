"""`carbonwrap when` through the real entry point, against the replay server; the new wrap options' checks."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

from carbonwrap.grid.series import floor_to
from tests.conftest import clean_env, cw
from tests.replay import NESO_24H, NESO_24H_ASKED, NesoSeries, Replay, fixture, replay, shift_neso, wall

assert replay and cw
Run = Callable[..., subprocess.CompletedProcess[bytes]]


def serve(server: Replay) -> None:
    rows = shift_neso(fixture(NESO_24H)["data"], floor_to(time.time()) - wall(NESO_24H_ASKED))
    server.routes["/intensity/"] = NesoSeries(rows).answer


def env(server: Replay, tmp_path: Any) -> dict[str, str]:
    return clean_env(CARBONWRAP_NESO_URL=server.url, XDG_CACHE_HOME=str(tmp_path))


def test_when_json_and_formats(cw: Run, replay: Replay, tmp_path: Any) -> None:
    serve(replay)
    e = env(replay, tmp_path)
    r = cw("when", "-r", "GB", "--within", "12h", "--expect", "2h", "--format", "json", env=e)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) >= {"start", "end", "g_per_kwh", "now_g_per_kwh", "saving", "provider", "candidates"}
    assert doc["provider"] == "NESO" and doc["saving"] > 0.4
    assert min(c["g_per_kwh"] for c in doc["candidates"]) == doc["g_per_kwh"]
    assert wall(doc["end"]) - wall(doc["start"]) == 7200
    unix = cw("when", "-r", "GB", "--within", "12h", "--expect", "2h", "--format", "unix", env=e)
    assert int(unix.stdout) == round(wall(doc["start"]))
    at = cw("when", "-r", "GB", "--within", "12h", "--expect", "2h", "--format", "at", env=e)
    assert at.stdout.decode().strip() == time.strftime("%Y%m%d%H%M", time.gmtime(int(unix.stdout)))  # TZ=UTC
    text = cw("when", "-r", "GB", "--within", "12h", "--expect", "2h", env=e)
    assert b"g/kWh" in text.stdout and b"NESO GB" in text.stdout
    assert len(replay.paths()) == 1  # four answers from one request: the cache


def test_when_region_from_env_and_default_expect(cw: Run, replay: Replay, tmp_path: Any) -> None:
    serve(replay)
    e = {**env(replay, tmp_path), "CARBONWRAP_REGION": "GB"}
    r = cw("when", "--finish-by", "2099-01-01T00:00Z", "--format", "iso", env=e)
    assert r.returncode == 0, r.stderr
    assert b"1 h" in r.stderr and r.stdout.decode().strip().endswith("+00:00")


def test_when_no_forecast_exits_1(cw: Run, replay: Replay, tmp_path: Any) -> None:
    replay.routes["/intensity/"] = (503, b"")
    r = cw("when", "-r", "GB", "--within", "6h", env=env(replay, tmp_path))
    assert r.returncode == 1 and r.stdout == b""
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "HTTP 503" in lines[0] and "Traceback" not in lines[0]


def test_when_usage_errors_exit_2(cw: Run, tmp_path: Any) -> None:
    e = clean_env(XDG_CACHE_HOME=str(tmp_path))
    for args in (["-r", "GB"], ["-r", "GB", "--within", "nan"], ["--within", "6h", "--format", "cron"]):
        r = cw("when", *args, env=e)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.decode().strip().splitlines()) == 1


def test_wrap_options_are_checked_before_launch(cw: Run, tmp_path: Any) -> None:
    marker = tmp_path / "ran"
    for args in (["--grid", "hourly"], ["--start-within", "inf"], ["--finish-by", "25:99"], ["--expect", "soon"]):
        r = cw(*args, "--", "touch", str(marker), env=clean_env())
        assert r.returncode == 2, (args, r.stderr)
        assert not marker.exists()
    r = cw("--", "when", env=clean_env())  # a program called 'when' is still wrapped
    assert r.returncode == 127


def test_wrap_options_reach_run_options(monkeypatch: Any) -> None:
    from carbonwrap.cli import wrap
    from carbonwrap.cli.params import run_options

    monkeypatch.setenv("CARBONWRAP_GRID", "live")
    args = ["--region", "GB", "--start-within", "1.5h", "--expect", "auto", "--finish-by", "2099-01-01T00:00Z"]
    params = wrap.main([*args, "true"], standalone_mode=False, auto_envvar_prefix="CARBONWRAP")
    opts = run_options(params, ["true"])
    assert (opts.grid, opts.start_within_s, opts.expect_s) == ("live", 5400.0, None)
    assert opts.finish_by_s == wall("2099-01-01T00:00Z")
    params = wrap.main(["--expect", "90m", "true"], standalone_mode=False, auto_envvar_prefix="CARBONWRAP")
    assert run_options(params, ["true"]).expect_s == 5400.0
