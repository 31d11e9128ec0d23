"""`--samples PATH` (SPEC.md section 10.1): one row per interval, written and synced as the run goes, so the
file is a journal a crash of the machine keeps up to the last interval. No third-party imports."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import stat
from collections.abc import Iterator
from typing import Any

from carbonwrap.model import DOMAINS, Sample

SUFFIXES = (".csv", ".jsonl")  # the two formats a samples file can have, told by its name

COLUMNS = (
    "run_id",  # the run's id, in the first row only
    "t_s",
    "dt_s",
    *(f"machine_w_{d}" for d in DOMAINS),
    *(f"charged_w_{d}" for d in DOMAINS),
    "tree_cpu_share",
    "g_per_kwh",
    "phase",
)
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _num(x: float | None) -> float | None:
    return round(x, 6) if x is not None and math.isfinite(x) else None


def row(sample: Sample, phase: str, g_per_kwh: float | None) -> dict[str, Any]:
    """One interval as SPEC.md 10.1 names it: mean power per domain (None for an absent domain)."""
    dt = sample.dt_s
    out: dict[str, Any] = {"t_s": _num(sample.t_s), "dt_s": _num(dt)}
    for kind, energy in (("machine", sample.machine_j), ("charged", sample.charged_j)):
        for d in DOMAINS:
            j = energy.get(d)
            out[f"{kind}_w_{d}"] = None if j is None else _num(j / dt if dt > 0 else 0.0)
    out["tree_cpu_share"] = _num(sample.tree_cpu_share)
    out["g_per_kwh"] = _num(g_per_kwh)
    out["phase"] = phase
    return out


def _ascii(path: str) -> str:
    return path.encode("ascii", "backslashreplace").decode()


class SamplesWriter:
    """Rows to a `.csv` (with a header) or `.jsonl` file. Never raises: a failure switches it off and sets
    `warning`, one line for the record. The path must be a regular file or absent; links are not followed."""

    def __init__(self, path: str, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self.rows = 0
        self.warning: str | None = None
        self._fd = -1
        self._csv = path.lower().endswith(".csv")
        if not path.lower().endswith(SUFFIXES):
            self._off("the name must end in .csv or .jsonl")
            return
        try:
            parent = os.path.dirname(path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            # O_NONBLOCK: a FIFO with no reader fails at once instead of hanging the run; checked below.
            flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            self._fd = os.open(path, flags, 0o644)
            if not stat.S_ISREG(os.fstat(self._fd).st_mode):
                self._off("not a regular file")
                return
            os.ftruncate(self._fd, 0)
            if self._csv:
                self._put(",".join(COLUMNS) + "\n")
        except OSError as e:
            self._off(e.strerror or type(e).__name__)

    @property
    def active(self) -> bool:
        return self._fd >= 0

    def write(self, sample: Sample, phase: str = "main", g_per_kwh: float | None = None) -> None:
        """Append and sync the row of one interval; `phase` is the phase the interval belonged to."""
        if self._fd < 0:
            return
        try:
            r = {"run_id": self.run_id if self.rows == 0 else None, **row(sample, phase, g_per_kwh)}
            if self._csv:
                self._put(_csv_line(r))
            else:
                if self.rows:
                    del r["run_id"]
                self._put(json.dumps(r, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n")
            self.rows += 1
        except (OSError, ValueError) as e:
            self._off(getattr(e, "strerror", None) or repr(e))

    def _put(self, text: str) -> None:
        data = text.encode("utf-8", "backslashreplace")
        while data:
            n = os.write(self._fd, data)
            data = data[n:]
        os.fdatasync(self._fd)

    def _off(self, why: str) -> None:
        self.warning = f"samples: cannot write {_ascii(self.path)} ({why}); the run goes on without samples"
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return "'" + v if v.startswith(_FORMULA) else v
    return repr(v)


def _csv_line(r: dict[str, Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_cell(r[c]) for c in COLUMNS])
    return buf.getvalue()


def read(path: str) -> tuple[str | None, Iterator[dict[str, Any]]]:
    """A samples file back: its run id, and its rows with numbers as floats (None where empty). A line that
    does not parse is skipped. The rows are read lazily, so a long run's file is never held whole.
    Raises OSError or ValueError (not a regular file) for the caller to count, as `report` does."""
    if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the reader
        raise ValueError(f"{_ascii(path)} is not a regular file")
    fh = open(path, newline="", encoding="utf-8", errors="replace")  # noqa: SIM115 - closed by the generator
    if path.lower().endswith(".csv"):
        rows: Iterator[dict[str, Any]] = (_from_csv(r) for r in csv.DictReader(fh))
    else:
        rows = (r for r in map(_from_json, fh) if r is not None)
    first = next(rows, None)

    def gen() -> Iterator[dict[str, Any]]:
        with fh:
            if first is not None:
                yield first
            yield from rows

    run_id = first.get("run_id") if first else None
    return (str(run_id) if run_id else None), gen()


def _from_csv(r: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in COLUMNS:
        v = r.get(c) or ""
        if c in ("run_id", "phase"):
            out[c] = v[1:] if v.startswith("'") and v[1:].startswith(_FORMULA) else v
        else:
            try:
                out[c] = float(v) if v else None
            except ValueError:
                out[c] = None
    return out


def _from_json(line: str) -> dict[str, Any] | None:
    try:
        r = json.loads(line)
    except ValueError:
        return None
    return r if isinstance(r, dict) else None
