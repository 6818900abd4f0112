"""``snapshot save|status|restore``: etcd's backups, as etcdctl 3.4 takes, inspects and restores them.

``save`` streams one member's Maintenance.Snapshot into ``FILE.part`` (fsynced,
checked against the sha256 that ends the stream, then renamed to FILE; removed when
anything fails), with a rich progress bar on stderr when stdout is a terminal.
``status`` reads a bbolt file and ``restore`` writes a member's data dir: both are
the server's storage code (``etcdpy.server.storage.etcddb``, ``etcdpy.server.restore``),
imported only when they run, as the CLI never loads the server otherwise.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path
from typing import Any, BinaryIO

import click

from etcdpy.api.errors import EtcdError
from etcdpy.cli.context import CliState, pass_state
from etcdpy.cli.errors import CliError, ExitCode
from etcdpy.cli.options import command_options
from etcdpy.cli.printers import DBStatus

_SHA256_SIZE = 32

# name -> (module, attribute, short help): subcommands that are server code, loaded when run
_LAZY = {
    "restore": (
        "etcdpy.server.restore",
        "command",
        "Restores an etcd member snapshot to an etcd directory",
    )
}


class SnapshotGroup(click.Group):
    """``snapshot``: save and status here; restore (server code) loaded on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_LAZY])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _LAZY:
            module, attribute, _ = _LAZY[cmd_name]
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in _LAZY:
                rows.append((name, _LAZY[name][2]))
            else:
                command = super().get_command(ctx, name)
                rows.append((name, command.get_short_help_str(limit=80) if command else ""))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group("snapshot", cls=SnapshotGroup, short_help="Manages etcd node snapshots")
def snapshot() -> None:
    """Manages etcd node snapshots."""


@snapshot.command("save", short_help="Stores an etcd node backend snapshot to a given file")
@click.argument("args", nargs=-1, metavar="<filename>")
@command_options
@pass_state
def save(state: CliState, args: tuple[str, ...]) -> None:
    """Store an etcd node backend snapshot to a given file."""
    if len(args) != 1:
        raise CliError(ExitCode.BAD_ARGS, "snapshot save expects one argument")
    endpoints = list(state.options.endpoints)
    if len(endpoints) != 1:
        raise CliError(
            ExitCode.INTERRUPTED,
            f"snapshot must be requested to one selected node, not multiple [{' '.join(endpoints)}]",
        )
    path = args[0]
    part = path + ".part"
    try:
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as err:
        raise CliError(ExitCode.INTERRUPTED, f"could not open {part} ({_os_text(err)})") from None
    saved = False
    try:
        with os.fdopen(fd, "wb") as f:
            size = _receive(state, f)
            if size % 512 != _SHA256_SIZE:
                raise CliError(ExitCode.INTERRUPTED, f"sha256 checksum not found [bytes: {size}]")
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, path)
        saved = True
    except OSError as err:
        raise CliError(ExitCode.INTERRUPTED, _os_text(err)) from None
    finally:
        if not saved:
            Path(part).unlink(missing_ok=True)
    state.output.line(f"Snapshot saved at {path}")


def _receive(state: CliState, f: BinaryIO) -> int:
    """Write the stream to `f`, checking its closing sha256; the bytes written."""
    client = state.client()
    digest = hashlib.sha256()
    size = 0
    progress = _Progress(state)
    try:
        with progress:
            for response in client.snapshot(timeout=None):
                blob = response.blob
                if response.remaining_bytes == 0 and size > 0 and len(blob) == _SHA256_SIZE:
                    if blob != digest.digest():
                        raise CliError(
                            ExitCode.INTERRUPTED, "snapshot stream: sha256 mismatch (data corrupted)"
                        )
                else:
                    digest.update(blob)
                progress.advance(len(blob), response.remaining_bytes)
                f.write(blob)
                size += len(blob)
    except EtcdError as err:
        raise CliError(ExitCode.INTERRUPTED, err.text) from None
    return size


class _Progress:
    """A rich progress bar on stderr while the stream arrives, only when stdout is a terminal."""

    def __init__(self, state: CliState) -> None:
        self._bar: Any = None
        self._task: Any = None
        if state.output.is_terminal():
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

            self._bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=Console(stderr=True),
                transient=True,
            )

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.__enter__()
            self._task = self._bar.add_task("snapshot", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def advance(self, received: int, remaining: int) -> None:
        if self._bar is not None:
            done = self._bar.tasks[0].completed + received
            self._bar.update(self._task, completed=done, total=done + remaining)


@snapshot.command(
    "status",
    short_help="Gets backend snapshot status of a given file",
    help="When --write-out is set to simple, this command prints out comma-separated status lists for each "
    "endpoint.\nThe items in the lists are hash, revision, total keys, total size.",
)
@click.argument("args", nargs=-1, metavar="<filename>")
@command_options
@pass_state
def status(state: CliState, args: tuple[str, ...]) -> None:
    if len(args) != 1:
        raise CliError(ExitCode.BAD_ARGS, "snapshot status requires exactly one argument")
    printer = state.printer()
    etcddb: Any = importlib.import_module("etcdpy.server.storage.etcddb")
    path = args[0]
    try:
        found = etcddb.snapshot_status(path)
    except FileNotFoundError:
        raise CliError(ExitCode.ERROR, f"stat {path}: no such file or directory") from None
    except OSError as err:
        raise CliError(ExitCode.ERROR, _os_text(err)) from None
    except etcddb.SnapshotError as err:
        raise CliError(ExitCode.ERROR, str(err)) from None
    printer.db_status(DBStatus(found.hash, found.revision, found.total_key, found.total_size))


def _os_text(err: OSError) -> str:
    """An OSError as Go words it: ``open FILE: reason`` (lower case)."""
    reason = (err.strerror or str(err)).lower()
    return f"open {err.filename}: {reason}" if err.filename else reason


def register(group: click.Group) -> None:
    """Add snapshot to the top-level group."""
    group.add_command(snapshot)
