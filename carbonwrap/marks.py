"""Phase and progress marks from the command (SPEC.md section 10.2): the FIFO reader and the writers.

Standard library only, and light to import: `carbonwrap mark` and `from carbonwrap import mark` load this
module without click, rich or dataclasses. The writer never blocks and never raises; the reader never
blocks, reads a bounded number of bytes per call and keeps a bounded buffer.
"""

from __future__ import annotations

import os
import stat

ENV = "CARBONWRAP_MARKS"
MAX_LINE = 1024  # bytes of one mark, newline included
READ_BUDGET = 64 * 1024  # bytes one poll() parses
DRAIN_LIMIT = 1024 * 1024  # bytes one poll() reads and drops past the budget (a pipe holds at most 1 MiB)
MAX_MARKS = 1000  # marks one poll() returns; more are dropped
_F_SETOWN_EX, _F_OWNER_TID = 15, 0  # <linux/fcntl.h>; Python's fcntl does not name them


class Mark:
    """One parsed mark: `phase` with a name, or `progress` with a fraction in (0, 1]."""

    __slots__ = ("kind", "name", "progress")

    kind: str
    name: str
    progress: float

    def __init__(self, kind: str, name: str = "", progress: float = 0.0) -> None:
        # Frozen like the house's dataclasses, without loading dataclasses into `carbonwrap mark`.
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "progress", progress)

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError(f"Mark is frozen: cannot set {key}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mark):
            return NotImplemented
        return (self.kind, self.name, self.progress) == (other.kind, other.name, other.progress)

    def __hash__(self) -> int:
        return hash((self.kind, self.name, self.progress))

    def __repr__(self) -> str:
        return f"Mark({self.kind!r}, {self.name!r}, {self.progress!r})"


def parse(line: str) -> Mark | None:
    """A mark from one line, or None when it is not one of `phase NAME`, `progress F`, `progress I/N`."""
    word, _, rest = line.strip().partition(" ")
    rest = rest.strip()
    if word == "phase":
        name = " ".join(rest.split())
        if not name or any(ord(c) < 32 or ord(c) == 127 for c in name):
            return None
        return Mark("phase", name=name)
    if word != "progress" or not rest or " " in rest:
        return None
    try:
        if "/" in rest:
            i, _, n = rest.partition("/")
            done, total = float(i), float(n)
            if not total > 0 or not 0 <= done <= total:
                return None
            f = done / total
        else:
            f = float(rest)
    except ValueError:
        return None
    if not 0 < f <= 1:  # also refuses nan
        return None
    return Mark("progress", progress=f)


# -- the writers ---------------------------------------------------------------------------------------


def _write(fd: int, data: bytes) -> None:
    """One write that a reader gone away cannot turn into a fatal SIGPIPE, whatever the disposition."""
    import signal  # here: it loads enum, which `carbonwrap mark` otherwise never needs

    if signal.getsignal(signal.SIGPIPE) is signal.SIG_IGN:  # Python's default: EPIPE comes back as an error
        os.write(fd, data)
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})
    try:
        os.write(fd, data)
    except BrokenPipeError:
        # The kernel sent SIGPIPE to this thread and it is pending while blocked: take it before unblocking.
        if signal.SIGPIPE not in old and signal.SIGPIPE in signal.sigpending():
            signal.sigtimedwait({signal.SIGPIPE}, 0)
        raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def mark(*words: object) -> None:
    """Send one mark to the carbonwrap running this process: `mark("phase", "eval")`, `mark("progress", 0.3)`.

    Does nothing outside carbonwrap. Never blocks and never raises: a mark that cannot go (no reader, a
    full pipe, a line over 1 KiB) is dropped. The FIFO is opened for each mark, so no descriptor is left
    in the caller that its own fd handling could trip over.
    """
    try:
        path = os.environ.get(ENV)
        if not path:
            return
        text = " ".join(str(w) for w in words).replace("\r", " ").replace("\n", " ")
        data = text.encode("utf-8", "backslashreplace") + b"\n"
        if len(data) > MAX_LINE:
            return
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # ENXIO: nobody reads it
        try:
            if _is_fifo(fd):  # never write marks into something else that took the name
                _write(fd, data)  # <= PIPE_BUF: written whole or not at all (EAGAIN)
        finally:
            os.close(fd)
    except Exception:
        return


def _is_fifo(fd: int) -> bool:
    return stat.S_ISFIFO(os.fstat(fd).st_mode)


def cli_mark(words: list[str]) -> int:
    """`carbonwrap mark TEXT...`: send the words as one mark; exit 0 and print nothing, whatever happens."""
    mark(*words)
    return 0


# -- the reader ----------------------------------------------------------------------------------------


def _private_dir() -> str:
    """A new directory only we can enter (0700), as tempfile.mkdtemp makes, without importing tempfile (and
    with it shutil, random and three compressors) before the launch."""
    base = os.environ.get("TMPDIR") or "/tmp"
    for _ in range(100):
        path = os.path.join(base, f"carbonwrap-marks-{os.urandom(6).hex()}")
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free name for a private directory under {base}")


