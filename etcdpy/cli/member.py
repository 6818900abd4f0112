"""``member``: cluster membership commands (``member list`` for now)."""

from __future__ import annotations

import click

from etcdpy.cli.context import CliState, pass_state
from etcdpy.cli.options import command_options


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
    printer.member_list(state.client().member_list())


def register(group: click.Group) -> None:
    """Add the member group to the top-level group."""
    group.add_command(member)
