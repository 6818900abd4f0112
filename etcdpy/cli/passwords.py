"""Reading passwords the way etcdctl does (its speakeasy prompts and ``fmt.Scanf``).

- `ask`: the prompt on stdout, one line read from stdin (without echo when stdin
  is a terminal; a trailing CR dropped), then a newline on stdout: etcdctl's
  ``Password: `` for ``--user`` without a password, and ``user add``/``passwd``.
- `ask_twice`: ``Password of <name>: `` and the confirmation prompt, with
  etcdctl's errors (exit 128) for an empty password or two that differ.
- `scan_word`: ``--interactive=false``: the first word of stdin, as Go's
  ``fmt.Scanf("%s")`` reads it ("" when stdin is empty or starts a new line).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import BinaryIO

import click

from etcdpy.cli.errors import CliError, ExitCode
from etcdpy.cli.printers import Output


def _stdin() -> BinaryIO:
    return click.get_binary_stream("stdin")


@contextlib.contextmanager
def _no_echo(stream: BinaryIO) -> Iterator[None]:
    """Turn the terminal's echo off while reading from ``stream`` (nothing to do for a pipe or file)."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        yield
        return
    if not os.isatty(fd) or sys.platform == "win32":
        yield
        return
    import termios

    saved = termios.tcgetattr(fd)
    quiet = list(saved)
    quiet[3] &= ~termios.ECHO
    # TCSADRAIN, as etcdctl's stty: what was typed ahead for a later prompt is kept, not flushed.
    termios.tcsetattr(fd, termios.TCSADRAIN, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def ask(output: Output, prompt: str) -> str:
    """Show ``prompt`` on stdout and read one line of stdin as the password (speakeasy.Ask)."""
    output.write(prompt)
    output.flush()
    stdin = _stdin()
    with _no_echo(stdin):
        line = stdin.readline()
    output.line()
    text = line.rstrip(b"\n").removesuffix(b"\r")
    return text.decode("utf-8", "surrogateescape")


def ask_twice(output: Output, name: str) -> str:
    """etcdctl's readPasswordInteractive: the password of user ``name``, typed twice."""
    first = ask(output, f"Password of {name}: ")
    if not first:
        raise CliError(ExitCode.BAD_ARGS, "empty password")
    second = ask(output, f"Type password of {name} again for confirmation: ")
    if first != second:
        raise CliError(ExitCode.BAD_ARGS, "given passwords are different")
    return first


def scan_word() -> str:
    """The first word on stdin's first line (Go's ``fmt.Scanf("%s", &password)``)."""
    words = _stdin().readline().split()
    return words[0].decode("utf-8", "surrogateescape") if words else ""
