"""``completion bash|zsh|fish`` and ``help [command...]``: cobra's two built-in commands, from click.

``completion <shell>`` prints the script that ``scripts/gendocs.py`` writes to
``completions/etcdpy.<shell>``: click's completion script, which asks ``etcdpy``
itself for the candidates (``_ETCDPY_COMPLETE``), so it follows the command
tree.  etcdctl (3.5, and the 3.4.23 built with a newer cobra) also offers
powershell, which click cannot complete.

``help [command...]`` prints a command's help as ``<command> --help`` does; an
unknown topic is ``Unknown help topic [`x`]`` and the top-level help, exit 0,
as cobra's help command.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

PROG = "etcdpy"
COMPLETE_VAR = "_ETCDPY_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


def completion_script(root: click.Command, shell: str) -> str:
    """The completion script of ``shell`` for the command tree under ``root``."""
    cls = get_completion_class(shell)
    assert cls is not None, shell
    return cls(root, {}, PROG, COMPLETE_VAR).source()


@click.group(
    "completion",
    short_help="Generate the autocompletion script for the specified shell",
    help=f"Generate the autocompletion script for {PROG} for the specified shell.\n"
    "See each sub-command's help for details on how to use the generated script.",
    invoke_without_command=True,
)
@click.pass_context
def completion(ctx: click.Context) -> None:
    if ctx.invoked_subcommand is None:  # cobra shows the group's help, exit 0
        click.echo(ctx.get_help())


def _shell_command(shell: str, how: str) -> click.Command:
    @click.pass_context
    def print_script(ctx: click.Context) -> None:
        click.echo(completion_script(ctx.find_root().command, shell), nl=False)

    return click.Command(
        shell,
        callback=print_script,
        short_help=f"Generate the autocompletion script for {shell}",
        help=f"Generate the autocompletion script for the {shell} shell.\n\n{how}",
    )


LOAD_NOW = "To load completions in your current shell session:\n\n    "
completion.add_command(_shell_command("bash", f"{LOAD_NOW}source <({PROG} completion bash)"))
completion.add_command(_shell_command("zsh", f"{LOAD_NOW}source <({PROG} completion zsh)"))
completion.add_command(_shell_command("fish", f"{LOAD_NOW}{PROG} completion fish | source"))


@click.command("help", short_help="Help about any command")
@click.argument("topic", nargs=-1, metavar="[command]")
@click.pass_context
def help_command(ctx: click.Context, topic: tuple[str, ...]) -> None:
    """Help provides help for any command in the application."""
    root = ctx.find_root()
    at = root
    for name in topic:
        group = at.command
        found = group.get_command(at, name) if isinstance(group, click.Group) else None
        if found is None:
            words = " ".join(f"`{word}`" for word in topic)
            click.echo(f"Unknown help topic [{words}]")
            click.echo(root.get_help())
            return
        at = click.Context(found, info_name=name, parent=at)
    click.echo(at.get_help())


def register(group: click.Group) -> None:
    """Add completion and help to the top-level group."""
    group.add_command(completion)
    group.add_command(help_command)
