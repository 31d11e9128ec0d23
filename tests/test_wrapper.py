"""The wrapper through its real entry point: exit statuses, stdio pass-through, no shell, launch order."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CW, clean_env
from tests.ptys import read_until, start_on_terminal

PY = sys.executable


@pytest.mark.parametrize("code", [0, 1, 3, 42, 255])
def test_exit_code_passes_through(cw, code: int) -> None:
    r = cw("-q", "--", PY, "-c", f"raise SystemExit({code})")
    assert r.returncode == code
    assert r.stdout == b""


@pytest.mark.parametrize("sig", [9, 15, 6])
def test_killed_by_signal_dies_by_it_and_records_128_plus_n(cw, tmp_path: Path, sig: int) -> None:
    out = tmp_path / "r.json"
    r = cw("-q", "-o", str(out), "--", PY, "-c", f"import os; os.kill(os.getpid(), {sig})")
    assert r.returncode == -sig  # carbonwrap ends itself by the same signal, as SPEC section 2 says
    rec = json.loads(out.read_text())
    assert rec["signal"] == sig and rec["exit_code"] == 128 + sig


def test_command_not_found_is_127_with_one_line_and_nothing_measured(cw, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    r = cw("-o", str(out), "--", "no-such-command-xyz", "arg")
    assert r.returncode == 127
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "command not found: no-such-command-xyz" in lines[0]
    assert not out.exists()
    assert r.stdout == b""


def test_directory_as_command_is_126(cw, tmp_path: Path) -> None:
    r = cw("--", str(tmp_path))
    assert r.returncode == 126
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "cannot execute" in lines[0]


def test_non_executable_file_is_126(cw, tmp_path: Path) -> None:
    f = tmp_path / "script.sh"
    f.write_text("#!/bin/sh\necho hi\n")
    f.chmod(0o644)
    if os.access(f, os.X_OK):  # root may execute files without x bits only when one x bit is set
        pytest.skip("this user can execute anything")
    r = cw("--", str(f))
    assert r.returncode == 126
    assert b"chmod +x" in r.stderr and len(r.stderr.decode().strip().splitlines()) == 1


def test_no_shell_is_involved(cw, tmp_path: Path) -> None:
    r = cw("-q", "--", "echo", "$HOME", "*", "a;b", "`id`")
    assert r.returncode == 0
    assert r.stdout == b"$HOME * a;b `id`\n"


def test_options_after_the_command_belong_to_the_command(cw) -> None:
    r = cw("-q", PY, "-c", "import sys; print(sys.argv[1:])", "-q", "--region", "FR", "-o", "x.json")
    assert r.returncode == 0
    assert r.stdout == b"['-q', '--region', 'FR', '-o', 'x.json']\n"


def test_prefix_form_without_dashdash(cw) -> None:
    r = cw("-q", "echo", "-n", "hi")
    assert (r.returncode, r.stdout) == (0, b"hi")


def test_dashdash_wraps_a_program_named_like_a_subcommand(cw, tmp_path: Path) -> None:
    prog = tmp_path / "doctor"
    prog.write_text("#!/bin/sh\necho i am a program called doctor\n")
    prog.chmod(0o755)
    env = clean_env(PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    r = cw("-q", "--", "doctor", env=env)
    assert (r.returncode, r.stdout) == (0, b"i am a program called doctor\n")


BINARY_WRITER = r"""
import sys
out = sys.stdout.buffer
out.write(b"\x00\x01\xff\xfe not utf-8 \xc3\x28 \r\n\x00")
block = bytes(range(256)) * 4096  # 1 MiB
for _ in range(10):
    out.write(block)
