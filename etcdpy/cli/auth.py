"""``auth enable|disable|status``: turning authentication on and off, as etcdctl does.

``enable`` does what etcdctl's does when the root user lacks the root role: it
adds the role (if missing), grants it to root and tries again.  ``status`` is
etcdctl 3.5's command (etcd 3.4 has no AuthStatus call: against it the command
fails with the server's "unknown method" error).
"""

from __future__ import annotations

import click

from etcdpy.api.errors import ErrRootRoleNotExist
from etcdpy.cli.context import CliState, pass_state
from etcdpy.cli.errors import CliError, ExitCode
from etcdpy.cli.options import command_options
from etcdpy.cli.printers import auth as printers


def _no_args(name: str, args: tuple[str, ...]) -> None:
    if args:
        raise CliError(ExitCode.BAD_ARGS, f"auth {name} command does not accept any arguments")


@click.group("auth", short_help="Enable or disable authentication")
def auth() -> None:
    """Enable or disable authentication."""


@auth.command("enable", short_help="Enables authentication")
@click.argument("args", nargs=-1)
@command_options
@pass_state
def enable(state: CliState, args: tuple[str, ...]) -> None:
    """Enable authentication (the root user must exist; it gets the root role if it lacks it)."""
    _no_args("enable", args)
    client = state.client()
    while True:
        try:
            client.auth_enable()
            break
        except ErrRootRoleNotExist:
            client.role_add("root")
            client.user_grant_role("root", "root")
    state.output.line("Authentication Enabled")


@auth.command("disable", short_help="Disables authentication")
@click.argument("args", nargs=-1)
@command_options
@pass_state
def disable(state: CliState, args: tuple[str, ...]) -> None:
    """Disable authentication."""
    _no_args("disable", args)
    state.client().auth_disable()
    state.output.line("Authentication Disabled")


@auth.command("status", short_help="Returns authentication status")
@click.argument("args", nargs=-1)
@command_options
@pass_state
def status(state: CliState, args: tuple[str, ...]) -> None:
    """Show whether authentication is enabled, and the auth store's revision."""
    _no_args("status", args)
    printer = state.printer()
    printers.auth_status(printer, state.client().auth_status())


def register(group: click.Group) -> None:
    """Add the auth group to the top-level group."""
    group.add_command(auth)
