"""A real Prometheus Pushgateway on a loopback port: the end-of-run push, periodic pushes, failures."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import CW, clean_env, require_real


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[str]:
    exe = require_real("prometheus-pushgateway")
    port = _free_port()
    # Debian's build persists to /var/lib/prometheus by default: each test gets a gateway of its own.
    args = [f"--web.listen-address=127.0.0.1:{port}", f"--persistence.file={tmp_path / 'pushgateway.data'}"]
    with (tmp_path / "pushgateway.log").open("wb") as log:
        proc = subprocess.Popen([exe, *args], stdout=subprocess.DEVNULL, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"{url}/-/ready", timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                pytest.fail("the Pushgateway did not start")
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


def _samples(url: str, name: str) -> list:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    return [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


def test_end_of_run_push_round_trip(cw, gateway: str, tmp_path: Path) -> None:
    rec = tmp_path / "r.json"
    r = cw(
        "-q",
        "--pushgateway",
        gateway,
        "--label",
        "nightly/etl",
        "--tag",
        "team=ml",
        "-o",
        str(rec),
        "--",
        "sh",
        "-c",
        "exit 3",
    )
    assert r.returncode == 3 and r.stderr == b""
    local = json.loads(rec.read_text())
    exit_codes = _samples(gateway, "carbonwrap_exit_code")
    assert len(exit_codes) == 1
    s = exit_codes[0]
    print("pushgateway sample:", s)
    assert s.value == 3
    assert s.labels["job"] == "carbonwrap" and s.labels["instance"] == local["host"]
    assert s.labels["label"] == "nightly/etl" and s.labels["team"] == "ml"
    co2 = _samples(gateway, "carbonwrap_co2e_grams")[0]
    assert co2.value == pytest.approx(local["co2e_g"])
    energy = {(x.labels["domain"], x.labels["scope"]): x.value for x in _samples(gateway, "carbonwrap_energy_joules")}
    assert energy[("total", "tree")] == pytest.approx(local["energy_j"]["total"])


def test_periodic_pushes_during_a_long_run(gateway: str, tmp_path: Path) -> None:
    p = subprocess.Popen(
        [
            *CW,
            "-q",
            "-i",
            "0.1",
            "--push-interval",
            "0.3",
            "--pushgateway",
            gateway,
            "--label",
            "long",
            "--",
            "sleep",
            "3",
        ],
        env=clean_env(),
        stderr=subprocess.PIPE,
    )
    seen = []
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline and not seen:
        seen = [s for s in _samples(gateway, "carbonwrap_duration_seconds") if s.labels.get("label") == "long"]
        time.sleep(0.1)
    mid_run = p.poll() is None
    assert seen and mid_run, "no push arrived while the command was still running"
    assert not _samples(gateway, "carbonwrap_exit_code")  # a running job has no exit code yet
    _, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert _samples(gateway, "carbonwrap_exit_code")[0].value == 0


def test_a_gateway_that_is_down_costs_one_warning_and_nothing_else(cw, tmp_path: Path) -> None:
    rec = tmp_path / "r.jsonl"
    url = f"http://ci-bot:s3cr3t-token@127.0.0.1:{_free_port()}"
    r = cw("-q", "--pushgateway", url, "-o", str(rec), "--", "sh", "-c", "exit 0")
    assert r.returncode == 0
    err = r.stderr.decode()
    assert err.count("\n") == 1 and "push failed" in err and "***@127.0.0.1" in err
    assert "s3cr3t" not in err and "ci-bot" not in err
    assert json.loads(rec.read_text())["exit_code"] == 0


class _Hang(http.server.BaseHTTPRequestHandler):
    def do_PUT(self) -> None:
        time.sleep(8)

    def log_message(self, *args: object) -> None:
        pass


class _Fail(http.server.BaseHTTPRequestHandler):
    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(500)
        self.end_headers()
        self.wfile.write(b"storage exploded")

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("handler", "expect"), [(_Hang, "timed out"), (_Fail, "HTTP 500")])
def test_slow_or_failing_gateway(cw, tmp_path: Path, handler: type, expect: str) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rec = tmp_path / "r.json"
        t = time.monotonic()
        r = cw(
            "-q",
            "--pushgateway",
            f"http://127.0.0.1:{server.server_port}",
            "-o",
            str(rec),
            "--",
            sys.executable,
            "-c",
            "raise SystemExit(7)",
        )
        took = time.monotonic() - t
    finally:
        server.shutdown()
    assert r.returncode == 7
    assert expect in r.stderr.decode() and r.stderr.decode().count("\n") == 1
    assert json.loads(rec.read_text())["exit_code"] == 7
    assert took < 7.5  # the 5 s timeout, not the server's 8 s


def test_bad_gateway_url_is_a_usage_error(cw) -> None:
    r = cw("--pushgateway", "ftp://x", "--", "true")
    assert r.returncode == 2 and b"http(s) URL" in r.stderr


def test_environment_variable_names_the_gateway(gateway: str) -> None:
    env = clean_env(CARBONWRAP_PUSHGATEWAY=gateway)
    r = subprocess.run([*CW, "-q", "--label", "fromenv", "--", "true"], env=env, capture_output=True, check=False)
    assert r.returncode == 0
    assert any(s.labels["label"] == "fromenv" for s in _samples(gateway, "carbonwrap_exit_code"))
    assert os.environ.get("CARBONWRAP_PUSHGATEWAY") is None
