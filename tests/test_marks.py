"""Marks through a real FIFO: the reader, the Python helper and `carbonwrap mark` in real child processes."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from carbonwrap.marks import ENV, Mark, MarksReader, mark, parse
from tests.conftest import CW, ROOT, clean_env


@pytest.fixture
def reader() -> Iterator[MarksReader]:
    r = MarksReader()
    yield r
    r.close()


def poll_until(r: MarksReader, done: Callable[[list[Mark]], bool], timeout_s: float = 30.0) -> list[Mark]:
    got: list[Mark] = []
    end = time.monotonic() + timeout_s
    while not done(got) and time.monotonic() < end:
        got += r.poll()
        time.sleep(0.01)
    return got


def test_the_fifo_lives_in_a_private_directory_and_goes_with_close() -> None:
    r = MarksReader()
    d = Path(r.dir)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_ISFIFO(os.stat(r.path).st_mode)
    assert r.poll() == []  # nobody has opened it: no block, no EOF spin
    r.close()
    assert not d.exists()


def test_a_child_marks_through_the_cli_and_the_python_helper(reader: MarksReader) -> None:
    script = (
        "import subprocess, sys\n"
        "from carbonwrap import mark\n"
        "mark('phase', 'load')\n"
        "subprocess.run([sys.executable, '-m', 'carbonwrap', 'mark', 'phase', 'train'], check=True)\n"
        "mark('progress', '3/10')\n"
        "subprocess.run([sys.executable, '-m', 'carbonwrap', 'mark', 'progress', '0.5'], check=True)\n"
        "mark('phase', 'eval')\n"
    )
    env = clean_env(**{ENV: reader.path})
    child = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=60)
    assert child.returncode == 0, child.stderr
    assert child.stdout == b"" and child.stderr == b""
    got = poll_until(reader, lambda g: len(g) >= 4)
    # All were waiting at the one read: progress marks read together collapse into the latest.
    assert got == [Mark("phase", "load"), Mark("phase", "train"), Mark("progress", progress=0.5), Mark("phase", "eval")]
    assert reader.malformed == 0 and reader.dropped == 0


def test_marks_read_one_by_one_keep_every_progress(reader: MarksReader) -> None:
    os.environ[ENV] = reader.path
    try:
        seen = []
        for words in (("progress", "1/4"), ("progress", 0.5), ("phase", "x  y")):
            mark(*words)
            seen += reader.poll()
    finally:
        del os.environ[ENV]
    assert seen == [Mark("progress", progress=0.25), Mark("progress", progress=0.5), Mark("phase", "x y")]


@pytest.mark.parametrize(
    "line",
    [
        "phase",
        "phase   ",
        "progress",
        "progress 0",
        "progress 1.5",
        "progress -0.1",
        "progress nan",
        "progress inf",
        "progress 3/0",
        "progress 11/10",
        "progress a/b",
        "progress 0.5 more",
        "hello",
        "phase \x1b[31mred",
    ],
)
def test_malformed_lines_are_not_marks(line: str) -> None:
    assert parse(line) is None


def test_malformed_and_oversized_marks_are_counted_in_one_warning(reader: MarksReader) -> None:
    fd = os.open(reader.path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, b"progress 2\nbogus line\n" + b"phase " + b"x" * 2000 + b"\nphase ok\n")
    finally:
        os.close(fd)
    got = poll_until(reader, lambda g: bool(g))
    assert got == [Mark("phase", "ok")]
    assert reader.malformed == 3
    warnings = reader.warnings()
    assert len(warnings) == 1 and "3 malformed mark(s)" in warnings[0] and "'progress 2'" in warnings[0]


def test_a_flood_is_read_within_the_budget_and_dropped_beyond_it(reader: MarksReader) -> None:
    """A child that writes marks as fast as it can: each poll reads a bounded amount, returns a bounded list,
    and the reader's memory does not grow; the excess is counted in one warning."""
    flood = (
        "import os, sys\n"
        "fd = os.open(sys.argv[1], os.O_WRONLY)\n"  # blocking: the writer waits for us, the pipe stays full
        "for k in range(40000): os.write(fd, b'phase p%06d' % k + b'x' * 44 + b'\\n')\n"
    )
    child = subprocess.Popen([sys.executable, "-c", flood, reader.path], env=clean_env())
    tracemalloc.start()
    try:
        sizes, peaks, torn = [], [], 0
        while child.poll() is None or len(sizes) < 3:
            got = reader.poll()
            sizes.append(len(got))
            torn += sum(not re.fullmatch(r"p\d{6}x{44}", m.name) for m in got)
            peaks.append(tracemalloc.get_traced_memory()[0])
            time.sleep(0.005)
            if len(sizes) > 20000:
                break
    finally:
        tracemalloc.stop()
        child.kill()
        child.wait()
    assert max(sizes) <= reader.max_marks
    assert torn == 0  # whole lines only: never the tail of a dropped one joined to the next
    assert reader.malformed == 0
    assert max(sizes) > 0
    assert reader.dropped > 0
    assert len([w for w in reader.warnings() if "dropped" in w]) == 1
    assert max(peaks) - peaks[0] < 2 * reader.read_budget + 200_000  # one budget of lines, not the flood


