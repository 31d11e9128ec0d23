"""HTML reports: the Series' merge, escaping, self-containment, and the pages in a real headless Chromium."""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import tracemalloc
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from carbonwrap.marks import Mark
from carbonwrap.model import Sample
from carbonwrap.phases import Phases
from carbonwrap.report.html import MAX_POINTS, Series, history_page, run_page, series_from_samples
from carbonwrap.report.samples import SamplesWriter
from carbonwrap.report.svg import num
from tests.conftest import require_real

EVIL = '<script>alert("x")</script> & "q" \x1b[31m'
SHOWN = EVIL.replace("\x1b", "\\x1b")  # what a reader sees: markup as text, the control character spelt out


def sample(k: int, dt: float = 1.0) -> Sample:
    c = {"cpu": (20 + 10 * math.sin(k / 40)) * dt, "dram": 2.0 * dt}
    m = {"cpu": c["cpu"] * 2, "dram": 5.0 * dt}
    return Sample(k * dt, dt, m, c, {}, 0.0, 0.3)


def test_the_series_merges_to_at_most_2000_points_and_keeps_every_joule() -> None:
    s = Series()
    total_c = total_m = 0.0
    for k in range(1, 12_346):
        smp = sample(k, 0.5)
        total_c += sum(smp.charged_j.values())
        total_m += sum(smp.machine_j.values())
        s.add(smp, 50.0 + (k % 10))
        assert len(s.points()) <= MAX_POINTS if k % 1000 == 0 else True
    pts = s.points()
    assert MAX_POINTS // 2 <= len(pts) <= MAX_POINTS
    assert sum(sum(p.charged_j.values()) for p in pts) == pytest.approx(total_c, rel=1e-12)
    assert sum(sum(p.machine_j.values()) for p in pts) == pytest.approx(total_m, rel=1e-12)
    assert sum(p.dt_s for p in pts) == pytest.approx(12_345 * 0.5)
    assert pts[-1].t_s == pytest.approx(12_345 * 0.5)
    assert all(50.0 <= p.g_per_kwh <= 59.0 for p in pts)
    assert s.domains == {"cpu", "dram"}


