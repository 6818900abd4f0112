"""``move-leader <transferee-member-id>``: hand leadership to another voting member.

As etcdctl: find the leader among ``--endpoints`` (the member whose Status says it
leads), and ask it to transfer leadership.
"""

from __future__ import annotations

import click

from etcdpy.api.errors import EtcdError
from etcdpy.cli.context import CliState, pass_state
from etcdpy.cli.errors import CliError, ExitCode
from etcdpy.cli.member import parse_hex_uint64
from etcdpy.cli.options import command_options


@click.command("move-leader", short_help="Transfers leadership to another etcd cluster member.")
@click.argument("args", nargs=-1, metavar="<transferee-member-id>")
@command_options
@pass_state
def move_leader(state: CliState, args: tuple[str, ...]) -> None:
    """Transfer leadership to another etcd cluster member."""
    if len(args) != 1:
        raise CliError(ExitCode.BAD_ARGS, "move-leader command needs 1 argument")
    try:
        target = parse_hex_uint64(args[0])
    except ValueError as err:
        raise CliError(ExitCode.BAD_ARGS, str(err)) from None
    printer = state.printer()
    client = state.client()
    endpoints = list(state.options.endpoints)
    for ep in endpoints:
        try:
            status = client.status(ep)
        except EtcdError as err:
            raise CliError(ExitCode.ERROR, err.text) from None
        if status.header.member_id == status.leader:
            response = client.move_leader(target, ep)
            printer.move_leader(status.leader, target, response)
            return
    raise CliError(ExitCode.BAD_ARGS, f"no leader endpoint given at [{' '.join(endpoints)}]")


def register(group: click.Group) -> None:
    """Add move-leader to the top-level group."""
    group.add_command(move_leader)
