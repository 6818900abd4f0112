"""``lease grant|revoke|timetolive|list|keep-alive``: etcdctl's lease commands, output and exit codes."""

from __future__ import annotations

import re

import click

from etcdpy.api.errors import EtcdError
from etcdpy.cli.context import CliState, pass_state
from etcdpy.cli.errors import CliError, ExitCode
from etcdpy.cli.options import command_options
from etcdpy.cli.printers import Printer, leasewatch
from etcdpy.cli.signals import Stopper, run_or_die_of_signal
from etcdpy.client import Client

_DECIMAL = re.compile(r"[+-]?[0-9]+")
_HEX = re.compile(r"[+-]?[0-9a-fA-F]+")


def parse_int64(text: str, pattern: re.Pattern[str], base: int) -> tuple[int | None, str]:
    """strconv.ParseInt's result and error text ("" when it parsed)."""
    if not pattern.fullmatch(text):
        return None, f'strconv.ParseInt: parsing "{text}": invalid syntax'
    value = int(text, base)
    if not -(2**63) <= value < 2**63:
        return None, f'strconv.ParseInt: parsing "{text}": value out of range'
    return value, ""


def lease_id_arg(text: str) -> int:
    """A lease ID argument in hex, as etcdctl's leaseFromArgs."""
    value, error = parse_int64(text, _HEX, 16)
    if value is None:
        raise CliError(ExitCode.BAD_ARGS, f"bad lease ID arg ({error}), expecting ID in Hex")
    return value


@click.group("lease", short_help="Lease related commands")
def lease() -> None:
    """Lease related commands."""


@lease.command("grant", short_help="Creates leases")
@click.argument("args", nargs=-1, metavar="<ttl>")
@command_options
@pass_state
def grant(state: CliState, args: tuple[str, ...]) -> None:
    """Create a lease of <ttl> seconds."""
    if len(args) != 1:
        raise CliError(ExitCode.BAD_ARGS, "lease grant command needs TTL argument")
    ttl, error = parse_int64(args[0], _DECIMAL, 10)
    if ttl is None:
        raise CliError(ExitCode.BAD_ARGS, f"bad TTL ({error})")
    printer = state.printer()
    try:
        response = state.client().lease_grant(ttl)
    except EtcdError as err:
        raise CliError(ExitCode.ERROR, f"failed to grant lease ({err.text})") from None
    leasewatch.lease_grant(printer, response)


@lease.command("revoke", short_help="Revokes leases")
@click.argument("args", nargs=-1, metavar="<leaseID>")
@command_options
@pass_state
def revoke(state: CliState, args: tuple[str, ...]) -> None:
    """Revoke a lease and delete every key attached to it."""
    if len(args) != 1:
        raise CliError(ExitCode.BAD_ARGS, "lease revoke command needs 1 argument")
    lease_id = lease_id_arg(args[0])
    printer = state.printer()
    try:
        response = state.client().lease_revoke(lease_id)
    except EtcdError as err:
        raise CliError(ExitCode.ERROR, f"failed to revoke lease ({err.text})") from None
    leasewatch.lease_revoke(printer, lease_id, response)


@lease.command("timetolive", short_help="Get lease information")
@click.argument("args", nargs=-1, metavar="<leaseID>")
@click.option("--keys", is_flag=True, help="Get keys attached to this lease")
@command_options
@pass_state
def timetolive(state: CliState, args: tuple[str, ...], keys: bool) -> None:
    """Show a lease's granted and remaining TTL (and its keys with --keys)."""
    if len(args) != 1:
        raise CliError(ExitCode.BAD_ARGS, "lease timetolive command needs lease ID as argument")
    lease_id = lease_id_arg(args[0])
    printer = state.printer()
    leasewatch.lease_time_to_live(printer, state.client().lease_time_to_live(lease_id, keys=keys), keys)


@lease.command("list", short_help="List all active leases")
@command_options
@pass_state
def list_leases(state: CliState) -> None:
    """List every lease."""
    printer = state.printer()
    try:
        response = state.client().lease_leases()
    except EtcdError as err:
        raise CliError(ExitCode.ERROR, f"failed to list leases ({err.text})") from None
    leasewatch.lease_leases(printer, response)


@lease.command("keep-alive", short_help="Keeps leases alive (renew)")
@click.argument("args", nargs=-1, metavar="<leaseID>")
@click.option("--once", is_flag=True, help="Resets the keep-alive time to its original value and exits")
@command_options
@pass_state
def keep_alive(state: CliState, args: tuple[str, ...], once: bool) -> None:
    """Renew a lease until it is gone (or once)."""
    if len(args) != 1:
        raise CliError(ExitCode.BAD_ARGS, "lease keep-alive command needs lease ID as argument")
    lease_id = lease_id_arg(args[0])
    printer = state.printer()
    client = state.client()
    # The renewals run on a worker thread while the main thread only waits (see
    # `etcdpy.cli.signals`): SIGINT/SIGTERM then end the command with 128+N,
    # nothing printed, as etcdctl dies of them, wherever they land.
    stopper = Stopper()
    renew = _renew_once if once else _renew
    run_or_die_of_signal(lambda: renew(state, printer, client, lease_id, stopper), stopper)


def _renew_once(state: CliState, printer: Printer, client: Client, lease_id: int, stopper: Stopper) -> None:
    """One renewal, printed (a unary call: `stop` cannot cut it short, the client's timeout bounds it)."""
    try:
        response = client.lease_keep_alive_once(lease_id)
    except EtcdError as err:
        raise CliError(ExitCode.BAD_CONNECTION, err.text) from None
    if not stopper.stopped:
        leasewatch.lease_keep_alive(printer, response)
        state.output.flush()


def _renew(state: CliState, printer: Printer, client: Client, lease_id: int, stopper: Stopper) -> None:
    """Renew and print until the lease is gone (etcdctl's last line) or ``stopper`` closes the stream."""
    renewals = client.lease_keep_alive(lease_id)
    stopper.on_stop(renewals.close)
    for response in renewals:
        if stopper.stopped:
            return
        leasewatch.lease_keep_alive(printer, response)
        state.output.flush()
    if printer.name == "simple" and not stopper.stopped:
        state.output.line(f"lease {lease_id:016x} expired or revoked.")
        state.output.flush()


def register(group: click.Group) -> None:
    """Add the lease group to the top-level group."""
    group.add_command(lease)
