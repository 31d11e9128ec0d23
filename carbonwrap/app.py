"""One wrapped run end to end: sensors, optional baseline, the session, the summary, the records."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from carbonwrap import session
from carbonwrap.errors import CarbonwrapError
from carbonwrap.model import RunOptions, RunReport
from carbonwrap.runner import Child
from carbonwrap.sensors import nvidia_driver_present, open_sensors


def run(options: RunOptions) -> int:
    """Measure the command and present the result; returns the exit status carbonwrap should end with."""
    sensors, warnings = open_sensors(Path(options.sysfs), options.cpu_watts)
    if options.gpu is True or (options.gpu is None and nvidia_driver_present()):
        warnings.append(
            "an NVIDIA GPU was asked for or its driver is present, but this version does not measure GPUs "
            "yet: GPU energy is not in the totals"
        )
    child = Child(options.command)
    try:
        idle_w = None
        if options.baseline_s > 0:
            try:
                idle_w = session.measure_idle(sensors, child, options.baseline_s)
            except KeyboardInterrupt:
                raise CarbonwrapError("interrupted during --baseline; nothing was launched") from None
        report = session.run(options, sensors, child, idle_w=idle_w, warnings=warnings)
    finally:
        for s in sensors:
            s.close()
    return present(options, report)


def present(options: RunOptions, report: RunReport) -> int:
    """Summary on stderr, then every record; a record that can't be written goes to stderr as JSON."""
    from carbonwrap.report import record, sinks

    status = report.exit_code
    rec = record.to_record(report)
    if not options.quiet:
        try:
            from carbonwrap.report import summary

            if sys.stderr.isatty() and not _no_color():
                summary.render_rich(rec, sys.stderr)
            else:
                summary.render_plain(rec, sys.stderr)
        except Exception as e:  # the records and the status matter more
            sys.stderr.write(f"carbonwrap: could not print the summary: {e!r}\n")
    failed = []
    for path in options.outputs:
        try:
            sinks.write(path, rec)
        except sinks.SinkError as e:
            failed.append(str(e))
    if failed:
        for msg in failed:
            sys.stderr.write(f"carbonwrap: {msg}; the record follows on stderr\n")
        sys.stderr.write(json.dumps(rec, ensure_ascii=False) + "\n")
        if status == 0:
            status = 1
    sys.stderr.flush()
    return status


def _no_color() -> bool:
    import os

    return bool(os.environ.get("NO_COLOR"))
