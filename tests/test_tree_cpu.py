"""Exact process-tree CPU time, compared with /usr/bin/time on the same command in the same run."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import require_real

PY = sys.executable
BURN = "import time\nend = time.process_time() + {s}\nwhile time.process_time() < end: pass\n"


def _time_inside_carbonwrap(cw, tmp_path: Path, *command: str) -> tuple[float, float, dict]:
    """Run /usr/bin/time COMMAND under carbonwrap: both see the same processes in the same run."""
    gnu_time = require_real("/usr/bin/time")
    rec = tmp_path / "r.json"
    times = tmp_path / "time.txt"
    r = cw("-q", "-i", "0.2", "-o", str(rec), "--", gnu_time, "-o", str(times), "-f", "%U %S", *command)
    assert r.returncode == 0, r.stderr
    user, sys_ = (float(x) for x in times.read_text().split()[-2:])
    record = json.loads(rec.read_text())
    return record["cpu_time_s"], user + sys_, record


def test_four_parallel_busy_children(cw, tmp_path: Path) -> None:
    burn = BURN.format(s=0.6)
    script = "\n".join(f"{PY} -c '{burn}' &" for _ in range(4)) + "\nwait\n"
    ours, theirs, _ = _time_inside_carbonwrap(cw, tmp_path, "sh", "-c", script)
    assert theirs > 2.2
    assert ours == pytest.approx(theirs, rel=0.05)
    print(f"four parallel: carbonwrap {ours:.3f} s, /usr/bin/time {theirs:.3f} s")


def test_three_hundred_short_lived_children(cw, tmp_path: Path) -> None:
    # Each child lives far less than one 0.2 s interval; only the reaped totals can count them.
    script = "i=0; while [ $i -lt 300 ]; do awk 'BEGIN{for(k=0;k<200000;k++)s+=k}'; i=$((i+1)); done"
    ours, theirs, _ = _time_inside_carbonwrap(cw, tmp_path, "sh", "-c", script)
    assert theirs > 0.3
    assert ours == pytest.approx(theirs, rel=0.05)
    print(f"300 short-lived: carbonwrap {ours:.3f} s, /usr/bin/time {theirs:.3f} s")


def test_an_orphaned_grandchild_is_counted_in_full(cw, tmp_path: Path) -> None:
    # The subshell exits at once, orphaning the burner; /usr/bin/time never sees its CPU time, while
    # carbonwrap (a child subreaper) inherits and reaps it.
    burn = BURN.format(s=1.0)
    done = tmp_path / "done"  # the command outlives the burner however slow a loaded machine makes it
    script = f"(({PY} -c '{burn}'; touch {done}) &); while [ ! -e {done} ]; do sleep 0.05; done; sleep 0.2"
    ours, theirs, _ = _time_inside_carbonwrap(cw, tmp_path, "sh", "-c", script)
    assert theirs < 0.2
    assert ours == pytest.approx(1.0 + theirs, abs=0.1)
    print(f"orphaned grandchild: carbonwrap {ours:.3f} s, /usr/bin/time {theirs:.3f} s")


def test_descendants_still_running_at_exit_are_named(cw, tmp_path: Path) -> None:
    rec = tmp_path / "r.json"
    marker = tmp_path / "left"
    r = cw("-q", "-o", str(rec), "--", "sh", "-c", f"(sleep 3 &); touch {marker}")
    assert r.returncode == 0 and marker.exists()
    warnings = json.loads(rec.read_text())["warnings"]
    assert any(re.search(r"1 descendant\(s\) still running .*sleep", w) for w in warnings), warnings


def test_carbonwraps_own_cpu_is_not_charged(cw, tmp_path: Path) -> None:
    rec = tmp_path / "r.json"
    r = cw("-q", "-i", "0.05", "-o", str(rec), "--", "sleep", "1")
    assert r.returncode == 0
    assert json.loads(rec.read_text())["cpu_time_s"] < 0.05


def test_a_command_over_before_the_first_sample_is_charged_its_memory(cw, tmp_path: Path) -> None:
    # 400 MB touched and freed well inside one 5 s interval: no scan ever sees it alive.
    rec = tmp_path / "r.json"
    burn = "b = bytearray(400 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n" + BURN.format(s=0.2)
    r = cw("-q", "-i", "5", "-o", str(rec), "--", PY, "-c", burn)
    assert r.returncode == 0, r.stderr
    record = json.loads(rec.read_text())
    if record["methods"]["dram"] == "measured":
        pytest.skip("a RAPL DRAM zone is charged by CPU share: this is the estimate's resident-memory rule")
    assert record["duration_s"] < 5.0
    assert record["energy_j"]["dram"] > 0.0, record  # its peak resident memory, from the kernel's ru_maxrss
    assert record["energy_j"]["dram"] < record["machine_energy_j"]["dram"]
