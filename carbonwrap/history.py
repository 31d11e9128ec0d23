"""Reading records back for `carbonwrap report`: files, directories, stdin; bounded, never fatal.

Each problem (a malformed line, an oversized field, a non-finite number, deep nesting, a FIFO or a device)
is counted and described in one line; nothing here raises on bad input.
"""

from __future__ import annotations

import csv
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from carbonwrap.aggregate import Run, from_record
from carbonwrap.report.files import kind
from carbonwrap.report.record import from_row

SUFFIXES = (".jsonl", ".csv", ".json")
LINE_LIMIT = 16 * 1024 * 1024  # one record: a command line of several MB is valid, a /dev/zero is not
_BAD = (KeyError, ValueError, TypeError, AttributeError, RecursionError, OverflowError, csv.Error)


@dataclass(slots=True)
class Loaded:
    runs: list[Run] = field(default_factory=list)  # each id once, in the order first seen
    problems: list[str] = field(default_factory=list)  # "where: why", one line each
    duplicates: int = 0  # runs dropped because their id was already read
    records: int = 0  # every record read, duplicates included
    _ids: set[str] = field(default_factory=set)

    def add(self, run: Run) -> None:
        self.records += 1
        if run.id:
            if run.id in self._ids:
                self.duplicates += 1
                return
            self._ids.add(run.id)
        self.runs.append(run)

    def bad(self, where: str, why: object) -> None:
        text = why if isinstance(why, str) else f"{type(why).__name__}: {why}"
        self.problems.append(f"{where}: {' '.join(str(text).split())[:200]}")


def expand(args: list[str]) -> list[str]:
    """Each argument, with a directory replaced by its .jsonl, .csv and .json files, recursively, in order.
    Raises FileNotFoundError for a path that does not exist."""
    out: list[str] = []
    for a in args:
        if a == "-":
            out.append(a)
            continue
        if not os.path.lexists(a):
            raise FileNotFoundError(a)
        if os.path.isdir(a):
            for root, dirs, names in os.walk(a):
                dirs.sort()
                out += [os.path.join(root, n) for n in sorted(names) if Path(n).suffix.lower() in SUFFIXES]
        else:
            out.append(a)
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} (records are strict JSON)")


def parse_json(text: str | bytes) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def _lines(f: IO[bytes]) -> Iterator[bytes | None]:
    """The lines of `f`, each at most LINE_LIMIT bytes; None stands for a longer line, skipped in bounded reads."""
    while True:
        line = f.readline(LINE_LIMIT + 1)
        if not line:
            return
        if len(line) > LINE_LIMIT:
            while line and not line.endswith(b"\n"):
                line = f.readline(1 << 20)
            yield None
        else:
            yield line


def _jsonl(f: IO[bytes], name: str, out: Loaded) -> None:
    for n, line in enumerate(_lines(f), 1):
        if line is None:
            out.bad(f"{name}:{n}", f"line longer than {LINE_LIMIT >> 20} MiB, skipped")
        elif line.strip():
            try:
                out.add(from_record(parse_json(line)))
            except _BAD as e:
                out.bad(f"{name}:{n}", e)


def _csv(f: IO[bytes], name: str, out: Loaded) -> None:
    too_long: list[int] = []

    def text() -> Iterator[str]:
        for n, line in enumerate(_lines(f), 1):
            if line is None:
                too_long.append(n)
                continue
            yield line.decode("utf-8", "replace")

    reader = csv.reader(text())
    header: list[str] | None = None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            out.bad(f"{name}:{reader.line_num}", e)
            continue
        for n in too_long:
            out.bad(f"{name}:{n}", f"line longer than {LINE_LIMIT >> 20} MiB, skipped")
        too_long.clear()
        if not row:
            continue
        if row[0] == "schema":  # a header, also in the middle of files concatenated on stdin
            header = row
            continue
        if header is None or len(row) != len(header):
            out.bad(f"{name}:{reader.line_num}", "not a row of a carbonwrap CSV (header missing or cells mismatched)")
            continue
        try:
            out.add(from_record(from_row(dict(zip(header, row, strict=True)))))
        except _BAD as e:
            out.bad(f"{name}:{reader.line_num}", e)


def _json(f: IO[bytes], name: str, out: Loaded) -> None:
    data = f.read(LINE_LIMIT + 1)
    if len(data) > LINE_LIMIT:
        out.bad(name, f"larger than {LINE_LIMIT >> 20} MiB, skipped")
        return
    try:
        doc = parse_json(data)
        for rec in doc if isinstance(doc, list) else [doc]:
            out.add(from_record(rec))
    except _BAD as e:
        out.bad(f"{name}:1", e)


def _read(f: IO[bytes], name: str, suffix: str, out: Loaded) -> None:
    if suffix == ".csv":
        _csv(f, name, out)
    elif suffix == ".json":
        _json(f, name, out)
    elif suffix == ".jsonl":
        _jsonl(f, name, out)
    else:  # stdin or an unknown suffix: JSON lines when it starts with '{', else CSV
        head = f.peek(1 << 16) if hasattr(f, "peek") else b""
        first = head.lstrip()[:1]
        if first == b"{" and head.lstrip().split(b"\n", 1)[0].strip() == b"{":
            _json(f, name, out)  # one indented record (a .json file piped in)
        else:
            (_jsonl if first in (b"{", b"") else _csv)(f, name, out)


def load(args: list[str], stdin: IO[bytes] | None = None) -> Loaded:
    """Every record of the files named (after expand), each id counted once."""
    csv.field_size_limit(LINE_LIMIT)
    out = Loaded()
    for a in args:
        if a == "-":
            if stdin is not None:
                _read(stdin, "<stdin>", "", out)
            continue
        try:
            fd = os.open(a, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not block the report
        except OSError as e:
            out.bad(a, f"cannot read: {e.strerror or e}")
            continue
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            out.bad(a, f"{kind(mode)}, not a regular file; skipped")
            continue
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as f:
            _read(f, a, Path(a).suffix.lower(), out)
    return out
