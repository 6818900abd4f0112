"""``version``: the etcdctl release etcdpy's command line emulates (``etcdpy --version``: etcdpy's own)."""

from __future__ import annotations

import click

from etcdpy.cli.context import CliState, pass_state
from etcdpy.cli.options import command_options

# The one place that names the etcdctl release whose behaviour and output etcdpy reproduces.
EMULATED_ETCDCTL_VERSION = "3.4.23"
EMULATED_API_VERSION = ".".join(EMULATED_ETCDCTL_VERSION.split(".")[:2])


@click.command("version", short_help="Prints the version of etcdctl")
@command_options
@pass_state
def version(state: CliState) -> None:
    """Print the version of etcdctl (the release etcdpy emulates) and its API version."""
    state.output.line(f"etcdctl version: {EMULATED_ETCDCTL_VERSION}")
    state.output.line(f"API version: {EMULATED_API_VERSION}")


def register(group: click.Group) -> None:
    """Add version to the top-level group."""
    group.add_command(version)
