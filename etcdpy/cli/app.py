"""The ``etcdpy`` click group: global flags, error handling, lazy ``server`` command.

Errors follow etcdctl: ``Error: <message>`` on stderr with its exit code; an
unknown flag is ``Error: unknown flag: --x`` (exit 1).  ``etcdpy server`` is
imported only when invoked, so the client tool never loads the server.
"""

from __future__ import annotations

import faulthandler
import importlib
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from etcdpy.api.errors import EtcdError
from etcdpy.cli.context import CliState
from etcdpy.cli.errors import CliError, ExitCode, SilentExit
from etcdpy.cli.options import (
    BOOL_FLAGS,
    GLOBAL_FLAGS,
    FlagError,
    GlobalOptions,
    check_environment,
    debug_lines,
    group_options,
)
from etcdpy.cli.printers import Output
from etcdpy.version import __version__

# name -> (module path, attribute, short help shown without importing it)
LAZY_COMMANDS = {"server": ("etcdpy.server.main", "command", "Run an etcdpy member.")}

_GO_BOOL = re.compile(r"^--([a-z][a-z0-9-]*)=(1|t|T|TRUE|true|True|0|f|F|FALSE|false|False)$")


class EtcdpyGroup(click.Group):
    """A group that loads lazy commands on demand and reports errors the etcdctl way."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS:
            module, attribute, _ = LAZY_COMMANDS[cmd_name]
            try:
                command = getattr(importlib.import_module(module), attribute)
            except (ImportError, AttributeError) as err:
                raise CliError(ExitCode.ERROR, f"etcdpy {cmd_name} is not available: {err}") from None
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing a lazy command must not import it: its help line is declared with it.
        rows = [
            (name, LAZY_COMMANDS[name][2] if name in LAZY_COMMANDS else self._short_help(ctx, name))
            for name in self.list_commands(ctx)
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def _short_help(self, ctx: click.Context, name: str) -> str:
        command = super().get_command(ctx, name)
        return command.get_short_help_str(limit=80) if command is not None else ""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EtcdError as err:
            raise CliError(ExitCode.ERROR, err.text) from None
        finally:
            state = ctx.find_object(CliState)
            if state is not None:
                state.output.flush()

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run with etcdctl's error lines and exit codes (click's own in non-standalone mode).

        A lazy command (the server) keeps click's own argument handling and exit codes.
        """
        argv = list(sys.argv[1:] if args is None else args)
        if lazy_command_in(argv) is not None:
            return super().main(argv, prog_name or "etcdpy", complete_var, standalone_mode, **extra)
        argv = normalize_bool_flags(argv, self)
        if not standalone_mode:
            return super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(argv, prog_name or "etcdpy", complete_var, standalone_mode=False, **extra)
        except click.NoSuchOption as err:
            _flag_error(err, f"unknown flag: {err.option_name}")
        except FlagError as err:
            _flag_error(err, err.format_message())
        except click.UsageError as err:
            _fail(err.format_message(), ExitCode.ERROR)
        except click.ClickException as err:
            err.show()
            sys.exit(err.exit_code)
        except click.Abort:
            _fail("interrupted", ExitCode.INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)


def lazy_command_in(argv: Sequence[str]) -> str | None:
    """The lazy command (``server``) this command line runs, if any: its first positional word."""
    valued = {f"--{f.name}" for f in GLOBAL_FLAGS if f.kind != "bool"} | {"-w", "-d"}
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token in valued:
            skip = True
        elif not token.startswith("-"):
            return token if token in LAZY_COMMANDS else None
    return None


def normalize_bool_flags(argv: list[str], root: click.Group) -> list[str]:
    """Rewrite Go's ``--flag=true``/``--flag=false`` into click's spelling (up to a ``--``)."""
    bool_names = set(BOOL_FLAGS) | _command_bool_flags(root)
    negatable = _negatable_flags(root)
    out: list[str] = []
    for index, token in enumerate(argv):
        if token == "--":
            out.extend(argv[index:])
            break
        match = _GO_BOOL.match(token)
        if match is None or match.group(1) not in bool_names:
            out.append(token)
            continue
        name, value = match.groups()
        if value in ("1", "t", "T", "TRUE", "true", "True"):
            out.append(f"--{name}")
        elif name in negatable:
            out.append(f"--no-{name}")
        # --flag=false for a flag that defaults to false: nothing to pass
    return out


def _negatable_flags(command: click.Command) -> set[str]:
    """Boolean flags declared ``--x/--no-x`` (those that default to true) in the command and below."""
    names = {
        opt.removeprefix("--no-")
        for param in command.params
        if isinstance(param, click.Option) and param.is_flag
        for opt in param.secondary_opts
        if opt.startswith("--no-")
    }
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            names |= _negatable_flags(sub)
    return names


def _command_bool_flags(group: click.Group) -> set[str]:
    names: set[str] = set()
    for command in group.commands.values():
        for param in command.params:
            if isinstance(param, click.Option) and param.is_flag:
                names.update(opt[2:] for opt in param.opts if opt.startswith("--"))
        if isinstance(command, click.Group):
            names |= _command_bool_flags(command)
    return names


@click.group(cls=EtcdpyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@group_options
@click.version_option(__version__, "--version", prog_name="etcdpy", message="%(prog)s version %(version)s")
@click.pass_context
def cli(ctx: click.Context, /, **params: Any) -> None:
    """etcdpy: etcd's client tool suite (etcdctl-compatible) and server in one command."""
    output = Output(click.get_binary_stream("stdout"), click.get_binary_stream("stderr"))
    state = CliState(GlobalOptions.from_params(params), output)
    ctx.obj = state
    fatal, warnings = check_environment(ctx)
    for warning in warnings:
        state.log("W", warning)
    if fatal is not None:
        state.log("C", fatal)
        raise SilentExit(ExitCode.ERROR)
    if state.options.debug:
        for line in debug_lines(state.options):
            state.output.err_line(line)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``etcdpy``, ``python -m etcdpy``).

    SIGQUIT prints every thread's stack to stderr and then ends the process,
    as a Go program (etcdctl, etcd) dumps its goroutines: the way to see
    where a command that does not end is waiting.
    """
    faulthandler.register(signal.SIGQUIT, all_threads=True, chain=True)
    cli.main(args=argv, prog_name="etcdpy")


def _flag_error(err: click.UsageError, message: str) -> NoReturn:
    """cobra's reaction to a bad flag: usage on stdout, the error line twice (cobra's and etcdctl's)."""
    if err.ctx is not None:
        click.echo(err.ctx.get_help())
    click.echo(f"Error: {message}", err=True)
    _fail(message, ExitCode.ERROR)


def _fail(message: str, code: ExitCode) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(int(code))
