#!/usr/bin/env python3
"""`carbonwrap report` on many records: wall time and peak RSS, measured with GNU time.

  python scripts/bench_report.py              # 100,000 records: a .jsonl and a .csv, 5 % of them in both
  python scripts/bench_report.py --records 20000 --keep DIR

The records are made from one real run's record (new ids, labels, hosts, days), written in a temporary
directory and removed afterwards; nothing is committed.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from carbonwrap.report.record import CSV_COLUMNS, to_row  # noqa: E402
from carbonwrap.report.sinks import csv_line, strict_json  # noqa: E402


def real_record(where: Path) -> dict:
    out = where / "one.json"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "TZ": "Etc/UTC"}
    subprocess.run([sys.executable, "-m", "carbonwrap", "-q", "-o", str(out), "--", "true"], env=env, check=True)
    rec: dict = json.loads(out.read_text())
    return rec


def generate(where: Path, records: int, duplicated: float) -> tuple[Path, Path, int]:
    """A .jsonl with half the runs, a .csv with the rest; `duplicated` of all records are copies across files."""
    base = real_record(where)
    rng = random.Random(14)
    dupes = int(records * duplicated)
    unique = records - dupes
    half = unique // 2
    jl, c = where / "runs.jsonl", where / "runs.csv"
    made = []
    for i in range(unique):
        rec = copy.deepcopy(base)
        rec["id"] = f"{i:032x}"
        rec["label"] = f"job-{i % 50}"
        rec["host"] = f"node{i % 20}"
        rec["started_at"] = f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00.000Z"
        rec["tags"] = {"team": f"t{i % 7}"}
        rec["energy_j"] = {**rec["energy_j"], "cpu": rng.random() * 100}
        made.append(rec)
    with jl.open("w", encoding="utf-8") as f:
        for rec in made[:half]:
            f.write(strict_json(rec) + "\n")
    with c.open("w", encoding="utf-8", newline="") as f:
        f.write(csv_line(list(CSV_COLUMNS)))
        for rec in made[half:] + rng.sample(made[:half], dupes):
            row = to_row(rec)
            f.write(csv_line([row[k] for k in CSV_COLUMNS]))
    return jl, c, dupes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--duplicated", type=float, default=0.05)
    ap.add_argument("--keep", type=Path, help="generate into DIR and keep it")
    args = ap.parse_args()
    time = shutil.which("time", path="/usr/bin") or sys.exit("needs GNU time (/usr/bin/time)")
    where = args.keep or Path(tempfile.mkdtemp(prefix="cw-bench-report-"))
    where.mkdir(parents=True, exist_ok=True)
    try:
        jl, c, dupes = generate(where, args.records, args.duplicated)
        print(
            f"{args.records} records ({dupes} duplicated across files): {jl.stat().st_size >> 20} MiB jsonl, "
            f"{c.stat().st_size >> 20} MiB csv"
        )
        for by in ("label", "day"):
            cmd = [time, "-v", sys.executable, "-m", "carbonwrap", "report", str(jl), str(c), "--by", by]
            r = subprocess.run(cmd, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, capture_output=True)
            err = r.stderr.decode()
            wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", err)
            rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
            cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): (\S+)", err))
            notes = [line for line in err.splitlines() if line.startswith("carbonwrap report:")]
            print(
                f"--by {by}: exit {r.returncode}, wall {wall and wall.group(1)}, CPU {cpu:.1f} s, "
                f"peak RSS {rss and int(rss.group(1)) // 1024} MiB; {'; '.join(notes)}"
            )
    finally:
        if args.keep is None:
            shutil.rmtree(where)


if __name__ == "__main__":
    main()
