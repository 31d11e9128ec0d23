"""The GitHub Actions job summary: a Markdown table appended to $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

from typing import Any

from carbonwrap.report.summary import lines


def markdown(rec: dict[str, Any]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    rows = [f"| {cell(head)} | {cell(text)} |" for head, text in lines(rec)]
    return "\n".join([f"### carbonwrap: {cell(rec['label'])}", "", "| | |", "|---|---|", *rows, "", ""])


def append(path: str, rec: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(markdown(rec))