out.write(b"end\x00")
"""


def test_binary_stdout_is_byte_identical_with_and_without_carbonwrap(cw) -> None:
    direct = subprocess.run([PY, "-c", BINARY_WRITER], capture_output=True, check=True).stdout
    assert len(direct) > 10 * 1024 * 1024
    wrapped = cw("-q", "--", PY, "-c", BINARY_WRITER)
    assert wrapped.returncode == 0
    assert wrapped.stdout == direct
    also_summary = cw("--", PY, "-c", BINARY_WRITER)
    assert also_summary.stdout == direct
    assert b"carbonwrap" in also_summary.stderr


def test_stdin_belongs_to_the_command(cw) -> None:
    r = subprocess.run(
        ["sh", "-c", f"echo hi | {' '.join(CW)} -- cat"], capture_output=True, env=clean_env(), check=False
    )
    assert (r.returncode, r.stdout) == (0, b"hi\n")
    big = os.urandom(3 * 1024 * 1024)
    r = subprocess.run([*CW, "-q", "--", "cat"], input=big, capture_output=True, env=clean_env(), check=False)
    assert r.stdout == big


def test_carbonwrap_never_writes_to_stdout(cw, tmp_path: Path) -> None:
    for args in (["--", "true"], ["-o", str(tmp_path / "a.json"), "--", "false"], ["--", "no-such-cmd-q"]):
        r = cw(*args)
        assert r.stdout == b"", args
        assert r.stderr != b""


def test_summary_is_plain_text_off_a_terminal(cw) -> None:
    r = cw("--region", "FR", "--", "true")
    text = r.stderr.decode()
    assert "\x1b[" not in text
    for word in ("exit 0", "cpu", "estimated", "FR France", "44.18 g/kWh", "CO2e"):
        assert word in text, word
    # The everyday equivalent at this size (a run of `true`): energy, not a car's micrometres.
    assert "a 10 W LED bulb uses in" in text
    assert re.search(r"energy +\S+ J \(estimated\) charged", text) and re.search(r"CO2e +\S+ \S+ \(estimated\)", text)


@pytest.mark.parametrize("extra", [(), ("-o", "run.html")], ids=["panel", "html"])
def test_the_child_is_launched_before_heavy_imports(tmp_path: Path, extra: tuple[str, ...]) -> None:
    # An audit hook sees os.fork at the instant of the launch (the first process carbonwrap creates); no code
    # is patched. carbonwrap runs on a sized terminal that it controls, so the live panel is made (and says
    # so: `panel`). The RunReport's module, like rich and pynvml, is only imported after the command has run.
    report = tmp_path / "at-spawn.txt"
    probe = (
        "import sys\n"
        "def hook(event, args):\n"
        "    if event in ('os.fork', 'os.posix_spawn') and not seen:\n"
        "        seen.append(event)\n"
        "        heavy = [m for m in ('rich', 'pynvml', 'carbonwrap.runreport') if m in sys.modules]\n"
        "        panel = 'carbonwrap.report.record' in sys.modules  # _panel asks it which domains are estimated\n"
        f"        open({str(report)!r}, 'w').write(f'heavy={{heavy}} panel={{panel}} event={{event}}')\n"
        "seen = []\n"
        "sys.addaudithook(hook)\n"
        f"sys.argv = ['carbonwrap', *{list(extra)!r}, '--', 'true']\n"
        "from carbonwrap.cli import main\n"
        "main()\n"
    )
    p, master = start_on_terminal([PY, "-c", probe], clean_env(TERM="xterm"), cwd=tmp_path, rows_cols=(24, 80))
    try:
        read_until(master, b"never printed", timeout=30)  # drains the panel until the process closes the pty
    finally:
        os.close(master)
    assert p.wait(timeout=30) == 0
    assert report.read_text() == "heavy=[] panel=True event=os.fork"


def test_live_forced_off_a_terminal_is_no_panel_and_no_crash(cw) -> None:
    r = cw("--live", "--", "true")
    assert r.returncode == 0 and b"Traceback" not in r.stderr and b"\x1b[" not in r.stderr


def test_record_write_failure_exits_1_and_prints_the_record(cw, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = cw("-q", "-o", str(blocker / "sub" / "r.json"), "--", "true")
    assert r.returncode == 1
    err = r.stderr.decode().splitlines()
    assert "cannot write" in err[0]
    rec = json.loads(err[-1])
    assert rec["schema"] == "carbonwrap.run/1" and rec["exit_code"] == 0


def test_record_write_failure_keeps_the_commands_own_failure_status(cw, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = cw("-q", "-o", str(blocker / "r.csv"), "--", PY, "-c", "raise SystemExit(5)")
    assert r.returncode == 5
    assert json.loads(r.stderr.decode().splitlines()[-1])["exit_code"] == 5


def test_a_full_disk_is_a_write_failure_that_loses_nothing(cw, tmp_path: Path) -> None:
    full = tmp_path / "runs.jsonl"
    # A link to /dev/full (ENOSPC on every write) is refused before any write: outputs never follow a link
    # or write to a device (SPEC.md section 5.2). A write that fails part way is test_outputs' RLIMIT_FSIZE case.
    full.symlink_to("/dev/full")
    r = cw("-q", "-o", str(full), "-o", str(tmp_path / "ok.json"), "--", "true")
    assert r.returncode == 1
    err = r.stderr.decode().splitlines()
    assert "is a symbolic link" in err[0]
    assert json.loads(err[-1]) == json.loads((tmp_path / "ok.json").read_text())


def test_missing_parent_directories_are_created(cw, tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "c" / "r.json"
    assert cw("-q", "-o", str(out), "--", "true").returncode == 0
    assert json.loads(out.read_text())["exit_code"] == 0


@pytest.mark.parametrize("code", [0, 7])
def test_a_closed_or_broken_stderr_never_changes_the_status(tmp_path: Path, code: int) -> None:
    cmd = [*CW, "--", "sh", "-c", f"exit {code}"]
    closed = subprocess.run(
        cmd,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=clean_env(),
        preexec_fn=lambda: os.close(2),
        check=False,
    )
    assert closed.returncode == code
    r, w = os.pipe()
    os.close(r)  # every write to stderr fails with EPIPE
    broken = subprocess.run(cmd, stderr=w, env=clean_env(), check=False)
    os.close(w)
    assert broken.returncode == code


def test_an_empty_command_name_is_127(cw) -> None:
    r = cw("--", "")
    assert r.returncode == 127 and b"command name is empty" in r.stderr
