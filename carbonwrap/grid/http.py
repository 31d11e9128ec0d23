"""The one network client of the live grid figures: GET with an overall deadline, a size cap, and a cancel.

urllib is imported here only, and only when a request is made. The request runs in a daemon thread so that
neither a slow DNS lookup nor a server that trickles bytes can hold the caller past its deadline or past a
`cancel` event (SIGTERM after the command's exit, SPEC.md section 2): the caller polls every 50 ms and walks
away; the thread stops at its next chunk or socket timeout. Messages name the host, never the URL's query or
a header, so a token cannot leak into one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from carbonwrap.signals import start_quietly

MAX_BYTES = 1 << 20
CHUNK = 16384
POLL_S = 0.05
USER_AGENT = "carbonwrap"


class FetchError(Exception):
    """A request that gave no usable answer; str() is one line for the user. `status` is the HTTP status."""

    def __init__(self, message: str, status: int | None = None, timeout: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.timeout = timeout


@dataclass
class _Job:
    body: bytes | None = None
    error: FetchError | None = None
    done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)


def host(url: str) -> str:
    parts = urlsplit(url)
    name = parts.hostname or "the server"
    return f"{name}:{parts.port}" if parts.port else name


def _translate(e: BaseException, host: str, timeout_s: float) -> FetchError:
    import socket
    import urllib.error

    if isinstance(e, urllib.error.HTTPError):
        return FetchError(f"{host} answered HTTP {e.code}", e.code)
    reason = e.reason if isinstance(e, urllib.error.URLError) else e
    if isinstance(reason, socket.gaierror):
        return FetchError(f"cannot resolve {host} (DNS failure; offline?)")
    if isinstance(reason, TimeoutError | socket.timeout):
        return FetchError(f"no answer from {host} within {timeout_s:.3g} s", timeout=True)
    if isinstance(reason, ConnectionRefusedError):
        return FetchError(f"{host} refused the connection")
    if isinstance(reason, OSError) and reason.errno in (101, 113, 65, 51):  # ENETUNREACH, EHOSTUNREACH (Linux/BSD)
        return FetchError(f"{host} is unreachable (offline?)")
    text = str(getattr(reason, "strerror", None) or reason).replace("\n", " ")[:120]
    return FetchError(f"cannot fetch from {host}: {text}")


def _work(job: _Job, url: str, headers: Mapping[str, str], timeout_s: float, max_bytes: int) -> None:
    import urllib.request

    name = host(url)
    try:
        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "application/json", **headers})
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # http/https only: checked by get()
            chunks: list[bytes] = []
            size = 0
            while not job.stop.is_set():
                chunk = resp.read1(CHUNK)
                if not chunk:
                    job.body = b"".join(chunks)
                    return
                size += len(chunk)
                if size > max_bytes:
                    job.error = FetchError(f"the answer from {name} is larger than {max_bytes // 1024} KiB")
                    return
                chunks.append(chunk)
    except Exception as e:  # a thread must not die with a traceback; everything becomes one line
        job.error = _translate(e, name, timeout_s)
    finally:
        job.done.set()


def get(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    deadline_s: float = 10.0,
    cancel: threading.Event | None = None,
    max_bytes: int = MAX_BYTES,
) -> bytes:
    """The body of a 2xx answer to GET `url`, within `deadline_s` overall; FetchError otherwise."""
    scheme = urlsplit(url).scheme
    name = host(url)
    if scheme not in ("http", "https"):
        raise FetchError(f"the URL for {name} must start with http:// or https://")
    if cancel is not None and cancel.is_set():
        raise FetchError("cancelled")
    job = _Job()
    worker = threading.Thread(
        target=_work, args=(job, url, dict(headers or {}), max(deadline_s, 0.1), max_bytes), daemon=True
    )
    end = time.monotonic() + deadline_s
    start_quietly(worker)  # signals stay with the main thread, which decides what they mean
    while not job.done.wait(POLL_S):
        if cancel is not None and cancel.is_set():
            job.stop.set()
            raise FetchError("cancelled")
        if time.monotonic() >= end:
            job.stop.set()
            raise FetchError(f"no complete answer from {name} within {deadline_s:.3g} s", timeout=True)
    if job.error is not None:
        raise job.error
    assert job.body is not None
    return job.body