class MarksReader:
    """A FIFO in a private directory for the command's marks. `path` goes into CARBONWRAP_MARKS.

    Opened without blocking, with a write end of our own kept open, so a FIFO nobody opens never blocks
    and one whose writers all closed never reads as an endless EOF. `fileno()` is readable when marks wait.
    """

    def __init__(self, read_budget: int = READ_BUDGET, max_marks: int = MAX_MARKS) -> None:
        self.dir = _private_dir()
        self.path = os.path.join(self.dir, "marks")
        self.read_budget = read_budget
        self.max_marks = max_marks
        self.malformed = 0
        self.dropped = 0
        self.example = ""  # the first malformed line, shown in the warning
        self._buf = b""
        self._skipping = False  # inside a line over MAX_LINE: drop up to its newline
        self._resync = False  # a drain stopped mid-line: drop up to the next newline
        try:
            os.mkfifo(self.path, 0o600)
            self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            self._keep = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except BaseException:
            self._remove()
            raise

    def fileno(self) -> int:
        return self._fd

    def signal_on_input(self, sig: int) -> None:
        """Have the kernel send `sig` to the calling thread when marks arrive, so a loop asleep in
        sigtimedwait() wakes for them (carbonwrap's tick loop: add `sig` to Child's extra_signals).

        `sig` must already be blocked in this thread: an unblocked SIGIO would end the process. Signals
        coalesce while pending, so a flood wakes the loop at most once per wait; it should still read the
        counters for marks at most a few times per interval.
        """
        import fcntl
        import signal
        import struct
        import threading

        if sig not in signal.pthread_sigmask(signal.SIG_BLOCK, ()):
            raise ValueError(f"signal {sig} must be blocked in this thread before marks may raise it")
        fcntl.fcntl(self._fd, fcntl.F_SETSIG, sig)
        # F_SETOWN_EX with F_OWNER_TID (Linux): this thread only, not any thread that has it unblocked.
        fcntl.fcntl(self._fd, _F_SETOWN_EX, struct.pack("ii", _F_OWNER_TID, threading.get_native_id()))
        fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) | os.O_ASYNC)

    def poll(self) -> list[Mark]:
        """The marks that arrived since the last call, in order; reads at most `read_budget` bytes and drops
        (and counts) what waits beyond it. Progress marks read together collapse into the last one."""
        got = self._read(self.read_budget)
        flood = len(got) >= self.read_budget
        emptied = self._drain() if flood else True
        data, out = self._buf + got, list[Mark]()
        lines = data.split(b"\n")
        self._buf = lines.pop()
        if flood and self._buf:  # its end went with the drained bytes
            self.dropped += 1
            self._buf = b""
        for raw in lines:
            if self._skipping:  # the rest of a line over MAX_LINE
                self._skipping = False
                continue
            if self._resync:  # the rest of a line that the previous drain cut
                self._resync = False
                self.dropped += 1
                continue
            self._line(raw, out)
        if not emptied:  # the drain stopped inside a line: the next poll starts with its tail
            self._resync = True
        if len(self._buf) >= MAX_LINE:
            self._malformed(self._buf[:60])
            self._buf, self._skipping = b"", True
        return out

    def _line(self, raw: bytes, out: list[Mark]) -> None:
        if len(raw) >= MAX_LINE:
            self._malformed(raw[:60])
            return
        if not raw.strip():
            return
        m = parse(raw.decode("utf-8", "backslashreplace"))
        if m is None:
            self._malformed(raw)
        elif m.kind == "progress" and out and out[-1].kind == "progress":
            out[-1] = m  # read at the same instant: only the latest counts
        elif len(out) >= self.max_marks:
            self.dropped += 1
        else:
            out.append(m)

    def _read(self, limit: int) -> bytes:
        chunks, n = [], 0
        while n < limit:
            try:
                chunk = os.read(self._fd, min(65536, limit - n))
            except (BlockingIOError, InterruptedError):
                break
            if not chunk:
                break
            chunks.append(chunk)
            n += len(chunk)
        return b"".join(chunks)

    def _drain(self) -> bool:
        """A flood: drop what waits past this poll's budget, counting its lines, so marks stay current.
        True when the pipe was emptied (writers write whole lines, so it then ends at a line's end)."""
        left = DRAIN_LIMIT
        while left > 0:
            try:
                chunk = os.read(self._fd, min(65536, left))
            except (BlockingIOError, InterruptedError):
                return True
            if not chunk:
                return True
            self.dropped += chunk.count(b"\n")
            left -= len(chunk)
        return False

    def _malformed(self, raw: bytes) -> None:
        self.malformed += 1
        if not self.example:
            text = raw.decode("utf-8", "backslashreplace")
            self.example = text.encode("ascii", "backslashreplace").decode()[:60]

    def warnings(self) -> list[str]:
        """At most one line each for malformed and dropped marks, for the record's warnings."""
        out = []
        if self.malformed:
            out.append(
                f"{self.malformed} malformed mark(s) ignored, e.g. '{self.example}'; "
                "write 'phase NAME', 'progress F' (0 < F <= 1) or 'progress I/N', one per line, at most 1 KiB"
            )
        if self.dropped:
            out.append(
                f"{self.dropped} mark(s) dropped: more than {self.read_budget // 1024} KiB or {self.max_marks} "
                "marks arrived between two reads; mark less often"
            )
        return out

    def close(self) -> None:
        """Close both ends and remove the directory; a writer still holding the FIFO gets EPIPE, not a block."""
        for fd in (getattr(self, "_fd", -1), getattr(self, "_keep", -1)):
            if fd >= 0:
                _quiet(os.close, fd)
        self._fd = self._keep = -1
        self._remove()

    def _remove(self) -> None:
        _quiet(os.unlink, self.path)
        _quiet(os.rmdir, self.dir)

    def __enter__(self) -> MarksReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _quiet(call: object, arg: int | str) -> None:
    """os.close, os.unlink or os.rmdir, where failing changes nothing."""
    try:
        call(arg)  # type: ignore[operator]
    except OSError:
        return