def test_a_100000_tick_series_keeps_its_memory_flat() -> None:
    """Memory cycles as points fill and merge, but its highs after 50,000 ticks are no higher than before."""
    s = Series()
    seen: list[tuple[int, int]] = []
    tracemalloc.start()
    try:
        for k in range(1, 100_001):
            s.add(sample(k), 50.0)
            if k % 500 == 0:
                seen.append((k, tracemalloc.get_traced_memory()[0]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    early = max(m for k, m in seen if 10_000 <= k <= 50_000)
    late = max(m for k, m in seen if k > 50_000)
    assert late <= early * 1.05  # a list that grew per tick would hold ~30 MB more by the end
    assert peak < 2 * 1024 * 1024
    assert len(s.points()) <= MAX_POINTS and s.intervals == 100_000


def _record(phases: list[dict[str, Any]] | None = None, **kw: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "schema": "carbonwrap.run/1",
        "id": "r1",
        "parent_id": None,
        "label": EVIL,
        "command": ["curl", "https://example.org/?a=1&b=<2>"],
        "host": "box",
        "started_at": "2026-12-01T10:00:00.000Z",
        "ended_at": "2026-12-01T10:33:20.000Z",
        "duration_s": 2000.0,
        "exit_code": 0,
        "cpu_time_s": 600.0,
        "scope": "tree",
        "pue": 1.0,
        "energy_j": {"cpu": 45678.9, "dram": 4000.0, "gpu": None, "total": 49678.9},
        "machine_energy_j": {"cpu": 91357.8, "dram": 10000.0, "gpu": None, "total": 101357.8},
        "methods": {"cpu": "measured", "dram": "measured", "gpu": None, "total": "measured"},
        "co2e_g": 0.7727,
        "intensity": {"region": "FR", "g_per_kwh": 56.0, "source": "RTE"},
        "sensors": [{"domain": "cpu", "name": "package-0", "method": "measured", "detail": ""}],
        "warnings": [EVIL],
        "tags": {},
        "phases": phases or [],
        "prediction": None,
    }
    rec.update(kw)
    return rec


def _run(points: int = 2000) -> tuple[dict[str, Any], Series]:
    s, p, cum = Series(), Phases(g_per_kwh=56.0), {"cpu": 0.0, "dram": 0.0}
    for k in range(1, points + 1):
        smp = sample(k)
        s.add(smp, 56.0)
        for d in cum:
            cum[d] += smp.charged_j[d]
        marks = {200: [Mark("phase", "train")], 1500: [Mark("phase", EVIL), Mark("progress", progress=0.75)]}
        p.update(float(k), cum, marks.get(k, []))
    total = sum(cum.values())
    rec = _record(
        p.phases(),
        duration_s=float(points),
        energy_j={**cum, "gpu": None, "total": total},
        co2e_g=total / 3.6e6 * 56.0,
        prediction=p.prediction(),
    )
    return rec, s


def _self_contained(page: str) -> None:
    low = page.lower()
    for bad in ("<script", "<link", "<img", "<iframe", "<object", "<embed", "src=", "@import", "@font-face"):
        assert bad not in low, bad
    assert low.count("href=") == 0
    assert low.count("url(") == low.count("url(#")  # only the page's own patterns
    assert "http://" not in low.replace("https://example.org/?a=1&amp;b=&lt;2&gt;", "")
    assert "https://" not in low.replace("https://example.org/?a=1&amp;b=&lt;2&gt;", "")


def test_the_run_page_is_self_contained_and_escapes_what_the_run_said() -> None:
    rec, s = _run(300)
    page = run_page(rec, s)
    _self_contained(page)
    assert EVIL not in page and "\x1b" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;q&quot; \\x1b[31m" in page
    assert "https://example.org/?a=1&amp;b=&lt;2&gt;" in page  # the command is shown, as text


def test_the_history_page_counts_each_run_once_and_not_a_nested_run_on_its_parent() -> None:
    recs = [
        _record(id="a", label="train", started_at="2026-11-01T01:00:00Z", co2e_g=2.0),
        _record(id="a", label="train", started_at="2026-11-01T01:00:00Z", co2e_g=2.0),  # the same run twice
        _record(id="b", label="train", started_at="2026-11-02T01:00:00Z", co2e_g=3.0),
        _record(id="c", label="eval", started_at="2026-11-02T05:00:00Z", co2e_g=1.0),
        _record(id="d", label="step", parent_id="b", started_at="2026-11-02T01:00:01Z", co2e_g=0.5),
    ]
    page = history_page(recs)
    _self_contained(page)
    assert "1 duplicate record(s) counted once" in page and "1 nested run(s)" in page
    dom = Dom.of(page)
    bars = [b for b in dom.bars if b["chart"] == "co2e-day"]
    assert sorted((b["data-cat"], b["data-series"], float(b["data-value"])) for b in bars) == [
        ("2026-11-01", "train", 2.0),
        ("2026-11-02", "eval", 1.0),
        ("2026-11-02", "train", 3.0),
    ]
    total = dom.table("totals")[-1]
    assert total[0] == "total" and total[1] == "3" and total[-2] == num(6.0)


def test_the_history_page_calls_a_run_estimated_by_the_records_rule() -> None:
    est = {"domain": "dram", "name": "estimate", "method": "estimated", "detail": ""}
    measured = {"cpu": "measured", "dram": "estimated", "gpu": None, "total": "measured"}
    estimated = {**measured, "total": "estimated"}
    recs = [
        # dram modelled but charged nothing: the total is measured, as the record says.
        _record(id="a", label="m", energy_j={"cpu": 9.0, "dram": 0.0, "gpu": None, "total": 9.0}, methods=measured),
        _record(id="b", label="e", methods=estimated),
        _record(id="c", label="old", methods=None),  # an older record: the same rule over its sensors
        {"id": "d", "label": "bare", "scope": "tree", "sensors": "junk"},  # a hostile one still draws
    ]
    recs[0]["sensors"] = recs[2]["sensors"] = [*recs[0]["sensors"], est]
    rows = {r[0]: r for r in Dom.of(history_page(recs)).table("totals")}
    assert [rows[k][2] for k in ("m", "e", "old", "bare")] == ["0 of 1", "1 of 1", "1 of 1", "0 of 1"]


class Dom(HTMLParser):
    """The elements the tests look for, from a page or from Chromium's --dump-dom."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, str]] = []
        self.bars: list[dict[str, str]] = []
        self.bands: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.texts: list[str] = []
        self._chart = ""
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None

    @classmethod
    def of(cls, page: str) -> Dom:
        d = cls()
        d.feed(page)
        return d

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "svg":
            self._chart = a.get("id", "")
        elif tag == "polyline":
            self.lines.append({**a, "chart": self._chart})
        elif tag == "rect" and a.get("class") == "bar":
            self.bars.append({**a, "chart": self._chart})
        elif tag == "g" and a.get("class") == "band":
            self.bands.append(a.get("data-phase", ""))
        elif tag == "table":
            self._table = []
            self.tables[a.get("class") or f"t{len(self.tables)}"] = self._table
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self._table[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        self.texts.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def table(self, cls: str) -> list[list[str]]:
        return [r for r in self.tables[cls] if r]


def chromium(tmp_path: Path, page: Path, *args: str) -> tuple[str, list[dict[str, Any]]]:
    """Run the real browser on a file; return stdout and the requests the page itself made (from the net log)."""
    exe = require_real("chromium")
    netlog = tmp_path / f"net-{page.stem}-{len(args)}.json"
    cmd = [
        exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", f"--log-net-log={netlog}", *args, page.as_uri(),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, timeout=180, check=False, env={**os.environ, "TZ": "Etc/UTC"})
    assert out.returncode == 0, out.stderr[-2000:]
    log = json.loads(netlog.read_text() or "{}")
    types = {v: k for k, v in log.get("constants", {}).get("logEventTypes", {}).items()}
    made = []
    for e in log.get("events", []):
        p = e.get("params") or {}
        # The browser's own background requests have no origin; what a page loads carries its origin.
        if types.get(e["type"]) == "URL_REQUEST_START_JOB" and "url" in p and p.get("initiator") != "not an origin":
            made.append(p)
    return out.stdout.decode(), made


def png_pixels(path: Path) -> tuple[int, int, list[int]]:
    """Decode an 8-bit RGB(A) PNG with the standard library: width, height and the grey value of each pixel."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride = zlib.decompress(idat), w * bpp
    prev, grey = bytearray(stride), []
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        grey += [(line[i] + line[i + 1] + line[i + 2]) // 3 for i in range(0, stride, bpp)]
        prev = line
    return w, h, grey


def test_the_browser_check_sees_a_page_that_loads_something(tmp_path: Path) -> None:
    """The canary for the check below: a page with an external stylesheet and image is caught."""
    page = tmp_path / "leaky.html"
    page.write_text('<link rel="stylesheet" href="http://127.0.0.1:9/x.css"><img src="https://127.0.0.1:9/a.png">')
    _, made = chromium(tmp_path, page, "--dump-dom")
    assert {p["url"] for p in made} == {"http://127.0.0.1:9/x.css", "https://127.0.0.1:9/a.png"}


def test_the_run_page_in_chromium_has_its_charts_tables_and_no_request(tmp_path: Path) -> None:
    rec, s = _run(2000)
    page = tmp_path / "run.html"
    page.write_text(run_page(rec, s))
    dom_text, made = chromium(tmp_path, page, "--dump-dom")
    assert made == []
    dom = Dom.of(dom_text)
    power = {ln["data-series"]: ln for ln in dom.lines if ln["chart"] == "power"}
    assert sorted(power) == ["cpu charged", "cpu machine", "dram charged", "dram machine"]
    n = len(s.points())
    assert all(len(ln["points"].split()) == n == int(ln["data-points"]) for ln in power.values())
    assert [ln["chart"] for ln in dom.lines if ln["chart"] != "power"] == ["intensity", "co2e"]
    assert dom.bands.count("train") == 3 and dom.bands.count(SHOWN) == 3  # one band per chart, by name
    phases = dom.table("phases")
    assert [r[0] for r in phases[1:]] == ["main", "train", SHOWN]
    assert phases[2][3] == f"{num(rec['phases'][1]['energy_j']['cpu'])} J"
    energy = dom.table("t0")[1:]  # the first table: energy per domain
    assert energy[0] == ["cpu", f"{num(rec['energy_j']['cpu'])} J", f"{num(91357.8)} J", "measured"]
    assert any(f"{num(rec['co2e_g'])} g" in t for t in dom.texts)
    assert len(dom.table("points")) == n + 1
    assert SHOWN in "".join(dom.texts)  # shown as text, never run: no script element came of it
    assert "<script" not in dom_text


def test_the_pages_screenshots_are_not_blank(tmp_path: Path) -> None:
    rec, s = _run(2000)
    run = tmp_path / "run.html"
    run.write_text(run_page(rec, s))
    hist = tmp_path / "history.html"
    recs = [
        _record(
            id=f"h{i}", label=f"job{i % 4}", started_at=f"2026-11-{1 + i % 9:02d}T0{i % 10}:00:00Z", co2e_g=1 + i % 3
        )
        for i in range(60)
    ]
    hist.write_text(history_page(recs))
    for page in (run, hist):
        png = tmp_path / f"{page.stem}.png"
        _, made = chromium(tmp_path, page, "--window-size=420,900", f"--screenshot={png}")  # a phone's width
        assert made == []
        w, h, grey = png_pixels(png)
        assert (w, h) == (420, 900)
        mean = sum(grey) / len(grey)
        var = sum((g - mean) ** 2 for g in grey) / len(grey)
        dark = sum(g < 128 for g in grey)
        assert var > 100 and dark > 2000, (page.name, var, dark)  # text, axes and lines, not an empty page


def test_a_samples_file_makes_the_same_series(tmp_path: Path) -> None:
    w = SamplesWriter(str(tmp_path / "s.csv"), "rid")
    direct = Series()
    for k in range(1, 501):
        w.write(sample(k), "main", 40.0)
        direct.add(sample(k), 40.0)
    w.close()
    run_id, s = series_from_samples(str(tmp_path / "s.csv"))
    assert run_id == "rid" and s.domains == direct.domains
    got = sum(sum(p.charged_j.values()) for p in s.points())
    assert got == pytest.approx(sum(sum(p.charged_j.values()) for p in direct.points()), rel=1e-6)
    page = history_page([_record(id="rid")], {"rid": s})
    assert 'id="run0"' in page


def test_pages_render_for_a_run_without_samples_and_for_no_runs() -> None:
    """A run that ended before its first tick, a record of nothing, an empty history: a page, not a crash."""
    short = run_page(_record(energy_j={"cpu": 0.0, "dram": None, "gpu": None, "total": 0.0}), Series())
    assert 'data-points="0"' in short and "All 0 points" in short
    _self_contained(run_page({}, None))
    empty = history_page([])
    _self_contained(empty)
    assert "0 runs over 0 day(s)" in empty