def test_a_mark_with_nobody_reading_neither_blocks_nor_fails(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    plain = tmp_path / "plain"
    plain.write_text("")
    for target in (fifo, plain, tmp_path / "missing"):
        os.environ[ENV] = str(target)
        try:
            t = time.monotonic()
            mark("phase", "x")  # ENXIO, not a FIFO, ENOENT: dropped
            assert time.monotonic() - t < 10
        finally:
            del os.environ[ENV]
    assert plain.read_text() == ""


def test_a_reader_gone_away_does_not_kill_a_writer_with_default_sigpipe(tmp_path: Path) -> None:
    """The writer's SIGPIPE is SIG_DFL (a CLI that resets it): the mark after the reader closed is dropped."""
    script = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGPIPE, signal.SIG_DFL)\n"
        "from carbonwrap import mark\n"
        "fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)\n"  # a reader, so the open succeeds...
        "import carbonwrap.marks as m\n"
        "w = os.open(sys.argv[1], os.O_WRONLY | os.O_NONBLOCK)\n"
        "os.close(fd)\n"  # ...then gone: writes now raise EPIPE and raise SIGPIPE
        "try:\n"
        "    m._write(w, b'phase x\\n')\n"
        "except BrokenPipeError:\n"
        "    print('epipe')\n"
        "mark('phase', 'y')\n"
        "print('alive')\n"
    )
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    out = subprocess.run(
        [sys.executable, "-c", script, str(fifo)], env=clean_env(**{ENV: str(fifo)}), capture_output=True, timeout=60
    )
    assert out.returncode == 0, (out.returncode, out.stderr)
    assert out.stdout.split() == [b"epipe", b"alive"]


def test_carbonwrap_mark_outside_carbonwrap_exits_0_and_says_nothing() -> None:
    for args in (["mark", "phase", "x"], ["mark"], ["mark", "--help"], ["-q", "mark", "progress", "1/2"]):
        out = subprocess.run([*CW, *args], env=clean_env(), capture_output=True, timeout=60)
        assert (out.returncode, out.stdout, out.stderr) == (0, b"", b""), args


def test_carbonwrap_dash_dash_mark_wraps_a_program_called_mark(tmp_path: Path) -> None:
    prog = tmp_path / "mark"
    prog.write_text('#!/bin/sh\necho wrapped "$@"\n')
    prog.chmod(0o755)
    env = clean_env(PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    out = subprocess.run([*CW, "-q", "--", "mark", "a"], env=env, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"wrapped a\n"


LIGHT = (
    "import sys\n"
    "{extra}"
    "from carbonwrap import mark\n"
    "import carbonwrap.entry\n"
    "heavy = sorted(m for m in ('click', 'rich', 'psutil', 'carbonwrap.cli') if m in sys.modules)\n"
    "print(','.join(heavy))\n"
)


@pytest.mark.parametrize("extra,heavy", [("", ""), ("import click\n", "click")])
def test_the_helpers_load_no_click_rich_or_psutil(extra: str, heavy: str) -> None:
    """`from carbonwrap import mark` stays light; the check sees click when something does import it."""
    out = subprocess.run(
        [sys.executable, "-c", LIGHT.format(extra=extra)], env=clean_env(), capture_output=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().strip() == heavy


def test_carbonwrap_mark_imports_no_click_or_rich(reader: MarksReader) -> None:
    """The fast path of the entry point, as the console script runs it, timed by -X importtime."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "carbonwrap", "mark", "phase", "t"],
        env=clean_env(**{ENV: reader.path}),
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout == b""
    imported = {line.split("|")[-1].strip() for line in out.stderr.decode().splitlines() if "|" in line}
    assert "carbonwrap.marks" in imported
    assert not imported & {"click", "rich", "psutil", "carbonwrap.cli"}
    assert poll_until(reader, bool) == [Mark("phase", "t")]


def test_nested_marks_go_to_the_innermost_reader() -> None:
    """An inner carbonwrap sets CARBONWRAP_MARKS to its own FIFO for its command: marks from there reach it only."""
    with MarksReader() as outer, MarksReader() as inner:
        env = clean_env(**{ENV: inner.path})
        subprocess.run([*CW, "mark", "phase", "inner"], env=env, check=True, timeout=60)
        assert poll_until(inner, bool) == [Mark("phase", "inner")]
        assert outer.poll() == []


WAKE = r"""
import os, signal, subprocess, sys, threading
from carbonwrap.marks import ENV, MarksReader
r = MarksReader()
try:
    r.signal_on_input(signal.SIGIO)
except ValueError as e:
    print("refused:", e)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGIO})
r.signal_on_input(signal.SIGIO)
assert signal.sigtimedwait({signal.SIGIO}, 0.2) is None  # nothing yet: no wake
env = dict(os.environ, **{ENV: r.path})
subprocess.Popen([sys.executable, "-m", "carbonwrap", "mark", "phase", "woken"], env=env)
info = signal.sigtimedwait({signal.SIGIO}, 60)
print("woken by", signal.Signals(info.si_signo).name if info else None, [m.name for m in r.poll()])
r.close()
"""


def test_a_loop_asleep_in_sigtimedwait_wakes_for_a_mark() -> None:
    out = subprocess.run([sys.executable, "-c", WAKE], env=clean_env(), cwd=ROOT, capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert lines[0].startswith("refused: signal") and "must be blocked" in lines[0]
    assert lines[1] == "woken by SIGIO ['woken']"


def test_a_mark_is_frozen() -> None:
    m = Mark("phase", "a")
    with pytest.raises(AttributeError):
        m.name = "b"
    assert m == Mark("phase", "a") and hash(m) == hash(Mark("phase", "a")) and m != Mark("phase", "b")
