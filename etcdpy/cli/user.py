"""``user add|delete|get|list|passwd|grant-role|revoke-role``: etcdctl's user commands.

Passwords come as etcdctl takes them: ``user add name:password``,
``--new-user-password``, typed twice at the prompts (``--interactive``, the
default), or the first word of stdin (``--interactive=false``); ``--no-password``
makes a user that only a TLS client certificate can authenticate.  The prompts
come before the connection, so a ``--user`` password prompt follows them, as in
etcdctl.
"""

from __future__ import annotations

import click

from etcdpy.cli import passwords
from etcdpy.cli.context import CliState, pass_state
from etcdpy.cli.errors import CliError, ExitCode
from etcdpy.cli.options import command_options
from etcdpy.cli.printers import auth as printers


def _need(args: tuple[str, ...], count: int, message: str) -> None:
    if len(args) != count:
        raise CliError(ExitCode.BAD_ARGS, message)


def _password(state: CliState, name: str, interactive: bool) -> str:
    return passwords.ask_twice(state.output, name) if interactive else passwords.scan_word()


@click.group("user", short_help="User related commands")
def user() -> None:
    """User related commands."""


@user.command("add", short_help="Adds a new user")
@click.argument("args", nargs=-1, metavar="<user name or user:password>")
@click.option(
    "--interactive/--no-interactive",
    default=True,
    help="Read password from stdin instead of interactive terminal",
)
@click.option("--new-user-password", default="", help="Supply password from the command line flag")
@click.option("--no-password", is_flag=True, help="Create a user without password (CN based auth only)")
@command_options
@pass_state
def add(
    state: CliState, args: tuple[str, ...], interactive: bool, new_user_password: str, no_password: bool
) -> None:
    """Add a new user."""
    _need(args, 1, "user add command requires user name as its argument")
    printer = state.printer()
    name, password = args[0], ""
    if no_password:
        pass
    elif new_user_password:
        password = new_user_password
    elif ":" in args[0]:
        name, password = args[0].split(":", 1)
        if not name:
            raise CliError(ExitCode.BAD_ARGS, "empty user name is not allowed")
    else:
        password = _password(state, name, interactive)
    response = state.client().user_add(name, password, no_password=no_password)
    printers.user_add(printer, name, response)


@user.command("delete", short_help="Deletes a user")
@click.argument("args", nargs=-1, metavar="<user name>")
@command_options
@pass_state
def delete(state: CliState, args: tuple[str, ...]) -> None:
    """Delete a user."""
    _need(args, 1, "user delete command requires user name as its argument")
    printer = state.printer()
    printers.user_delete(printer, args[0], state.client().user_delete(args[0]))


@user.command("get", short_help="Gets detailed information of a user")
@click.argument("args", nargs=-1, metavar="<user name>")
@click.option("--detail", is_flag=True, help="Show permissions of roles granted to the user")
@command_options
@pass_state
def get(state: CliState, args: tuple[str, ...], detail: bool) -> None:
    """Show a user's roles (with --detail, each role's permissions)."""
    _need(args, 1, "user get command requires user name as its argument")
    printer = state.printer()
    client = state.client()
    response = client.user_get(args[0])
    if not detail:
        printers.user_get(printer, args[0], response)
        return
    # etcdctl writes these lines whatever the format, then each role as `role get` prints it.
    state.output.line(f"User: {args[0]}")
    for role in response.roles:
        state.output.line()
        printers.role_get(printer, role, client.role_get(role))


@user.command("list", short_help="Lists all users")
@click.argument("args", nargs=-1)
@command_options
@pass_state
def list_users(state: CliState, args: tuple[str, ...]) -> None:
    """List all users."""
    _need(args, 0, "user list command requires no arguments")
    printer = state.printer()
    printers.user_list(printer, state.client().user_list())


@user.command("passwd", short_help="Changes password of user")
@click.argument("args", nargs=-1, metavar="<user name>")
@click.option(
    "--interactive/--no-interactive",
    default=True,
    help="If true, read password from stdin instead of interactive terminal",
)
@command_options
@pass_state
def passwd(state: CliState, args: tuple[str, ...], interactive: bool) -> None:
    """Change a user's password."""
    _need(args, 1, "user passwd command requires user name as its argument")
    printer = state.printer()
    password = _password(state, args[0], interactive)
    printers.user_change_password(printer, state.client().user_change_password(args[0], password))


@user.command("grant-role", short_help="Grants a role to a user")
@click.argument("args", nargs=-1, metavar="<user name> <role name>")
@command_options
@pass_state
def grant_role(state: CliState, args: tuple[str, ...]) -> None:
    """Grant a role to a user."""
    _need(args, 2, "user grant command requires user name and role name as its argument")
    printer = state.printer()
    name, role = args
    printers.user_grant_role(printer, name, role, state.client().user_grant_role(name, role))


@user.command("revoke-role", short_help="Revokes a role from a user")
@click.argument("args", nargs=-1, metavar="<user name> <role name>")
@command_options
@pass_state
def revoke_role(state: CliState, args: tuple[str, ...]) -> None:
    """Revoke a role from a user."""
    _need(args, 2, "user revoke-role requires user name and role name as its argument")
    printer = state.printer()
    name, role = args
    printers.user_revoke_role(printer, name, role, state.client().user_revoke_role(name, role))


def register(group: click.Group) -> None:
    """Add the user group to the top-level group."""
    group.add_command(user)
