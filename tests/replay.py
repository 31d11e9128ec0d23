"""A real HTTP server on 127.0.0.1 that replays the recorded provider answers in ../shared/fixtures.

The recordings are read from the shared folder next to the repository (never copied into it). Times in them
are shifted by a whole number of half hours (NESO) or hours (Electricity Maps) so that they cover the run a
test makes; every value is the recorded one. Besides replaying, a route can hang, trickle, or fail.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
# ../shared beside the checkout; a git worktree under <top>/wt/<name> finds it two levels up.
FIXTURES = next(
    (p / "shared" / "fixtures" for p in (ROOT.parent, ROOT.parent.parent) if (p / "shared" / "fixtures").is_dir()),
    ROOT.parent / "shared" / "fixtures",
)
NESO_24H = "uk-carbon-intensity/emoncms-demandshaper__national_fw24h_2020-05-21T2100Z.json"
NESO_24H_ASKED = "2020-05-21T21:00Z"  # the `from` of the recorded request: the period ending there came first


def fixture(name: str) -> Any:
    """A recorded answer, parsed; skip without ../shared, fail under CARBONWRAP_REQUIRE_REAL=1."""
    path = FIXTURES / name
    if not path.is_file():
        if os.environ.get("CARBONWRAP_REQUIRE_REAL") == "1":
            pytest.fail(f"recorded fixture {path} is required (CARBONWRAP_REQUIRE_REAL=1)")
        pytest.skip(f"recorded fixture {path} is not here")
    return json.loads(path.read_text(encoding="utf-8"))


def wall(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def neso_time(wall_s: float) -> str:
    return datetime.fromtimestamp(wall_s, UTC).strftime("%Y-%m-%dT%H:%MZ")


def em_time(wall_s: float) -> str:
    return datetime.fromtimestamp(wall_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def shift_neso(rows: list[dict[str, Any]], by_s: float) -> list[dict[str, Any]]:
    out = copy.deepcopy(rows)
    for r in out:
        r["from"] = neso_time(wall(r["from"]) + by_s)
        r["to"] = neso_time(wall(r["to"]) + by_s)
    return out


def shift_em(doc: dict[str, Any], by_s: float) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    rows = out.get("history") or out.get("forecast") or [out]
    for r in rows:
        for k in ("datetime", "updatedAt", "createdAt"):
            if k in r:
                r[k] = em_time(wall(r[k]) + by_s)
    return out


class NesoSeries:
    """Answers /intensity/{from}/{to} and /intensity/{from}/fw24h|fw48h from recorded rows, as the API does:
    the periods whose end lies in [from, to] (fixtures' NOTES.md)."""

    def __init__(self, rows: list[dict[str, Any]], regional: dict[str, Any] | None = None) -> None:
        self.rows = rows
        self.regional = regional  # the recorded regional object (regionid, shortname, ...) to wrap rows in

    def answer(self, path: str) -> tuple[int, bytes]:
        parts = path.strip("/").split("/")
        if parts[0] == "regional":
            parts = parts[1:]
        lo = wall(parts[1])
        hi = lo + {"fw24h": 86400, "fw48h": 172800}[parts[2]] if parts[2].startswith("fw") else wall(parts[2])
        rows = [r for r in self.rows if lo <= wall(r["to"]) <= hi]
        if self.regional is not None:
            body: Any = {"data": {**self.regional, "data": rows}}
        else:
            body = {"data": rows}
        return 200, json.dumps(body).encode()


Route = Callable[[str], tuple[int, bytes]] | tuple[int, bytes] | str


class Replay:
    """The server: `routes` maps a path prefix to an answer, a callable of the path, 'hang' or 'trickle'."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                replay.requests.append((self.path, dict(self.headers.items())))
                route = replay.route(self.path)
                if route == "hang":
                    replay.release.wait(60)
                    return
                if route == "trickle":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    for _ in range(600):
                        if replay.release.is_set():
                            return
                        try:
                            self.wfile.write(b" ")
                            self.wfile.flush()
                        except OSError:
                            return
                        time.sleep(0.1)
                    return
                status, body = route(self.path) if callable(route) else route  # type: ignore[misc]
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def route(self, path: str) -> Any:
        for prefix in sorted(self.routes, key=len, reverse=True):
            if path.startswith(prefix):
                return self.routes[prefix]
        return (404, b'{"error":{"code":"404","message":"not found"}}')

    def paths(self, prefix: str = "") -> list[str]:
        return [p for p, _ in self.requests if p.startswith(prefix)]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def replay() -> Any:
    server = Replay()
    yield server
    server.close()
