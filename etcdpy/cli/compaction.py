"""``compaction <revision>``: discard the key history before a revision."""

from __future__ import annotations

import click

from etcdpy.cli.context import CliState, pass_state
from etcdpy.cli.errors import CliError, ExitCode
from etcdpy.cli.options import command_options


@click.command("compaction", short_help="Compacts the event history in etcd")
@click.argument("args", nargs=-1, metavar="<revision>")
@click.option(
    "--physical", is_flag=True, help="'true' to wait for compaction to physically remove all old revisions"
)
@command_options
@pass_state
def compaction(state: CliState, args: tuple[str, ...], physical: bool) -> None:
    """Compact the event history in etcd up to <revision>."""
    if len(args) != 1:
        raise CliError(ExitCode.BAD_ARGS, "compaction command needs 1 argument")
    text = args[0]
    try:
        revision = int(text, 10) if text.lstrip("+-").isdigit() and text.isascii() else None
    except ValueError:
        revision = None
    if revision is None or not -(2**63) <= revision < 2**63:
        reason = "invalid syntax" if revision is None else "value out of range"
        raise CliError(ExitCode.ERROR, f'strconv.ParseInt: parsing "{text}": {reason}')
    state.printer()  # an unknown -w fails before the request, as in etcdctl
    state.client().compact(revision, physical=physical)
    # etcdctl prints this line whatever the output format.
    state.output.line(f"compacted revision {revision}")


def register(group: click.Group) -> None:
    """Add compaction to the top-level group."""
    group.add_command(compaction)
