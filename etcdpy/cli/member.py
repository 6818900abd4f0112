"""``member``: cluster membership commands (list, add, remove, update, promote).

On a terminal, with no ``-w``, ``member list`` shows a rich table marking the
leader (asked of the endpoint by a status call) and learners
(`printers.terminal`); piped, it prints etcdctl's bytes.
"""

from __future__ import annotations

import re

import click

from etcdpy.cli.context import CliState, pass_state
from etcdpy.cli.errors import CliError, ExitCode
from etcdpy.cli.options import command_options
from etcdpy.cli.printers import terminal
from etcdpy.client import EtcdError

_HEX = re.compile(r"[0-9a-fA-F]+")


def parse_hex_uint64(text: str) -> int:
    """A uint64 in hex, as Go's strconv.ParseUint(text, 16, 64); ValueError carries Go's message."""
    if not _HEX.fullmatch(text):
        raise ValueError(f'strconv.ParseUint: parsing "{text}": invalid syntax')
    value = int(text, 16)
    if value >= 2**64:
        raise ValueError(f'strconv.ParseUint: parsing "{text}": value out of range')
    return value


def _member_id(args: tuple[str, ...]) -> int:
    if not args:
        raise CliError(ExitCode.BAD_ARGS, "member ID is not provided")
    try:
        return parse_hex_uint64(args[0])
    except ValueError as err:
        raise CliError(ExitCode.BAD_ARGS, f"bad member ID arg ({err}), expecting ID in Hex") from None


def _peer_urls(text: str) -> list[str]:
    if not text:
        raise CliError(ExitCode.BAD_ARGS, "member peer urls not provided")
    return text.split(",")


@click.group("member", short_help="Membership related commands")
def member() -> None:
    """Membership related commands."""


@member.command("list", short_help="Lists all members in the cluster")
@command_options
@pass_state
def member_list(state: CliState) -> None:
    """List all members in the cluster.

    With -w simple: comma-separated ID, status, name, peer addrs, client addrs, is learner.
    """
    printer = state.printer()
    response = state.client().member_list()
    if terminal.terminal_view_wanted(state.options, state.output):
        terminal.print_table(state.output, terminal.member_list_table(response, _leader(state)))
    else:
        printer.member_list(response)


def _leader(state: CliState) -> int | None:
    """The leader's member ID as the endpoint the client talks to knows it (None: unknown)."""
    try:
        leader = state.client().status().leader
    except EtcdError:
        return None
    return leader or None


@member.command("add", short_help="Adds a member into the cluster")
@click.argument("args", nargs=-1, metavar="<memberName>")
@click.option("--peer-urls", default="", help="comma separated peer URLs for the new member.")
@click.option("--learner", is_flag=True, help="indicates if the new member is raft learner")
@click.option(
    "--auto-promote",
    is_flag=True,
    help="the new learner promotes itself once caught up (etcdpy server only; needs --learner)",
)
@command_options
@pass_state
def member_add(
    state: CliState, args: tuple[str, ...], peer_urls: str, learner: bool, auto_promote: bool
) -> None:
    """Add a member into the cluster.

    With -w simple, also print the ETCD_* environment the new member starts with
    (with --auto-promote, ETCD_AUTO_PROMOTE="true", which an etcdpy server obeys).
    """
    if not args:
        raise CliError(ExitCode.BAD_ARGS, "member name not provided")
    name = args[0]
    urls = _peer_urls(peer_urls)
    if auto_promote and not learner:
        raise CliError(ExitCode.BAD_ARGS, "--auto-promote needs --learner")
    printer = state.printer()
    response = state.client().member_add(urls, is_learner=learner)
    printer.member_add(response, name, auto_promote=auto_promote)


@member.command("remove", short_help="Removes a member from the cluster")
@click.argument("args", nargs=-1, metavar="<memberID>")
@command_options
@pass_state
def member_remove(state: CliState, args: tuple[str, ...]) -> None:
    """Remove a member from the cluster."""
    member_id = _member_id(args)
    printer = state.printer()
    printer.member_remove(member_id, state.client().member_remove(member_id))


@member.command("update", short_help="Updates a member in the cluster")
@click.argument("args", nargs=-1, metavar="<memberID>")
@click.option("--peer-urls", default="", help="comma separated peer URLs for the updated member.")
@command_options
@pass_state
def member_update(state: CliState, args: tuple[str, ...], peer_urls: str) -> None:
    """Update a member's peer URLs."""
    member_id = _member_id(args)
    urls = _peer_urls(peer_urls)
    printer = state.printer()
    printer.member_update(member_id, state.client().member_update(member_id, urls))


@member.command("promote", short_help="Promotes a non-voting member in the cluster")
@click.argument("args", nargs=-1, metavar="<memberID>")
@command_options
@pass_state
def member_promote(state: CliState, args: tuple[str, ...]) -> None:
    """Promote a learner that has caught up with the leader to a voting member."""
    member_id = _member_id(args)
    printer = state.printer()
    printer.member_promote(member_id, state.client().member_promote(member_id))


def register(group: click.Group) -> None:
    """Add the member group to the top-level group."""
    group.add_command(member)
