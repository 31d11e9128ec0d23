"""CSV rows: quoting of every line break, reversible formula escape, tags and warnings as JSON, and the round
trip: what `report` reads from a run's CSV row equals what it reads from the same run's JSONL line."""

from __future__ import annotations

import csv
import io
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbonwrap import history
from carbonwrap.report import sinks
from carbonwrap.report.record import CSV_COLUMNS, SCHEMA, from_row, split_command, to_row, unescape_cell
from carbonwrap.report.text import sanitise

# Any text, with bytes that were not UTF-8 (surrogateescape) and every kind of line break mixed in.
TEXT = st.text(
    alphabet=st.one_of(
        st.characters(),
        st.sampled_from(["\r", "\n", "\x00", "\udcff", "'", "=", "+", "-", "@", "\t", '"', ",", ";", "|"]),
    ),
    max_size=30,
)
FLOAT = st.floats(allow_nan=False, allow_infinity=False, width=64)
ENERGY = st.one_of(st.none(), st.floats(min_value=0, allow_nan=False, allow_infinity=False))
WHEN = st.builds(
    lambda t, minutes: t.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat(),
    st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30)),
    st.integers(-14 * 60, 14 * 60),
)


@st.composite
def records(draw: Any) -> dict[str, Any]:
    energy = {d: draw(ENERGY) for d in ("cpu", "dram", "gpu")}
    energy["total"] = sum(v for v in energy.values() if v is not None)
    methods = st.sampled_from(["measured", "estimated"])
    return {
        "schema": SCHEMA,
        "id": draw(TEXT),
        "parent_id": draw(st.one_of(st.none(), TEXT)),
        "label": draw(TEXT),
        "command": draw(st.lists(TEXT, min_size=1, max_size=4)),
        "cwd": draw(TEXT),
        "host": draw(TEXT),
        "started_at": draw(WHEN),
        "ended_at": draw(WHEN),
        "duration_s": draw(FLOAT),
        "exit_code": draw(st.integers(-(2**31), 2**31)),
        "signal": draw(st.one_of(st.none(), st.integers(1, 64))),
        "cpu_time_s": draw(FLOAT),
        "scope": draw(st.sampled_from(["tree", "machine"])),
        "pue": draw(FLOAT),
        "energy_j": energy,
        "machine_energy_j": {k: draw(ENERGY) for k in ("cpu", "dram", "gpu", "total")},
        "co2e_g": draw(FLOAT),
        "intensity": {
            "region": draw(st.one_of(st.none(), TEXT)),
            "name": None,
            "g_per_kwh": draw(FLOAT),
            "year": draw(st.one_of(st.none(), st.integers(1990, 2100))),
            "source": draw(TEXT),
            "how": draw(TEXT),
            "note": draw(TEXT),
        },
        "sensors": [{"domain": d, "name": "x", "method": draw(methods), "detail": ""} for d in ("cpu", "dram")],
        "gpus": [],
        "warnings": draw(st.lists(TEXT, max_size=3)),
        "tags": draw(st.dictionaries(TEXT, TEXT, max_size=4)),
        "budget": None,
    }


