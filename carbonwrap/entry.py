"""The console script: `carbonwrap mark ...` without loading click or rich, everything else through the CLI."""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["mark"]:
        from carbonwrap.marks import cli_mark

        sys.exit(cli_mark(args[1:]))
    from carbonwrap.cli import main as cli_main

    cli_main()
