"""``version``: the etcdctl release etcdpy's command line emulates (``etcdpy --version``: etcdpy's own)."""

from __future__ import annotations

import click

from etcdpy.cli.context import CliState, pass_state
from etcdpy.cli.options import command_options
from etcdpy.version import API_VERSION, ETCD_RELEASE


@click.command("version", short_help="Prints the version of etcdctl")
@command_options
@pass_state
def version(state: CliState) -> None:
    """Print the version of etcdctl (the release etcdpy emulates) and its API version."""
    state.output.line(f"etcdctl version: {ETCD_RELEASE}")
    state.output.line(f"API version: {API_VERSION}")


def register(group: click.Group) -> None:
    """Add version to the top-level group."""
    group.add_command(version)
