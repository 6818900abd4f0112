"""``alarm list`` and ``alarm disarm``: the cluster's active alarms, as etcdctl shows and clears them.

``disarm`` does what etcdctl's client does: list the alarms, deactivate each
one, and print the deactivated ones as one response (no header, like etcd's).
Output per ``-w``: simple prints ``memberID:<id> alarm:<TYPE> `` lines (Go's
text form, trailing space included); json and protobuf the whole response;
fields ``"MemberID"``/``"AlarmType"`` pairs (etcdctl 3.4 crashes there on the
missing header); table is not supported, as in etcdctl.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from etcdpy.api.alarms import alarm_name, alarm_text
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.cli.context import CliState, pass_state
from etcdpy.cli.errors import CliError, ExitCode
from etcdpy.cli.options import command_options
from etcdpy.cli.printers import MessagePrinter


def _print(state: CliState, response: pb.AlarmResponse) -> None:
    printer = state.printer()
    if isinstance(printer, MessagePrinter):
        printer.message(response)
    elif printer.name == "fields":
        for member in response.alarms:
            state.output.line(f'"MemberID" : {member.memberID}')
            state.output.line(f'"AlarmType" : {alarm_name(member.alarm)}')
            state.output.line()
    elif printer.name == "simple":
        for member in response.alarms:
            state.output.line(alarm_text(member))
    else:
        raise printer.unsupported()


def _no_args(name: str, args: tuple[str, ...]) -> None:
    if args:
        raise CliError(ExitCode.BAD_ARGS, f"alarm {name} command accepts no arguments")


@click.group("alarm", short_help="Alarm related commands")
def alarm() -> None:
    """Alarm related commands."""


def _alarm_command(
    name: str, short_help: str
) -> Callable[[Callable[[CliState], pb.AlarmResponse]], click.Command]:
    """Make `body` (state -> response) the ``alarm <name>`` subcommand that prints what it returns."""

    def decorate(body: Callable[[CliState], pb.AlarmResponse]) -> click.Command:
        @alarm.command(name, short_help=short_help, help=body.__doc__)
        @click.argument("args", nargs=-1)
        @command_options
        @pass_state
        def command(state: CliState, args: tuple[str, ...]) -> None:
            _no_args(name, args)
            state.printer()  # an unknown -w fails before any request, as in etcdctl
            _print(state, body(state))

        return command

    return decorate


@_alarm_command("list", "Lists all alarms")
def alarm_list(state: CliState) -> pb.AlarmResponse:
    """List all alarms."""
    return state.client().alarm(pb.AlarmRequest(action=pb.AlarmRequest.GET))


@_alarm_command("disarm", "Disarms all alarms")
def alarm_disarm(state: CliState) -> pb.AlarmResponse:
    """Disarm all alarms."""
    client = state.client()
    disarmed = pb.AlarmResponse()
    for member in client.alarm(pb.AlarmRequest(action=pb.AlarmRequest.GET)).alarms:
        request = pb.AlarmRequest(
            action=pb.AlarmRequest.DEACTIVATE, memberID=member.memberID, alarm=member.alarm
        )
        disarmed.alarms.extend(client.alarm(request).alarms)
    return disarmed


def register(group: click.Group) -> None:
    """Add the alarm group to the top-level group."""
    group.add_command(alarm)
