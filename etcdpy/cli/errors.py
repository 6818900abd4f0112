"""etcdctl's exit codes, and the exception that prints ``Error: ...`` and exits with one.

click prints a `ClickException` as ``Error: <message>`` on stderr, which is
exactly etcdctl's error line, so `CliError` only adds etcdctl's exit code.
"""

from __future__ import annotations

import enum

import click


class ExitCode(enum.IntEnum):
    """etcdctl's exit codes (ctlv3/command/error.go)."""

    SUCCESS = 0
    ERROR = 1  # general and server errors
    BAD_CONNECTION = 2
    INVALID_INPUT = 3  # txn and watch input
    BAD_FEATURE = 4  # a valid flag with an unsupported value
    INTERRUPTED = 5
    IO = 6
    BAD_ARGS = 128  # wrong argument count, conflicting flags


class CliError(click.ClickException):
    """An error etcdctl reports as ``Error: <message>`` with a specific exit code."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.exit_code = int(code)


class SilentExit(click.ClickException):
    """Exit with a code after the output already said what went wrong (no Error: line)."""

    def __init__(self, code: ExitCode) -> None:
        super().__init__("")
        self.exit_code = int(code)

    def show(self, file: object = None) -> None:
        """Print nothing: the command has reported the failure itself."""
