#!/usr/bin/env python3
"""Generate shell completions and man pages from etcdpy's click command tree.

Usage: scripts/gendocs.py [OUT_DIR]

Writes OUT_DIR/completions/etcdpy.{bash,zsh,fish} (click's completion scripts,
which call back into ``etcdpy`` for the candidates, so they follow the command
tree) and OUT_DIR/man/etcdpy[-<command>...].1, one roff page per command and
subcommand.  OUT_DIR defaults to the repository root.
tests/tooling/test_docs.py regenerates into a temporary directory and fails when the
committed files are stale.  The tree is walked through click's ``list_commands`` and
``get_command``, so the commands the CLI mounts lazily (``etcdpy server``, ``snapshot
restore``: server code imported only when run) get their pages like every other.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.shell_completion import get_completion_class

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from etcdpy import __version__  # noqa: E402
from etcdpy.cli import cli  # noqa: E402

PROG = "etcdpy"
COMPLETE_VAR = "_ETCDPY_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


def completion_scripts() -> dict[str, str]:
    """File name -> completion script for each supported shell."""
    scripts = {}
    for shell in SHELLS:
        cls = get_completion_class(shell)
        assert cls is not None, shell
        scripts[f"etcdpy.{shell}"] = cls(cli, {}, PROG, COMPLETE_VAR).source()
    return scripts


def _roff(text: str) -> str:
    """Escape text for roff: backslashes, and a leading dot or quote."""
    lines = []
    for line in text.replace("\\", "\\e").splitlines():
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def _subcommands(group: click.Group, path: tuple[str, ...]) -> list[tuple[str, click.Command]]:
    """The group's commands by name, lazily mounted ones included (loaded as running them would)."""
    ctx = click.Context(group, info_name=" ".join((PROG, *path)))
    found = []
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        assert command is not None, (path, name)
        found.append((name, command))
    return found


def _commands(group: click.Group, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], click.Command]]:
    found: list[tuple[tuple[str, ...], click.Command]] = []
    for name, command in _subcommands(group, path):
        found.append(((*path, name), command))
        if isinstance(command, click.Group):
            found.extend(_commands(command, (*path, name)))
    return found


def man_page(path: tuple[str, ...], command: click.Command) -> str:
    """One roff page for the command at ``path`` (empty path: the top-level group)."""
    full = " ".join((PROG, *path))
    title = "-".join((PROG, *path)).upper()
    ctx = click.Context(command, info_name=full)
    out = [
        f'.TH {title} 1 "" "{PROG} {__version__}" "etcdpy manual"',
        ".SH NAME",
        f"{_roff(full)} \\- {_roff(command.get_short_help_str(200))}",
        ".SH SYNOPSIS",
        f".B {full}",
        _roff(" ".join(command.collect_usage_pieces(ctx))),
    ]
    if command.help:
        out += [".SH DESCRIPTION", _roff(command.help.replace("\b\n", ""))]
    options = [p for p in command.params if isinstance(p, click.Option) and not p.hidden]
    if options:
        out.append(".SH OPTIONS")
        for option in options:
            record = option.get_help_record(ctx)
            if record is None:
                continue
            out += [".TP", f"\\fB{_roff(record[0])}\\fR", _roff(record[1])]
    if isinstance(command, click.Group):
        out.append(".SH COMMANDS")
        for name, sub in _subcommands(command, path):
            out += [".TP", f"\\fB{name}\\fR", _roff(sub.get_short_help_str(200))]
    if path:
        out += [
            ".SH GLOBAL OPTIONS",
            f"Every global option of \\fB{PROG}\\fR(1) (and its ETCDCTL_* environment variable) applies,",
            "before or after the command name.",
        ]
    out += [".SH SEE ALSO", f"\\fB{PROG}\\fR(1), \\fBetcdctl\\fR(1)"]
    return "\n".join(out) + "\n"


def man_pages() -> dict[str, str]:
    """File name -> roff page for the group and every command under it."""
    pages = {f"{PROG}.1": man_page((), cli)}
    for path, command in _commands(cli, ()):
        pages["-".join((PROG, *path)) + ".1"] = man_page(path, command)
    return pages


def generate() -> dict[str, str]:
    """Relative path -> content of every generated file."""
    files = {f"completions/{name}": text for name, text in completion_scripts().items()}
    files.update({f"man/{name}": text for name, text in man_pages().items()})
    return files


def main(argv: list[str]) -> None:
    out_dir = Path(argv[1]) if len(argv) > 1 else ROOT
    for relative, text in generate().items():
        target = out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


if __name__ == "__main__":
    main(sys.argv)
