"""``role add|delete|get|list|grant-permission|revoke-permission``: etcdctl's role commands.

A permission covers a key, a range ``[key, endkey)``, a prefix (``--prefix``)
or every key from one on (``--from-key``), with the argument rules of
etcdctl's permRange: an empty key is ``\\x00`` (and, with either flag, the
whole key space); an end key cannot go with either flag.
"""

from __future__ import annotations

import click

from etcdpy.cli.context import CliState, pass_state
from etcdpy.cli.errors import CliError, ExitCode
from etcdpy.cli.options import command_options
from etcdpy.cli.printers import auth as printers
from etcdpy.client.auth import PermissionType
from etcdpy.client.requests import prefix_range_end

OPEN_ENDED = b"\x00"


def _need(args: tuple[str, ...], count: int, message: str) -> None:
    if len(args) != count:
        raise CliError(ExitCode.BAD_ARGS, message)


def _arg(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def permission_range(args: tuple[str, ...], *, prefix: bool, from_key: bool) -> tuple[bytes, bytes]:
    """etcdctl's permRange: the key and range end of ``<key> [endkey]`` under ``--prefix``/``--from-key``."""
    key = _arg(args[0])
    if not key:
        if prefix and from_key:
            raise CliError(ExitCode.BAD_ARGS, "--from-key and --prefix flags are mutually exclusive")
        # etcd's intervals start at \x00; with a flag, \x00 as the end opens the range up to the end.
        return b"\x00", OPEN_ENDED if prefix or from_key else b""
    if len(args) == 1:
        if prefix:
            if from_key:
                raise CliError(ExitCode.BAD_ARGS, "--from-key and --prefix flags are mutually exclusive")
            return key, prefix_range_end(key)
        return key, OPEN_ENDED if from_key else b""
    if prefix:
        raise CliError(ExitCode.BAD_ARGS, "unexpected endkey argument with --prefix flag")
    if from_key:
        raise CliError(ExitCode.BAD_ARGS, "unexpected endkey argument with --from-key flag")
    return key, _arg(args[1])


@click.group("role", short_help="Role related commands")
def role() -> None:
    """Role related commands."""


@role.command("add", short_help="Adds a new role")
@click.argument("args", nargs=-1, metavar="<role name>")
@command_options
@pass_state
def add(state: CliState, args: tuple[str, ...]) -> None:
    """Add a new role."""
    _need(args, 1, "role add command requires role name as its argument")
    printer = state.printer()
    printers.role_add(printer, args[0], state.client().role_add(args[0]))


@role.command("delete", short_help="Deletes a role")
@click.argument("args", nargs=-1, metavar="<role name>")
@command_options
@pass_state
def delete(state: CliState, args: tuple[str, ...]) -> None:
    """Delete a role."""
    _need(args, 1, "role delete command requires role name as its argument")
    printer = state.printer()
    printers.role_delete(printer, args[0], state.client().role_delete(args[0]))


@role.command("get", short_help="Gets detailed information of a role")
@click.argument("args", nargs=-1, metavar="<role name>")
@command_options
@pass_state
def get(state: CliState, args: tuple[str, ...]) -> None:
    """Show a role's permissions."""
    _need(args, 1, "role get command requires role name as its argument")
    printer = state.printer()
    printers.role_get(printer, args[0], state.client().role_get(args[0]))


@role.command("list", short_help="Lists all roles")
@click.argument("args", nargs=-1)
@command_options
@pass_state
def list_roles(state: CliState, args: tuple[str, ...]) -> None:
    """List all roles."""
    _need(args, 0, "role list command requires no arguments")
    printer = state.printer()
    printers.role_list(printer, state.client().role_list())


@role.command("grant-permission", short_help="Grants a key to a role")
@click.argument("args", nargs=-1, metavar="<role name> <permission type> <key> [endkey]")
@click.option("--prefix", is_flag=True, help="grant a prefix permission")
@click.option(
    "--from-key",
    is_flag=True,
    help="grant a permission of keys that are greater than or equal to the given key using byte compare",
)
@command_options
@pass_state
def grant_permission(state: CliState, args: tuple[str, ...], prefix: bool, from_key: bool) -> None:
    """Grant a role read, write or readwrite permission on a key, a range, a prefix or keys from one on."""
    if len(args) < 3:
        raise CliError(
            ExitCode.BAD_ARGS,
            "role grant command requires role name, permission type, and key [endkey] as its argument",
        )
    try:
        perm_type = PermissionType.parse(args[1])
    except ValueError as err:
        raise CliError(ExitCode.BAD_ARGS, str(err)) from None
    key, range_end = permission_range(args[2:], prefix=prefix, from_key=from_key)
    printer = state.printer()
    response = state.client().role_grant_permission(args[0], key, range_end, perm_type)
    printers.role_grant_permission(printer, args[0], response)


@role.command("revoke-permission", short_help="Revokes a key from a role")
@click.argument("args", nargs=-1, metavar="<role name> <key> [endkey]")
@click.option("--prefix", is_flag=True, help="revoke a prefix permission")
@click.option(
    "--from-key",
    is_flag=True,
    help="revoke a permission of keys that are greater than or equal to the given key using byte compare",
)
@command_options
@pass_state
def revoke_permission(state: CliState, args: tuple[str, ...], prefix: bool, from_key: bool) -> None:
    """Revoke the permission a role has on a key, a range, a prefix or keys from one on."""
    if len(args) < 2:
        raise CliError(
            ExitCode.BAD_ARGS,
            "role revoke-permission command requires role name and key [endkey] as its argument",
        )
    key, range_end = permission_range(args[1:], prefix=prefix, from_key=from_key)
    printer = state.printer()
    response = state.client().role_revoke_permission(args[0], key, range_end)
    printers.role_revoke_permission(printer, args[0], _arg(args[1]), range_end, response)


def register(group: click.Group) -> None:
    """Add the role group to the top-level group."""
    group.add_command(role)
