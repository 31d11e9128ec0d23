"""Starting the command with execvp semantics and exactly what carbonwrap itself was started with.

The environment comes from /proc/self/environ, the block the kernel gave this process at exec: Python's own
start-up changes os.environ (PEP 538 adds LC_CTYPE=C.UTF-8 under the C locale), and the command must not see
that. fork and exec rather than posix_spawn, because glibc's posix_spawn leaves its internal signals 32 and 33
ignored in the child, and because the child must get the signal mask carbonwrap inherited, not the one it
runs with. A file the kernel refuses with ENOEXEC (no #! line) is run by /bin/sh, as execvp does.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Iterable, Mapping

from carbonwrap.errors import LaunchError

# Python ignores these at start-up; a shell-started command expects them at their default. (What carbonwrap's
# own parent set for them is lost by then: Python records no previous disposition.)
RESET_TO_DEFAULT = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT)
_SKIP = (errno.ENOENT, errno.ENOTDIR, errno.ESTALE, errno.ENODEV, errno.ETIMEDOUT)


def startup_environ(proc_environ: str = "/proc/self/environ") -> dict[bytes, bytes]:
    """The environment as the kernel handed it to this process, before Python changed anything."""
    try:
        with open(proc_environ, "rb") as f:
            raw = f.read()
    except OSError:
        return dict(os.environb)
    env: dict[bytes, bytes] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key and key not in env:
            env[key] = value
    return env


def child_environ(
    base: Mapping[bytes, bytes], add: Mapping[str, str], remove: Iterable[str] = ()
) -> dict[bytes, bytes]:
    """`base` with the documented additions and the credential variables removed (SPEC section 2)."""
    env = dict(base)
    for name in remove:
        env.pop(os.fsencode(name), None)
    for name, value in add.items():
        env[os.fsencode(name)] = os.fsencode(value)
    return env


def _candidates(name: bytes, env: Mapping[bytes, bytes]) -> list[bytes]:
    if b"/" in name:
        return [name]
    path = env.get(b"PATH")
    if path is None:
        path = os.fsencode(os.confstr("CS_PATH") or "/bin:/usr/bin")
    return [os.path.join(d or b".", name) for d in path.split(b":")]


def spawn(argv: list[str], env: Mapping[bytes, bytes], mask: Iterable[int], ignored: Iterable[int] = ()) -> int:
    """Fork and exec `argv`; raise LaunchError (127 or 126) when it cannot be run. Signals must be blocked.

    `ignored`: signals carbonwrap inherited as ignored but had to change for itself (SIGCHLD): ignored again
    in the command. A SIGINT that Python left ignored (a background job's) stays ignored."""
    args = [os.fsencode(a) for a in argv]
    if not args or not args[0]:
        raise LaunchError("command not found: '' (the command name is empty)", 127)
    paths = _candidates(args[0], env)
    mask, ignore = set(mask), list(ignored)
    r, w = os.pipe()  # close-on-exec: EOF once the exec succeeded
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, until exec
        try:
            os.close(r)
            for s in RESET_TO_DEFAULT:
                if signal.getsignal(s) is not signal.SIG_IGN or s != signal.SIGINT:
                    signal.signal(s, signal.SIG_DFL)
            for sig in ignore:
                signal.signal(sig, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            errors = []
            for p in paths:
                try:
                    os.execve(p, args, env)
                except OSError as e:
                    code = e.errno or 0
                    if code == errno.ENOEXEC:
                        try:
                            os.execve(b"/bin/sh", [b"/bin/sh", p, *args[1:]], env)
                        except OSError as e2:
                            code = e2.errno or 0
                    errors.append(b"%d %s" % (code, p))
                    if code not in _SKIP and code != errno.EACCES:
                        break
            os.write(w, b"\0".join(errors))
        finally:
            os._exit(127)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        report = f.read()
    if not report:
        return pid
    os.waitpid(pid, 0)
    tried = [(int(code), path) for code, _, path in (e.partition(b" ") for e in report.split(b"\0"))]
    raise launch_error(argv[0], tried)


def launch_error(name: str, tried: list[tuple[int, bytes]]) -> LaunchError:
    """The one-line reason, from what each exec attempt answered (in PATH order)."""
    shown = name.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
    for code, path in tried:
        if code == errno.ENOENT and os.path.exists(path):
            return _interpreter_error(shown, path)
    for code, _ in tried:
        if code == errno.EACCES:
            hint = "it is a directory or lacks execute permission: chmod +x it, or run it with its interpreter"
            return LaunchError(f"cannot execute {shown}: permission denied ({hint})", 126)
    code = next((c for c, _ in tried if c not in _SKIP), errno.ENOENT)
    if code in _SKIP:
        hint = "check the spelling and PATH" if "/" not in name else "check the path"
        return LaunchError(f"command not found: {shown} ({hint}; carbonwrap runs no shell)", 127)
    why = os.strerror(code)
    return LaunchError(f"cannot execute {shown}: {why} (check that it is a program this machine can run)", 126)


def _interpreter_error(shown: str, path: bytes) -> LaunchError:
    try:
        with open(path, "rb") as f:
            first = f.readline(512)
    except OSError:
        first = b""
    if first.startswith(b"#!"):
        line = first[2:].rstrip(b"\n")
        if line.endswith(b"\r"):
            return LaunchError(
                f"cannot execute {shown}: its #! line ends in a carriage return (Windows line endings); "
                f"convert it with: dos2unix {shown}",
                126,
            )
        interp = (line.split() or [b"?"])[0].decode("utf-8", "backslashreplace")
        return LaunchError(
            f"cannot execute {shown}: its #! interpreter {interp} was not found (install it or fix the #! line)", 126
        )
    return LaunchError(
        f"cannot execute {shown}: a library or loader it needs was not found (check it with 'ldd {shown}')", 126
    )
