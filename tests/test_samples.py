"""--samples rows from a Meter driven over fake powercap counters: energy, journal behaviour, refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from carbonwrap.meter import Meter
from carbonwrap.model import DOMAINS, Sample, TreeUsage
from carbonwrap.report import samples
from carbonwrap.report.samples import COLUMNS, SamplesWriter
from carbonwrap.sensors import rapl
from tests import fakes
from tests.conftest import ROOT, clean_env

THREADS = 8


def usage(t: float, share: float) -> TreeUsage:
    return TreeUsage(
        cpu_s=t * THREADS * share, rss_bytes=0, reaped_peak_rss_bytes=0, machine_busy_s=t * THREADS, threads=THREADS
    )


def drive(tmp_path: Path, writer: SamplesWriter, ticks: int = 300) -> Meter:
    """The session's loop with a fake clock: counters advanced by varying power, the tree at 25 %, uneven
    ticks, and a final partial interval."""
    fp = fakes.intel_server(tmp_path / "sys")
    zones, _ = rapl.discover(tmp_path / "sys")
    sensor = rapl.RaplSensor(zones)
    meter = Meter("tree")
    meter.prime(sensor.read(), usage(0.0, 0.25), 0.0)
    t = 0.0
    for k in range(1, ticks + 1):
        dt = 0.5 + 0.013 * (k % 7)
        if k == ticks:
            dt = 0.21  # the final partial interval
        t += dt
        fp.advance("intel-rapl:0", (40 + 30 * (k % 5)) * dt)
        fp.advance("intel-rapl:1", 25 * dt)
        fp.advance("intel-rapl:0:1", 6 * dt)
        fp.advance("intel-rapl:1:1", 4 * dt)
        s = meter.update(sensor.read(), usage(t, 0.25), t)
        writer.write(s, phase="train" if k > ticks // 2 else "load", g_per_kwh=56.0)
    return meter


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_the_rows_energy_equals_the_meters_within_1_percent(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "out" / f"s{suffix}"  # a missing parent directory is created
    w = SamplesWriter(str(path), "run-123")
    meter = drive(tmp_path, w)
    w.close()
    assert w.warning is None and w.rows == 300
    run_id, rows_it = samples.read(str(path))
    rows = list(rows_it)
    assert run_id == "run-123" and len(rows) == 300
    for kind, totals in (("charged", meter.charged_j), ("machine", meter.machine_j)):
        for d in ("cpu", "dram"):
            got = sum(r[f"{kind}_w_{d}"] * r["dt_s"] for r in rows)
            assert got == pytest.approx(totals[d], rel=0.01), (kind, d)
    assert all(r["machine_w_gpu"] is None and r["charged_w_gpu"] is None for r in rows)  # absent, not 0
    assert rows[-1]["dt_s"] == pytest.approx(0.21)
    assert [r["tree_cpu_share"] for r in rows] == [pytest.approx(0.25)] * len(rows)
    assert [r["phase"] for r in (rows[0], rows[-1])] == ["load", "train"]
    assert all(r["g_per_kwh"] == 56.0 for r in rows)
    ts = [r["t_s"] for r in rows]
    assert ts == sorted(ts)


def test_csv_has_a_header_and_the_run_id_in_the_first_row_only(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    w = SamplesWriter(str(path), "abc")
    w.write(Sample(1.0, 1.0, {"cpu": 10.0}, {"cpu": 5.0}, {}, 0.0, 0.5), phase='=cmd(),x\n"y"', g_per_kwh=None)
    w.write(Sample(2.0, 1.0, {"cpu": 10.0}, {"cpu": 5.0}, {}, 0.0, None))
    w.close()
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS) and COLUMNS[0] == "run_id"
    assert lines[1].startswith("abc,1.0,1.0,10.0,,,5.0,,,0.5,,")
    assert lines[-1].startswith(",2.0,1.0,")
    rows = list(samples.read(str(path))[1])
    assert rows[0]["phase"] == '=cmd(),x\n"y"'  # the formula escape is undone, quotes and commas survive
    assert "'=cmd()" in path.read_text()


def test_jsonl_names_the_run_in_its_first_line(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    w = SamplesWriter(str(path), "abc")
    for k in range(3):
        w.write(Sample(k + 1.0, 1.0, {"cpu": 2.0, "gpu": 4.0}, {"cpu": 1.0, "gpu": 1.0}, {}, 0.0, 0.1), "main", 12.5)
    w.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0]["run_id"] == "abc" and all("run_id" not in r for r in rows[1:])
    assert set(rows[1]) == set(COLUMNS) - {"run_id"}
    assert rows[2] == {
        "t_s": 3.0,
        "dt_s": 1.0,
        "machine_w_cpu": 2.0,
        "machine_w_dram": None,
        "machine_w_gpu": 4.0,
        "charged_w_cpu": 1.0,
        "charged_w_dram": None,
        "charged_w_gpu": 1.0,
        "tree_cpu_share": 0.1,
        "g_per_kwh": 12.5,
        "phase": "main",
    }


def test_rows_are_readable_while_the_writer_is_open(tmp_path: Path) -> None:
    """A journal: every row is on disk when write() returns, read by another process mid-run."""
    path = tmp_path / "s.jsonl"
    w = SamplesWriter(str(path), "live")
    for k in range(1, 6):
        w.write(Sample(float(k), 1.0, {"cpu": 3.0}, {"cpu": 2.0}, {}, 0.0, 0.2), "main", 1.0)
        probe = "import sys; print(sum(1 for _ in open(sys.argv[1])))"
        out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, timeout=60, check=True)
        assert int(out.stdout) == k
    run_id, rows = samples.read(str(path))
    assert run_id == "live" and len(list(rows)) == 5
    w.close()


def test_links_fifos_and_other_suffixes_are_refused_without_raising(tmp_path: Path) -> None:
    target = tmp_path / "target.csv"
    target.write_text("keep\n")
    (tmp_path / "link.csv").symlink_to(target)
    os.mkfifo(tmp_path / "fifo.csv")
    rfd = os.open(tmp_path / "fifo.csv", os.O_RDONLY | os.O_NONBLOCK)  # a reader: the open itself succeeds
    os.mkfifo(tmp_path / "lonely.jsonl")  # no reader: must not hang the run
    (tmp_path / "dir.csv").mkdir()
    try:
        for name, why in (
            ("link.csv", "Too many levels of symbolic links"),
            ("fifo.csv", "not a regular file"),
            ("lonely.jsonl", "No such device or address"),
            ("dir.csv", "Is a directory"),
            ("x.txt", "must end in .csv or .jsonl"),
        ):
            w = SamplesWriter(str(tmp_path / name), "id")
            assert not w.active and w.warning is not None and why in w.warning, (name, w.warning)
            w.write(Sample(1.0, 1.0, {}, {}, {}, 0.0))  # switched off: nothing, no error
    finally:
        os.close(rfd)
    assert target.read_text() == "keep\n"
    assert os.read(os.open(tmp_path / "fifo.csv", os.O_RDONLY | os.O_NONBLOCK), 100) == b""


def test_a_write_failure_mid_run_switches_the_writer_off_with_one_warning(tmp_path: Path) -> None:
    """A file size limit (a full disk behaves the same): the rows before it stay, the loop never sees an error."""
    script = (
        "import resource, sys\n"
        "from carbonwrap.model import Sample\n"
        "from carbonwrap.report.samples import SamplesWriter\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))\n"
        "w = SamplesWriter(sys.argv[1], 'id')\n"
        "for k in range(100): w.write(Sample(k + 1.0, 1.0, {'cpu': 1.0}, {'cpu': 1.0}, {}, 0.0), 'main', 1.0)\n"
        "print(w.rows, w.active)\n"
        "print(w.warning)\n"
    )
    path = tmp_path / "s.csv"
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)], env=clean_env(), cwd=ROOT, capture_output=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    first, warning = out.stdout.decode().splitlines()
    rows, active = first.split()
    assert active == "False" and 0 < int(rows) < 100
    assert "File too large" in warning and "goes on without samples" in warning
    assert len(list(samples.read(str(path))[1])) >= int(rows)


def test_the_columns_are_the_contracts() -> None:
    assert COLUMNS[1:] == (
        "t_s",
        "dt_s",
        *(f"machine_w_{d}" for d in DOMAINS),
        *(f"charged_w_{d}" for d in DOMAINS),
        "tree_cpu_share",
        "g_per_kwh",
        "phase",
    )


def test_reading_back_refuses_a_fifo_instead_of_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "s.csv")
    with pytest.raises(ValueError, match="not a regular file"):
        samples.read(str(tmp_path / "s.csv"))