def _one(path: Path) -> history.Loaded:
    loaded = history.load([str(path)])
    assert loaded.problems == [], loaded.problems
    return loaded


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_report_reads_the_same_run_from_csv_and_from_jsonl(rec: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as d:
        jl, c = Path(d) / "r.jsonl", Path(d) / "r.csv"
        sinks.write(str(jl), rec)
        sinks.write(str(c), rec)
        from_jsonl, from_csv = _one(jl).runs, _one(c).runs
        assert from_csv == from_jsonl and len(from_csv) == 1
        # And the CSV row holds exactly the record's text, line breaks, quotes and apostrophes included.
        rows = list(csv.reader(io.StringIO(c.read_bytes().decode(), newline="")))
        assert len(rows) == 2 and rows[0] == list(CSV_COLUMNS)
        back = from_row(dict(zip(rows[0], rows[1], strict=True)))
        clean = sanitise(rec)
        for k in ("id", "label", "command", "cwd", "host", "started_at", "warnings", "tags", "duration_s", "exit_code"):
            assert back[k] == clean[k], k
        for k in ("source", "how", "note", "g_per_kwh", "year"):
            assert back["intensity"][k] == clean["intensity"][k], k
        assert back["energy_j"] == clean["energy_j"]


def test_a_bare_carriage_return_is_quoted_and_keeps_the_row_whole(tmp_path: Path) -> None:
    # Before: the csv writer was given "\n" as line terminator, so a lone "\r" went out unquoted and split the row.
    line = sinks.csv_line(["a\rb", "c\nd", "plain"])
    assert line == '"a\rb","c\nd",plain\n'
    out = tmp_path / "r.csv"
    sinks.write(str(out), {**_minimal(), "label": "one\rtwo", "warnings": ["w\r1"], "command": ["echo", "a\rb"]})
    loaded = history.load([str(out)])
    assert loaded.problems == [] and loaded.runs[0].label == "one\rtwo"
    assert loaded.runs[0].command == ("echo", "a\rb")


def test_formula_escape_is_undone_exactly() -> None:
    for text in ("=x", "'=x", "''=x", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "'plain", "plain", "'", ""):
        cell = to_row({**_minimal(), "label": text})["label"]
        assert unescape_cell(str(cell)) == text, text
        assert not str(cell).startswith(("=", "+", "-", "@", "\t", "\r")), text


def test_tags_with_separators_survive(tmp_path: Path) -> None:
    # Before: tags were written key=value;key=value, so ';' and '=' inside a value were mangled.
    rec = {**_minimal(), "tags": {"a;b": "c=d;e", "=f": "'=g"}}
    out = tmp_path / "r.csv"
    sinks.write(str(out), rec)
    assert history.load([str(out)]).runs[0].tags == (("=f", "'=g"), ("a;b", "c=d;e"))


def test_rows_written_by_older_versions_still_read(tmp_path: Path) -> None:
    old_columns = CSV_COLUMNS[: CSV_COLUMNS.index("tags") + 1]  # no parent_id, no method_total
    row = to_row(_minimal())
    row["tags"], row["warnings"], row["method_cpu"] = "team=ml;run=7", "one | two", "estimated+measured"
    out = tmp_path / "old.csv"
    out.write_text(sinks.csv_line(list(old_columns)) + sinks.csv_line([row[c] for c in old_columns]))
    loaded = history.load([str(out)])
    assert loaded.problems == []
    run = loaded.runs[0]
    assert dict(run.tags) == {"team": "ml", "run": "7"} and run.estimated
    # Appending today to that file keeps its columns: the new row is written in the file's own order.
    sinks.write(str(out), {**_minimal(), "id": "second"})
    rows = list(csv.reader(out.open(newline="")))
    assert [len(r) for r in rows] == [len(old_columns)] * 3
    assert [r.id for r in history.load([str(out)]).runs] == ["r1", "second"]


def _minimal() -> dict[str, Any]:
    energy = {"cpu": 1.0, "dram": None, "gpu": None, "total": 1.0}
    return {
        "schema": SCHEMA,
        "id": "r1",
        "parent_id": None,
        "label": "x",
        "command": ["true"],
        "cwd": "/",
        "host": "h",
        "started_at": datetime(2026, 11, 1, tzinfo=UTC).isoformat(),
        "ended_at": "2026-11-01T00:00:01Z",
        "duration_s": 1.0,
        "exit_code": 0,
        "signal": None,
        "cpu_time_s": 0.5,
        "scope": "tree",
        "pue": 1.0,
        "energy_j": energy,
        "machine_energy_j": energy,
        "co2e_g": 0.1,
        "intensity": {"region": "FR", "name": "France", "g_per_kwh": 44.0, "year": 2024, "source": "s", "how": "flag"},
        "sensors": [{"domain": "cpu", "name": "estimate", "method": "estimated", "detail": ""}],
        "gpus": [],
        "warnings": [],
        "tags": {},
        "budget": None,
    }


@given(st.lists(TEXT, max_size=6))
def test_the_command_cell_splits_back_like_shlex(words: list[str]) -> None:
    import shlex

    line = shlex.join(words)
    assert split_command(line) == words == shlex.split(line)


def test_a_command_line_of_megabytes_reads_back_in_linear_time(tmp_path: Path) -> None:
    # Before (with shlex.split): minutes for one 2 MB word; a report timed out on one long CSV row.
    words = ["echo", "x" * 4_000_000, "it's"]
    assert split_command(shlex_join(words)) == words


def shlex_join(words: list[str]) -> str:
    import shlex

    return shlex.join(words)
