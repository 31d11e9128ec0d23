"""Output files: no writing through a symbolic link, nothing but regular files (a FIFO never hangs
carbonwrap), replaced files keep their mode, a missing newline is added first, a missing directory made."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from tests.conftest import clean_env
from tests.record_schema import strict_loads, validate

SUFFIXES = (".jsonl", ".csv", ".json", ".prom")


def _last_json(stderr: bytes) -> dict:
    return strict_loads(stderr.decode().strip().splitlines()[-1])


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_symlink_at_the_final_component_is_refused(cw, tmp_path: Path, suffix: str) -> None:
    # Before: .jsonl/.csv appends followed the link and wrote (or created) the file it pointed at.
    victim = tmp_path / f"victim{suffix}"
    victim.write_text("precious\n")
    link = tmp_path / f"link{suffix}"
    link.symlink_to(victim)
    dangling = tmp_path / f"dangling{suffix}"
    dangling.symlink_to(tmp_path / f"created-through-link{suffix}")
    ok = tmp_path / "ok.jsonl"
    r = cw("-q", "-o", str(link), "-o", str(dangling), "-o", str(ok), "--", "true", timeout=60)
    assert r.returncode == 1, r.stderr
    err = r.stderr.decode()
    assert err.count("symbolic link") == 2 and "Traceback" not in err
    assert victim.read_text() == "precious\n" and link.is_symlink()
    assert not (tmp_path / f"created-through-link{suffix}").exists()
    rec = validate(_last_json(r.stderr))  # the record is on stderr, nothing lost
    assert json.loads(ok.read_text())["id"] == rec["id"]  # and the other output was written


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("reader", [False, True])
def test_a_fifo_is_refused_without_hanging(cw, tmp_path: Path, suffix: str, reader: bool) -> None:
    fifo = tmp_path / f"pipe{suffix}"
    os.mkfifo(fifo)
    held: list[int] = []
    if reader:  # someone reading the FIFO: opening it for writing would succeed, so the type must be checked
        held.append(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
    try:
        r = cw("-q", "-o", str(fifo), "--", "true", timeout=30)
    finally:
        for fd in held:
            os.close(fd)
    assert r.returncode == 1, r.stderr
    assert "a FIFO, not a regular file" in r.stderr.decode()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # not replaced by a file either
    validate(_last_json(r.stderr))


def test_step_summary_refuses_links_and_fifos(cw, tmp_path: Path) -> None:
    victim = tmp_path / "victim.md"
    victim.write_text("x\n")
    link = tmp_path / "link.md"
    link.symlink_to(victim)
    r = cw("-q", "--", "true", env=clean_env(GITHUB_STEP_SUMMARY=str(link)))
    assert r.returncode == 0 and b"symbolic link" in r.stderr and victim.read_text() == "x\n"
    fifo = tmp_path / "fifo.md"
    os.mkfifo(fifo)
    r = cw("-q", "--", "true", env=clean_env(GITHUB_STEP_SUMMARY=str(fifo)), timeout=30)
    assert r.returncode == 0 and b"FIFO" in r.stderr and len(r.stderr.splitlines()) == 1


@pytest.mark.parametrize("suffix", [".json", ".prom"])
def test_replacement_keeps_the_mode(cw, tmp_path: Path, suffix: str) -> None:
    # Before: the replacement got 0666 less the umask: a 0600 record became world-readable.
    out = tmp_path / f"r{suffix}"
    out.write_text("old")
    out.chmod(0o600)
    r = cw("-q", "-o", str(out), "--", "true")
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and out.read_text() != "old"
    fresh = tmp_path / "new" / "deeper" / f"r{suffix}"  # missing parents are created
    r = cw("-q", "-o", str(fresh), "--", "true", env=clean_env())
    assert r.returncode == 0 and fresh.exists()
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_append_adds_the_missing_newline_first(cw, tmp_path: Path, suffix: str) -> None:
    # Before: the new record was glued onto the unterminated last line: two records in one malformed line.
    out = tmp_path / f"runs{suffix}"
    assert cw("-q", "-o", str(out), "--", "true").returncode == 0
    out.write_bytes(out.read_bytes().rstrip(b"\n"))  # an editor or a crash left no final newline
    assert cw("-q", "-o", str(out), "--", "true").returncode == 0
    assert out.read_bytes().endswith(b"\n")
    r = cw("report", str(out), "--format", "json")
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    assert json.loads(r.stdout)["total"][0]["runs"] == 2


def test_fifty_concurrent_appends_with_missing_newline_stay_whole(cw, tmp_path: Path) -> None:
    out = tmp_path / "runs.jsonl"
    out.write_text('{"partial": true}')  # no newline: fixed once, under the lock, by whoever comes first
    import subprocess
    import sys

    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "carbonwrap", "-q", "-o", str(out), "--tag", f"n={i}", "--", "true"],
            env=clean_env(),
            stderr=subprocess.PIPE,
        )
        for i in range(50)
    ]
    errors = []

    def wait(p: subprocess.Popen) -> None:
        _, err = p.communicate(timeout=120)
        if p.returncode:
            errors.append(err)

    threads = [threading.Thread(target=wait, args=(p,)) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    lines = out.read_text().splitlines()
    assert lines[0] == '{"partial": true}' and len(lines) == 51
    assert sorted(int(json.loads(x)["tags"]["n"]) for x in lines[1:]) == list(range(50))
