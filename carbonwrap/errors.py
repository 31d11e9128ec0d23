"""Named errors; each message says what failed and what to do."""

from __future__ import annotations


class CarbonwrapError(Exception):
    """A failure carbonwrap explains in one line."""


class UsageError(CarbonwrapError):
    """Bad input on the command line or in the environment: exit 2, nothing launched."""


class LaunchError(CarbonwrapError):
    """The command could not be started: exit 127 (not found) or 126 (not executable)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class SensorError(CarbonwrapError):
    """A sensor cannot be used here; the domain falls back to the estimate."""
