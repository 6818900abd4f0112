"""Rich tables for a person at a terminal: ``endpoint status``, ``member list``; leader and learners marked.

Shown only when stdout is a terminal (`Output.is_terminal`: stdout's isatty,
as the live watch view checks it, or rich's TTY_COMPATIBLE) and no output
format was chosen, neither by ``-w`` nor by ``ETCDCTL_WRITE_OUT``
(`terminal_view_wanted`).  Piped output and every ``-w`` format, ``-w table``
included, stay etcdctl's bytes.  IDs are hex, as etcdctl prints them.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Sequence

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.cli.options import GlobalOptions
from etcdpy.cli.printers import EndpointStatus, Output
from etcdpy.cli.printers.rows import human_bytes

LEADER = "★ leader"
LEARNER = "learner"
_CHOSEN = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)


def _format_chosen() -> bool:
    """Whether ``-w`` was given at any level of the command line, or ETCDCTL_WRITE_OUT set."""
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if ctx.get_parameter_source("write_out") in _CHOSEN:
            return True
        ctx = ctx.parent
    return False


def terminal_view_wanted(options: GlobalOptions, output: Output) -> bool:
    """A person at a terminal who chose no format gets a rich table; scripts get etcdctl's bytes."""
    return options.write_out == "simple" and not options.hex and not _format_chosen() and output.is_terminal()


def _role(is_leader: bool, is_learner: bool, other: str) -> Text:
    if is_leader:
        return Text(LEADER, style="bold green")
    if is_learner:
        return Text(LEARNER, style="yellow")
    return Text(other, style="dim")


def endpoint_status_table(statuses: Sequence[EndpointStatus]) -> Table:
    """One row per endpoint: who it is, its role, version, size, raft position (and errors, if any)."""
    table = Table(title="endpoint status", title_style="bold", box=box.SIMPLE_HEAD)
    for name in ("endpoint", "ID", "role"):
        table.add_column(name, no_wrap=True)  # what identifies a row is never cut
    table.add_column("version")
    for name in ("size", "term", "index", "applied"):
        table.add_column(name, justify="right")
    errors = any(status.response.errors for status in statuses)
    if errors:
        table.add_column("errors", style="red")
    for status in statuses:
        r = status.response
        leader = r.leader == r.header.member_id
        cells: list[str | Text] = [
            status.endpoint,
            f"{r.header.member_id:x}",
            _role(leader, r.isLearner, "follower"),
            r.version,
            human_bytes(r.dbSize),
            str(r.raftTerm),
            str(r.raftIndex),
            str(r.raftAppliedIndex),
        ]
        if errors:
            cells.append(", ".join(r.errors))
        table.add_row(*cells, style="bold" if leader else None)
    return table


def member_list_table(response: pb.MemberListResponse, leader_id: int | None) -> Table:
    """One row per member; `leader_id` (from a status call; None: unknown) marks the leader."""
    caption = None if leader_id is not None else "leader unknown: no endpoint answered the status request"
    table = Table(title="members", title_style="bold", caption=caption, box=box.SIMPLE_HEAD)
    for name in ("ID", "name", "role", "status"):
        table.add_column(name, no_wrap=True)
    for name in ("peer addrs", "client addrs"):
        table.add_column(name, overflow="fold")  # a URL wraps rather than losing its port
    for m in response.members:
        leader = leader_id == m.ID
        table.add_row(
            f"{m.ID:x}",
            m.name,
            _role(leader, m.isLearner, "voter"),
            "started" if m.name else Text("unstarted", style="yellow"),
            ", ".join(m.peerURLs),
            ", ".join(m.clientURLs),
            style="bold" if leader else None,
        )
    return table


def print_table(output: Output, table: Table) -> None:
    """Render `table` for the terminal (its width, colours) and write it to stdout."""
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=shutil.get_terminal_size().columns)
    console.print(table)
    output.write(buffer.getvalue())
