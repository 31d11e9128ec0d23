"""Pushgateway URLs and credentials: never echoed, accepted from CARBONWRAP_PUSHGATEWAY_AUTH, awkward label
values base64-encoded. A real HTTP server on 127.0.0.1 records what arrives."""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from carbonwrap.report.push import credential_env_names
from tests.conftest import clean_env

SECRET_URLS = {
    "no scheme": "ci-bot:s3cr3tpw@127.0.0.1:9091",
    "one slash": "http:/ci-bot:s3cr3tpw@127.0.0.1:9091",
    "hash in password": "http://ci-bot:s3cr#3tpw@127.0.0.1:9091",
    "question mark in password": "http://ci-bot:s3cr?3tpw@127.0.0.1:9091",
    "slash in password": "http://ci-bot:s3cr/3tpw@127.0.0.1:9091",
    "port too big": "http://ci-bot:s3cr3tpw@127.0.0.1:99999",
    "port not a number": "http://ci-bot:s3cr3tpw@127.0.0.1:90x1",
    "ftp": "ftp://ci-bot:s3cr3tpw@127.0.0.1",
}


@pytest.mark.parametrize("case", sorted(SECRET_URLS))
@pytest.mark.parametrize("from_env", [False, True])
def test_a_bad_url_is_exit_2_and_never_echoed(cw, tmp_path: Path, case: str, from_env: bool) -> None:
    # Before: no scheme / one slash / '#?/' in the password echoed the password; a bad port was exit 70.
    url = SECRET_URLS[case]
    marker = tmp_path / "launched"
    if from_env:
        r = cw("--", "touch", str(marker), env=clean_env(CARBONWRAP_PUSHGATEWAY=url))
    else:
        r = cw("--pushgateway", url, "--", "touch", str(marker))
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for secret in ("s3cr", "3tpw", "ci-bot"):
        assert secret not in err, err
    assert "pushgateway" in err.lower()
    assert not marker.exists()


class _Record(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        _Record.seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Record)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _Record.seen = []
    try:
        yield f"http://127.0.0.1:{srv.server_port}"
    finally:
        srv.shutdown()


def test_credentials_from_the_environment_become_basic_auth(cw, server: str, tmp_path: Path) -> None:
    rec = tmp_path / "r.jsonl"
    env = clean_env(CARBONWRAP_PUSHGATEWAY_AUTH="ci-bot:p@ss:w/rd#1")
    r = cw("-q", "--pushgateway", server, "-o", str(rec), "--", "true", env=env)
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    (_path, auth), *_ = _Record.seen
    assert auth == "Basic " + base64.b64encode(b"ci-bot:p@ss:w/rd#1").decode()
    assert "p@ss" not in rec.read_text()


def test_credentials_in_the_url_win_over_the_environment(cw, server: str) -> None:
    url = server.replace("http://", "http://url-user:url%2Fpw@")
    r = cw("-q", "--pushgateway", url, "--", "true", env=clean_env(CARBONWRAP_PUSHGATEWAY_AUTH="env:pw"))
    assert r.returncode == 0, r.stderr
    assert _Record.seen[0][1] == "Basic " + base64.b64encode(b"url-user:url/pw").decode()


def test_malformed_auth_variable_is_a_usage_error_that_shows_nothing(cw, server: str, tmp_path: Path) -> None:
    marker = tmp_path / "launched"
    env = clean_env(CARBONWRAP_PUSHGATEWAY_AUTH="justatoken123")
    r = cw("--pushgateway", server, "--", "touch", str(marker), env=env)
    assert r.returncode == 2 and b"CARBONWRAP_PUSHGATEWAY_AUTH needs user:password" in r.stderr
    assert b"justatoken123" not in r.stderr and not marker.exists()


def test_a_gateway_that_is_down_shows_no_credentials(cw) -> None:
    r = cw(
        "-q", "--pushgateway", "http://127.0.0.1:9", "--", "true", env=clean_env(CARBONWRAP_PUSHGATEWAY_AUTH="u:pw77")
    )
    assert r.returncode == 0 and b"push failed" in r.stderr and b"pw77" not in r.stderr


@pytest.mark.parametrize(
    ("label", "segment"), [(".", "label@base64/Lg=="), ("..", "label@base64/Li4="), ("a/b", "label@base64/YS9i")]
)
def test_dot_labels_are_base64_segments(cw, server: str, label: str, segment: str) -> None:
    # Before: '.' and '..' went out raw, and a URL path resolves them as steps ('/label/..' drops the label).
    r = cw("-q", "--pushgateway", server, "--label", label, "--", "true")
    assert r.returncode == 0, r.stderr
    assert _Record.seen[0][0].endswith("/" + segment)


def test_credential_env_names() -> None:
    env = {
        "CARBONWRAP_PUSHGATEWAY_AUTH": "u:p",
        "CARBONWRAP_PUSHGATEWAY": "http://u:p@gw:9091",
        "ELECTRICITYMAPS_TOKEN": "t",
        "CARBONWRAP_REGION": "FR",
        "PATH": "/bin",
    }
    assert credential_env_names(env) == {
        "CARBONWRAP_PUSHGATEWAY_AUTH",
        "CARBONWRAP_PUSHGATEWAY",
        "ELECTRICITYMAPS_TOKEN",
    }
    assert credential_env_names({"CARBONWRAP_PUSHGATEWAY": "http://gw:9091"}) == set()
    assert credential_env_names({"CARBONWRAP_PUSHGATEWAY": "http://u:p/x@gw"}) == {"CARBONWRAP_PUSHGATEWAY"}
    assert credential_env_names({}) == set()
