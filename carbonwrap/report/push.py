"""Pushing metrics to a Prometheus Pushgateway: at the end of the run, and periodically during it.

A gateway that is down, slow or failing costs one warning and nothing else: the exit status and the local
records never depend on it. Credentials in the URL or in CARBONWRAP_PUSHGATEWAY_AUTH become an Authorization
header and are never printed, nor is a URL that fails its check.
"""

from __future__ import annotations

import base64
import os
import threading
import time
import urllib.parse
from collections.abc import Callable

from carbonwrap.credentials import AUTH_VAR as AUTH_VAR
from carbonwrap.credentials import URL_VAR as URL_VAR
from carbonwrap.credentials import credential_env_names as credential_env_names
from carbonwrap.credentials import has_credentials as has_credentials
from carbonwrap.report.text import clean_text

TIMEOUT_S = 5.0  # SPEC section 2: the overall deadline of one push
MAX_RESPONSE = 1 << 20  # a gateway's answer is read up to this much, never more
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_EXAMPLE = "such as http://localhost:9091 (credentials: CARBONWRAP_PUSHGATEWAY_AUTH=user:password)"


def redact(url: str) -> str:
    """The URL without its user name and password; for a URL that does not parse cleanly, only its host."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return "(the Pushgateway URL)"
    host = parts.hostname or ""
    if port:
        host += f":{port}"
    if "@" in url and "@" not in parts.netloc:  # credentials with a reserved character: show nothing of them
        return f"{parts.scheme}://***@(host)"
    if parts.username is None and parts.password is None:
        return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
    return urllib.parse.urlunsplit((parts.scheme, f"***@{host}", parts.path, "", ""))


def _segment(name: str, value: str) -> str:
    # The Pushgateway takes plain values as path segments, and any value base64url-encoded after '@base64'
    # ('.' and '..' would be resolved as path steps, '/' would split the segment, '' cannot be a segment).
    value = clean_text(value)
    if value and "/" not in value and value not in (".", ".."):
        return f"{name}/{urllib.parse.quote(value, safe='')}"
    return f"{name}@base64/{base64.urlsafe_b64encode(value.encode()).decode() or '='}"


def check_url(url: str) -> None:
    """Raise ValueError for a URL that cannot be a Pushgateway address. The message never shows the URL: it
    may hold a password."""
    if "://" not in url:
        raise ValueError(f"needs an http(s) URL with '://', {_EXAMPLE}; the value is not shown")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        raise ValueError(f"is not a URL, {_EXAMPLE}; the value is not shown") from None
    if "@" in url.split("://", 1)[1] and "@" not in parts.netloc:
        raise ValueError(
            "has credentials with a '/', '?' or '#' in them: percent-encode them, "
            f"or pass them in {AUTH_VAR}=user:password; the value is not shown"
        )
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"needs an http(s) URL, {_EXAMPLE}; the value is not shown")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"needs a port from 1 to 65535, or none, {_EXAMPLE}; the value is not shown")
    if not parts.hostname:
        raise ValueError(f"needs a host name, {_EXAMPLE}; the value is not shown")
    if parts.query or parts.fragment:
        raise ValueError("must not have a '?query' or '#fragment'; the value is not shown")


def check_auth(value: str) -> None:
    """CARBONWRAP_PUSHGATEWAY_AUTH is user:password; the message never shows it."""
    if ":" not in value:
        raise ValueError(f"{AUTH_VAR} needs user:password (the value is not shown)")


def basic_auth(url: str, auth: str | None) -> str | None:
    """The Authorization header: from the URL's user:password when it has them, else from `auth`."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
    elif auth:
        user, _, password = auth.partition(":")
    else:
        return None
    token = base64.b64encode(f"{user}:{password}".encode("utf-8", "surrogateescape")).decode()
    return f"Basic {token}"


class Pushgateway:
    """PUTs text exposition to /metrics/job/carbonwrap/instance/HOST/label/LABEL."""

    def __init__(self, url: str, host: str, label: str, timeout_s: float = TIMEOUT_S, auth: str | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        base = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self.target = f"{base}/metrics/job/carbonwrap/{_segment('instance', host)}/{_segment('label', label)}"
        self.shown = redact(url)
        self.timeout_s = timeout_s
        self.headers = {"Content-Type": CONTENT_TYPE}
        header = basic_auth(url, os.environ.get(AUTH_VAR) if auth is None else auth)
        if header is not None:
            self.headers["Authorization"] = header
        self.warning: str | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def push(self, text: str) -> bool:
        """One synchronous push; on failure the first reason is kept in `warning`.

        The socket timeout bounds each wait; the caller bounds the whole exchange (`finish`, the periodic
        thread is a daemon), so a gateway that trickles its answer cannot hold carbonwrap."""
        import urllib.error  # http.client and email come with these: loaded at the first push, after the launch
        import urllib.request

        req = urllib.request.Request(self.target, data=text.encode(), method="PUT", headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                resp.read(MAX_RESPONSE)
            return True
        except urllib.error.HTTPError as e:
            body = e.read(200).decode("utf-8", "replace").strip().replace("\n", " ")
            self._fail(f"HTTP {e.code} {e.reason}" + (f": {body}" if body else ""))
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            self._fail(f"{reason}" if str(reason) else type(e).__name__)
        except Exception as e:  # http.client's own errors (a malformed status line, too many headers)
            self._fail(type(e).__name__)
        return False

    def _fail(self, reason: str) -> None:
        with self._lock:
            if self.warning is None:
                self.warning = f"Pushgateway {self.shown}: push failed ({reason}); the local records are complete"

    def push_in_background(self, text: str) -> None:
        """Push without blocking the sampling loop; skipped while the previous push is still running."""
        if self._thread is not None and self._thread.is_alive():
            return
        from carbonwrap.signals import start_quietly

        self._thread = threading.Thread(target=self.push, args=(text,), daemon=True)
        start_quietly(self._thread)

    def finish(self, text: str, stop: Callable[[float], bool] | None = None) -> bool:
        """The final push, after any periodic one still under way, all within `timeout_s`.

        `stop(s)` waits up to s seconds and answers True when carbonwrap is asked to stop (SIGTERM): the push
        is then abandoned. Returns False when it was cut short by that, True otherwise (done or failed)."""
        end = time.monotonic() + self.timeout_s
        previous = self._thread

        def after_previous() -> None:
            if previous is not None:
                previous.join()
            self.push(text)

        def wait(s: float) -> bool:
            if stop is not None:
                return stop(s)
            time.sleep(s)
            return False

        from carbonwrap.signals import start_quietly

        final = threading.Thread(target=after_previous, daemon=True)
        start_quietly(final)
        while final.is_alive():
            left = end - time.monotonic()
            if left <= 0:
                self._fail(f"timed out: no answer within {self.timeout_s:g} s")
                return True
            if wait(min(left, 0.1)):
                return False
        return True
