"""Support for the CLI tests (no tests here): run ``etcdpy`` in process and read the server's ids."""

from __future__ import annotations

import re
from dataclasses import dataclass

from click.testing import CliRunner

from etcdpy.cli import cli
from etcdpy.client import Client

ANSI = re.compile(r"\x1b\[[0-9;]*m")
TERMINAL = {"TTY_COMPATIBLE": "1", "COLUMNS": "200"}  # rich's flag: stdout is a terminal


def plain_lines(text: str) -> list[str]:
    """The lines a person sees: colours removed, blank lines dropped."""
    return [line.strip() for line in ANSI.sub("", text).splitlines() if line.strip()]


@dataclass(frozen=True)
class Run:
    stdout: bytes
    stderr: str
    code: int

    @property
    def text(self) -> str:
        return self.stdout.decode()


def invoke(*args: str, stdin: bytes = b"", env: dict[str, str | None] | None = None) -> Run:
    """Run the etcdpy group as the console script would (etcdctl error lines and exit codes)."""
    base: dict[str, str | None] = {"ETCDCTL_ENDPOINTS": None, "ETCDCTL_WRITE_OUT": None}
    result = CliRunner().invoke(cli, list(args), input=stdin, env={**base, **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Run(result.stdout_bytes, result.stderr, result.exit_code)


def ids(endpoint: str) -> tuple[int, int]:
    """(cluster id, member id) of the one-member cluster at ``endpoint``."""
    with Client([endpoint]) as client:
        header = client.member_list().header
    return header.cluster_id, header.member_id
