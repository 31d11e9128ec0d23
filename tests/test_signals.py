"""Signals: Ctrl-C in a real terminal reaches the command once; kill aimed at carbonwrap is forwarded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import CW, clean_env
from tests.ptys import read_until, start_on_terminal

PY = sys.executable

# The command counts the signals it gets, says READY once its handlers are in place, and exits with the
# count after a quiet second, so a signal delivered twice would show.
COUNTER = r"""
import signal, sys, time
got = []
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
    signal.signal(s, lambda n, f: got.append(n))
print("READY", flush=True)
deadline = time.monotonic() + 20
while not got and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(1.0)
print("GOT", [signal.Signals(n).name for n in got], flush=True)
sys.exit(len(got))
"""


def test_ctrl_c_in_a_terminal_interrupts_the_command_exactly_once(tmp_path: Path) -> None:
    rec = tmp_path / "r.json"
    p, master = start_on_terminal([*CW, "-q", "-o", str(rec), "--", PY, "-c", COUNTER], clean_env())
    try:
        assert b"READY" in read_until(master, b"READY")
        os.write(master, b"\x03")  # the line discipline sends SIGINT to the foreground process group
        out = read_until(master, b"GOT [")
        out += read_until(master, b"]")
        assert p.wait(timeout=20) == 1, out
        assert b"GOT ['SIGINT']" in out
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
    r = json.loads(rec.read_text())
    assert r["exit_code"] == 1
    assert not any("forwarded to the command" in w for w in r["warnings"])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGUSR1])
def test_a_signal_sent_to_carbonwrap_alone_is_forwarded_once(tmp_path: Path, sig: signal.Signals) -> None:
    rec = tmp_path / "r.json"
    p = subprocess.Popen(
        [*CW, "-q", "-o", str(rec), "--", PY, "-c", COUNTER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    assert p.stdout is not None
    assert p.stdout.readline() == b"READY\n"
    os.kill(p.pid, sig)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 1, err
    assert out == f"GOT ['{sig.name}']\n".encode()
    r = json.loads(rec.read_text())
    assert f"forwarded to the command: {sig.name}" in r["warnings"]


def test_sigterm_that_kills_the_command_still_gives_summary_and_record(tmp_path: Path) -> None:
    rec = tmp_path / "r.csv"
    p = subprocess.Popen(
        [*CW, "-o", str(rec), "--", PY, "-c", "print('READY', flush=True); import time; time.sleep(30)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    assert p.stdout is not None and p.stdout.readline() == b"READY\n"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=20)
    assert p.returncode == -signal.SIGTERM  # carbonwrap ends by the command's signal
    assert b"killed by signal 15" in err
    lines = rec.read_text().splitlines()
    assert len(lines) == 2 and ",143,15," in lines[1]


def test_ctrl_c_during_the_baseline_launches_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "launched"
    # A shell starts background jobs with SIGINT ignored, and carbonwrap rightly keeps what it inherits;
    # give it the default, as a terminal would, whatever started this test run.
    p = subprocess.Popen(
        [*CW, "--baseline", "5", "--", "touch", str(marker)],
        env=clean_env(),
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 130
    assert b"SIGINT during --baseline; nothing was launched" in err and b"Traceback" not in err
    assert not marker.exists()
