"""Delivering a finished run: local records first, then the summary, then the network. Nothing here can
block carbonwrap's exit for long or cost a record: every step is isolated, stderr has a deadline, and a
SIGTERM or SIGINT cuts the network work short."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from io import StringIO
from typing import Any

from carbonwrap.model import RunOptions
from carbonwrap.report import STDERR_BUDGET_S, limit_stderr, say, stderr_is_terminal
from carbonwrap.runreport import RunReport

EXIT_RECORD = 1  # a requested record could not be written, when the command itself succeeded
EXIT_INTERNAL = 70  # a finished run without an exit status: carbonwrap's bug (EX_SOFTWARE)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How carbonwrap ends: the exit status, or death by the command's own signal."""

    status: int
    signal: int | None = None


def exit_status(report: RunReport, record_failed: bool) -> int:
    """SPEC section 2: the command's status, 1 for a lost record, else what the budget decided (3 for
    --on-budget fail, budget.Budget.exit_status); 1 wins over 3."""
    code = report.exit_code if report.exit_code is not None else EXIT_INTERNAL
    if code != 0:
        return code
    if record_failed:
        return EXIT_RECORD
    status = report.budget.get("exit_status") if report.budget else None
    return status if isinstance(status, int) else code


def _stop_requested() -> Callable[[float], bool]:
    """A wait of at most S seconds that answers True when SIGTERM, SIGINT or SIGHUP arrives meanwhile."""
    from carbonwrap.signals import SignalWaiter

    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    waiter = SignalWaiter([s for s in STOP_SIGNALS if s in blocked])
    if not waiter.signals:
        return lambda s: False
    return lambda s: waiter.wait(s) is not None


def present(options: RunOptions, report: RunReport, gateway: Any = None, series: Any = None) -> Outcome:
    """Every record, then the summary, then the Pushgateway; returns how carbonwrap must end.

    `series` is the run's time series for an .html output (report.html.Series)."""
    from carbonwrap.report import record

    limit_stderr(STDERR_BUDGET_S)
    try:
        rec = record.to_record(report)
    except Exception as e:  # our bug: nothing to write, the status still passes through
        say(f"carbonwrap: internal error, no record could be made: {e!r}\n")
        # carbonwrap's own failure after the launch: the command's status wins (SPEC section 2).
        return Outcome(report.exit_code if report.exit_code is not None else EXIT_INTERNAL, report.signal)
    failed = _write_records(options, rec, series)
    if failed:
        for msg in failed:
            say(f"carbonwrap: {msg}; the record follows on stderr\n")
        say(json.dumps(rec, ensure_ascii=True, default=str) + "\n")
    status = exit_status(report, bool(failed))
    if not options.quiet:
        _summary(rec, short=options.summary == "short")
    if gateway is not None:
        _push(gateway, rec)
    return Outcome(status, report.signal)


def _write_records(options: RunOptions, rec: dict[str, Any], series: Any = None) -> list[str]:
    from carbonwrap.report import sinks

    failed = []
    for path in options.outputs:
        try:
            if path.lower().endswith(".html"):
                from carbonwrap.report.html import run_page

                sinks.write_page(path, run_page(rec, series))
            else:
                sinks.write(path, rec)
        except sinks.SinkError as e:
            failed.append(str(e))
        except Exception as e:  # one output's surprise must not cost the others
            failed.append(f"cannot write {path}: {e!r}")
    step = os.environ.get("GITHUB_STEP_SUMMARY")
    if step and options.step_summary:
        try:
            from carbonwrap.report import github

            github.append(step, rec)
        except Exception as e:
            reason = getattr(e, "strerror", None) or e
            say(f"carbonwrap: cannot append to GITHUB_STEP_SUMMARY: {reason}\n")
    return failed


def _summary(rec: dict[str, Any], short: bool = False) -> None:
    """Rendered into memory first, so a slow stderr only ever meets one bounded write."""
    try:
        from carbonwrap.report import summary

        if sys.stderr is None:
            return
        rich = stderr_is_terminal() and not os.environ.get("NO_COLOR")
        buf: StringIO = _Terminal() if rich else StringIO()
        summary.render(rec, buf, short=short, rich=bool(rich))
        say(buf.getvalue())
    except Exception as e:  # the records and the status matter more
        say(f"carbonwrap: could not print the summary: {e!r}\n")


class _Terminal(StringIO):
    """A buffer that renders as the terminal it stands in for."""

    def isatty(self) -> bool:
        return True


def _push(gateway: Any, rec: dict[str, Any]) -> None:
    try:
        from carbonwrap.report import sinks

        text = sinks.prometheus_text(rec)
        done = gateway.finish(text, _stop_requested())
        if not done:
            say(
                f"carbonwrap: Pushgateway {gateway.shown}: final push cut short by a signal; the records are complete\n"
            )
        elif gateway.warning:
            say(f"carbonwrap: {gateway.warning}\n")
    except Exception as e:
        say(f"carbonwrap: Pushgateway push failed: {e!r}; the local records are complete\n")
