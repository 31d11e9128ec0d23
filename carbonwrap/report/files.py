"""Opening files for records without following links, without blocking on FIFOs, without losing the mode.

Every output goes through here (SPEC.md section 5.2): a symbolic link at the final component is refused
(O_NOFOLLOW), and so is anything but a regular file, found without blocking (O_NONBLOCK, then fstat).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISLNK, "a symbolic link"),
)


class Refused(OSError):
    """A path carbonwrap will not write to or read from; the message says what it is."""


def kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _refuse(path: Path, what: str) -> Refused:
    return Refused(
        errno.EINVAL, f"{what}, not a regular file; carbonwrap writes records to regular files only", str(path)
    )


def open_regular(path: Path, flags: int, mode: int = 0o666) -> int:
    """os.open(path) refusing a symbolic link at the final component and anything but a regular file."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise Refused(
                errno.ELOOP, "is a symbolic link; carbonwrap does not write through links", str(path)
            ) from None
        if e.errno == errno.ENXIO:  # a FIFO with no reader, opened for writing without blocking
            raise _refuse(path, "a FIFO") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, kind(st.st_mode))
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def append(path: Path, make: Callable[[int, int], bytes], lock: bool = True) -> None:
    """Append `make(fd, size)` under an exclusive lock; `size` is the file's size once the lock is held.

    A file whose last byte is not a newline gets one first. A write that fails part way (a full disk) is cut
    back, so the file never keeps half a record.
    """
    fd = open_regular(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
    try:
        if lock:
            fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        data = make(fd, size)
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        try:
            while data:
                data = data[os.write(fd, data) :]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)  # closing releases the lock


def replace(path: Path, data: bytes) -> None:
    """Write beside `path`, then rename over it: readers never see half a record. The mode of the file being
    replaced is kept (0600 stays 0600); a new file gets 0666 less the umask."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    else:
        if stat.S_ISLNK(st.st_mode):
            raise Refused(errno.ELOOP, "is a symbolic link; carbonwrap does not write through links", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, kind(st.st_mode))
        mode = stat.S_IMODE(st.st_mode)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def make_parent(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)


def read_head(fd: int, limit: int = 65536) -> bytes:
    """The file's first line (at most `limit` bytes), read without moving the append offset."""
    head = os.pread(fd, limit, 0)
    return head.split(b"\n", 1)[0]
