"""Records survive what users and processes hand carbonwrap: bytes that are not UTF-8, control characters,
non-finite numbers. Every output is written, as strict JSON / valid UTF-8, and valid against the schema."""

from __future__ import annotations

import csv
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

from prometheus_client.parser import text_string_to_metric_families

from carbonwrap import history
from carbonwrap.report import github
from carbonwrap.report.text import escape_control, sanitise
from tests.conftest import ROOT, clean_env
from tests.record_schema import strict_loads, validate

CW = [sys.executable.encode(), b"-m", b"carbonwrap"]


def _run(args: list[bytes], cwd: bytes, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    env = env or clean_env()
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([*CW, *args], cwd=cwd, env=env, capture_output=True, timeout=60, check=False)


def test_non_utf8_argument_cwd_and_label_reach_every_output(tmp_path: Path) -> None:
    # Before: UnicodeEncodeError in the .jsonl write stopped the loop: an empty .jsonl, no CSV/JSON, exit 0.
    where = os.fsencode(tmp_path) + b"/d\xe9j\xe0"
    os.mkdir(where)
    out = tmp_path / "out"
    step = tmp_path / "step.md"
    outputs = [out / "r.jsonl", out / "r.csv", out / "r.json", out / "r.prom"]
    args = [b"-q", *(b for p in outputs for b in (b"-o", os.fsencode(p)))]
    args += [b"--label", b"n\xffightly", b"--tag", b"k\xfe=v\xfd", b"--", b"echo", b"caf\xe9"]
    r = _run(args, cwd=where, env=clean_env(GITHUB_STEP_SUMMARY=str(step)))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"caf\xe9\n"  # the command got its bytes unchanged
    assert r.stderr == b""
    jl = strict_loads(outputs[0].read_bytes().decode("utf-8"))  # valid UTF-8, strict JSON
    one = validate(strict_loads(outputs[2].read_bytes().decode("utf-8")))
    assert jl == one
    assert one["command"] == ["echo", "caf\\xe9"] and one["label"] == "n\\xffightly"
    assert one["cwd"].endswith("/d\\xe9j\\xe0") and one["tags"]["k\\xfe"] == "v\\xfd"
    row = next(csv.DictReader(outputs[1].open(encoding="utf-8", newline="")))
    assert row["label"] == "n\\xffightly"
    families = {f.name for f in text_string_to_metric_families(outputs[3].read_bytes().decode("utf-8"))}
    assert "carbonwrap_co2e_grams" in families
    assert "n\\xffightly" in step.read_bytes().decode("utf-8")
    loaded = history.load([str(p) for p in outputs[:3]])
    assert loaded.problems == [] and len(loaded.runs) == 1 and loaded.duplicates == 2


class _Record(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, dict[str, str]]]] = []

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        _Record.seen.append((self.path, dict(self.headers)))
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_non_utf8_command_name_with_a_pushgateway_still_runs(tmp_path: Path) -> None:
    # Before: the Pushgateway path segment encoded the label strictly: exit 70, the command never ran.
    tool = os.fsencode(tmp_path) + b"/tool\xff"
    marker = tmp_path / "ran"
    with open(tool, "w") as f:
        f.write(f"#!/bin/sh\ntouch {marker}\n")
    os.chmod(tool, 0o755)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Record)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Record.seen = []
    try:
        url = f"http://127.0.0.1:{server.server_port}".encode()
        r = _run([b"-q", b"--pushgateway", url, b"--", tool], cwd=os.fsencode(tmp_path))
    finally:
        server.shutdown()
    assert r.returncode == 0, r.stderr
    assert marker.exists()
    assert len(_Record.seen) == 1
    path = _Record.seen[0][0]
    assert (
        path.isascii() and "tool%5Cxff" in path
    )  # the label as the record has it: backslashreplace, then percent-encoded


def test_sanitise_makes_any_record_strict_json() -> None:
    rec = {"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5], "c\udcff": "x\udcfe", "d": "\ud800"}
    text = json.dumps(sanitise(rec), allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")  # valid UTF-8
    assert strict_loads(text) == {"a": None, "b": [None, None, 1.5], "c\\xff": "x\\xfe", "d": "\\ud800"}


def test_escape_control_shows_every_control_character() -> None:
    assert escape_control("a\rb\nc\td\x1b[31me\x7f\x9b\u202eok") == "a\\rb\\nc\\td\\x1b[31me\\x7f\\x9b\\u202eok"
    assert escape_control("plain é 日本") == "plain é 日本"
    assert escape_control("bad\udcff") == "bad\\xff"


def test_step_summary_neutralises_carriage_returns_and_markup() -> None:
    # Before: the cell only replaced '\n': a '\r' started a new Markdown line on GitHub.
    rec = validate(json.loads(RECORD))
    rec["label"] = "evil\r| injected | row |\x1b[2J"
    rec["command"] = ["sh", "-c", "echo\r<img src=x>"]
    text = github.markdown(rec)
    assert "\r" not in text and "\x1b" not in text and "<img" not in text
    assert "evil\\r\\| injected \\| row \\|\\x1b[2J" in text
    body = [line for line in text.splitlines() if line.startswith("| ")]
    assert all(line.count(" | ") - line.count("\\| ") >= 1 for line in body)


RECORD = """{"schema": "carbonwrap.run/1", "id": "x", "parent_id": null, "label": "x", "command": ["true"],
 "cwd": "/", "host": "h", "started_at": "2026-11-01T00:00:00.000Z", "ended_at": "2026-11-01T00:00:01.000Z",
 "duration_s": 1.0, "exit_code": 0, "signal": null, "cpu_time_s": 0.1, "scope": "tree", "pue": 1.0,
 "energy_j": {"cpu": 1.0, "dram": null, "gpu": null, "total": 1.0},
 "machine_energy_j": {"cpu": 2.0, "dram": null, "gpu": null, "total": 2.0},
 "methods": {"cpu": "estimated", "dram": null, "gpu": null, "total": "estimated"}, "co2e_g": 0.01,
 "intensity": {"region": "FR", "name": "France", "g_per_kwh": 44.0, "year": 2024, "source": "s", "how": "flag",
 "note": ""}, "sensors": [{"domain": "cpu", "name": "estimate", "method": "estimated", "detail": "model"}],
 "gpus": [], "host_info": {"carbonwrap_version": "0", "python": "3", "kernel": "6", "cpu_model": null,
 "threads": 2, "memory_bytes": 1}, "warnings": [], "tags": {}, "baseline_w": {}, "budget": null}"""
