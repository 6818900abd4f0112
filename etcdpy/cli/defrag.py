"""``defrag [--cluster] [--data-dir DIR]``: reclaim a member's disk space, as etcdctl 3.4.

Against a running member it calls Maintenance.Defragment on each endpoint (every
member's client URLs with ``--cluster``) and prints ``Finished defragmenting etcd
member[<ep>]``, or ``Failed to defragment etcd member[<ep>] (<error>)`` on stderr
and exit 1 at the end.  etcdpy's members defragment online (LevelDB's
compaction): reads and writes go on meanwhile.  On a terminal a spinner (rich,
on stderr) shows which member is being defragmented.

``--data-dir`` defragments the data dir of a stopped member here, with the
server's own storage code, imported only then (the CLI never loads the server
otherwise).  etcdctl 3.4 waits for a running etcd to release its lock; etcdpy
refuses a data dir in use at once: its running member defragments online anyway.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from pathlib import Path

import click

from etcdpy.api.errors import EtcdError
from etcdpy.cli.context import CliState, pass_state
from etcdpy.cli.endpoint import _endpoints, cluster_option
from etcdpy.cli.errors import ExitCode, SilentExit
from etcdpy.cli.options import command_options

BACKEND_MODULE = "etcdpy.server.storage.backend"  # the server's storage, loaded for --data-dir only


@click.command("defrag", short_help="Defragments the storage of the etcd members with given endpoints")
@cluster_option
@click.option(
    "--data-dir",
    default="",
    help="Optional. If present, defragments a data directory not in use by etcd.",
)
@command_options
@pass_state
def defrag(state: CliState, cluster: bool | None, data_dir: str) -> None:
    """Defragment the storage of the etcd members with given endpoints."""
    if data_dir:
        try:
            defragment_data_dir(Path(data_dir))
        except DataDirError as err:
            state.output.err_line(f"Failed to defragment etcd data[{data_dir}] ({err})")
            raise SilentExit(ExitCode.ERROR) from None
        return
    client = state.client()
    failures = 0
    for endpoint in _endpoints(state, cluster):
        try:
            with _spinner(state, endpoint):
                client.defragment(endpoint)
        except EtcdError as err:
            state.output.err_line(f"Failed to defragment etcd member[{endpoint}] ({err.text})")
            failures += 1
        else:
            state.output.line(f"Finished defragmenting etcd member[{endpoint}]")
    if failures:
        raise SilentExit(ExitCode.ERROR)


@contextlib.contextmanager
def _spinner(state: CliState, endpoint: str) -> Iterator[None]:
    """A rich spinner on stderr while one member defragments, only when stdout is a terminal."""
    if not state.output.is_terminal():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(f"defragmenting {endpoint}"):
        yield


class DataDirError(Exception):
    """The data dir cannot be defragmented; the message says why."""


def defragment_data_dir(data_dir: Path) -> None:
    """Compact the LevelDB of a stopped member's data dir in place (refused while a member holds it)."""
    db_dir = data_dir / "member" / "db"
    if not (db_dir / "CURRENT").is_file():
        raise DataDirError(f"no etcdpy database at {db_dir} (is {data_dir} an etcdpy data dir?)")
    storage = importlib.import_module(BACKEND_MODULE)
    try:
        backend = storage.Backend(data_dir)
    except storage.BackendInUseError as err:
        raise DataDirError(f"{err}; to defragment a running member, omit --data-dir") from None
    except storage.BackendError as err:
        raise DataDirError(str(err)) from None
    try:
        backend.defragment()
    finally:
        backend.close()


def register(group: click.Group) -> None:
    """Add defrag to the top-level group."""
    group.add_command(defrag)
