"""The GitHub Actions job summary: a Markdown table appended to $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from carbonwrap.report import files
from carbonwrap.report.summary import lines
from carbonwrap.report.text import escape_control, sanitise


def cell(text: str) -> str:
    """One table cell: control characters escaped (a bare \\r would start a new line on GitHub), pipes and
    HTML kept literal."""
    text = escape_control(text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def markdown(rec: dict[str, Any]) -> str:
    rec = sanitise(rec)
    rows = [f"| {cell(head)} | {cell(text)} |" for head, text in lines(rec)]
    return "\n".join([f"### carbonwrap: {cell(rec['label'])}", "", "| | |", "|---|---|", *rows, "", ""])


def append(path: str, rec: dict[str, Any]) -> None:
    """Append the table; refuses a link or anything but a regular file, and never blocks on a FIFO.
    Every failure is an OSError whose strerror says why."""
    try:
        data = markdown(rec).encode()
    except (ValueError, TypeError, KeyError) as e:
        raise OSError(errno.EINVAL, f"could not render the summary: {e!r}") from None
    files.append(Path(path), lambda _fd, _size: data)
