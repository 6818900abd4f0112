"""``watch [key|prefix] [range_end] [-- command args]``: etcdctl's watch, plus --progress-notify.

A broken stream resumes on another endpoint without missing or repeating an
event (the client's failover).  On a terminal (default format) a live view
shows coloured events and says where it reconnected (`watch_view`).  Piped,
the output is etcdctl's byte for byte (simple, json, fields, protobuf), with
reconnects unsaid, as etcdctl retries silently; ``-w json`` prints one
response per line.  With ``-- command args`` the command runs once per event
with ETCD_WATCH_REVISION, ETCD_WATCH_EVENT_TYPE, ETCD_WATCH_KEY and
ETCD_WATCH_VALUE set (Go-quoted, as etcdctl sets them).
``-i`` reads ``watch ...`` and ``progress`` lines from stdin.

SIGINT/SIGTERM end the command with 128+N (130, 143), nothing printed, as
etcdctl dies of them; wherever the signal lands (a stream opening or failing
over included), because the streams are opened and read on worker threads
and the main thread only waits (`etcdpy.cli.signals`).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import click
from rich.console import Console

from etcdpy.api.errors import ErrCompacted, EtcdError
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.cli.context import CliState, pass_state
from etcdpy.cli.errors import CliError, ExitCode
from etcdpy.cli.kv import arg_bytes
from etcdpy.cli.options import GoInt64, command_options
from etcdpy.cli.printers import Printer, leasewatch
from etcdpy.cli.printers.goformat import go_quote
from etcdpy.cli.signals import StdinLines, Stopper, run_or_die_of_signal
from etcdpy.cli.watch_view import run_view
from etcdpy.client import Client
from etcdpy.client.watch import Watch, watch_create_request

BAD_ARGS_NUM = "bad number of arguments"
BAD_ARGS_ENV = "bad number of arguments (found conflicting environment key)"
BAD_ARGS_SEPARATOR = "bad number of arguments (found separator --, but no commands)"
EXEC_META = "etcdpy.watch.exec"


@dataclass(frozen=True)
class WatchOptions:
    prefix: bool = False
    rev: int = 0
    prev_kv: bool = False
    progress_notify: bool = False


class WatchCommand(click.Command):
    """Splits ``-- command args`` off before click parses (click would swallow the ``--``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            if at == len(args) - 1:
                raise CliError(ExitCode.BAD_ARGS, BAD_ARGS_SEPARATOR)
            ctx.meta[EXEC_META] = args[at + 1 :]
            args = args[:at]
        return super().parse_args(ctx, args)


def watch_request(args: Sequence[str], options: WatchOptions) -> pb.WatchCreateRequest:
    """etcdctl's getWatchChan: ``key [range_end]``, range_end and --prefix exclusive."""
    if not args:
        raise CliError(ExitCode.BAD_ARGS, BAD_ARGS_NUM)
    if len(args) == 2 and options.prefix:
        raise CliError(ExitCode.BAD_ARGS, "`range_end` and `--prefix` are mutually exclusive")
    return watch_create_request(
        arg_bytes(args[0]),
        arg_bytes(args[1]) if len(args) == 2 else None,
        prefix=options.prefix,
        start_revision=options.rev,
        prev_kv=options.prev_kv,
        progress_notify=options.progress_notify,
    )


def with_environment(args: list[str], has_exec: bool) -> list[str]:
    """ETCDCTL_WATCH_KEY / ETCDCTL_WATCH_RANGE_END stand for the key arguments, as in etcdctl."""
    key, range_end = os.environ.get("ETCDCTL_WATCH_KEY", ""), os.environ.get("ETCDCTL_WATCH_RANGE_END", "")
    if not key and range_end:
        raise CliError(
            ExitCode.BAD_ARGS, f"ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={range_end!r}"
        )
    if not key:
        if not args and not has_exec:
            raise CliError(ExitCode.BAD_ARGS, BAD_ARGS_NUM)
        return args
    if args:
        raise CliError(ExitCode.BAD_ARGS, BAD_ARGS_ENV)
    return [key, range_end] if range_end else [key]


class Display:
    """Prints responses (one lock: interactive watches print from several threads) and runs commands.

    Once ``stopper`` is stopped (the command was interrupted), nothing more is printed or run.
    """

    def __init__(self, state: CliState, printer: Printer, exec_args: Sequence[str], stopper: Stopper) -> None:
        self.state = state
        self.printer = printer
        self.exec_args = list(exec_args)
        self.stopper = stopper
        self.lock = threading.Lock()

    def show(self, response: pb.WatchResponse) -> None:
        refused = response.created and response.canceled
        if refused:
            # clientv3 hands etcdctl a refused watch (permission denied ...) as a bare canceled response.
            response = pb.WatchResponse(canceled=True, cancel_reason=response.cancel_reason)
        elif response.created:
            return  # clientv3 never hands created responses to etcdctl
        out = self.state.output
        with self.lock:
            if self.stopper.stopped:
                return
            if response.canceled:
                reason = ErrCompacted.message if response.compact_revision else response.cancel_reason
                out.err_line(f"watch was canceled ({reason})")
            if _is_progress(response):
                out.line(f"progress notify: {response.header.revision}")
            leasewatch.watch_response(self.printer, response, events_nil=refused)
            out.flush()
            for event in response.events:
                self._run(response, event)

    def _run(self, response: pb.WatchResponse, event: Any) -> None:
        if not self.exec_args or self.stopper.stopped:
            return
        env = dict(os.environ)
        env["ETCD_WATCH_REVISION"] = str(response.header.revision)
        env["ETCD_WATCH_EVENT_TYPE"] = go_quote(leasewatch.EVENT_TYPES[event.type])
        env["ETCD_WATCH_KEY"] = go_quote(bytes(event.kv.key))
        env["ETCD_WATCH_VALUE"] = go_quote(bytes(event.kv.value))
        try:
            code = subprocess.run(self.exec_args, env=env, check=False).returncode
            error = f"exit status {code}" if code else ""
        except OSError as err:
            error = f"exec: {go_quote(self.exec_args[0])}: {err.strerror.lower() if err.strerror else err}"
        if error:
            quoted = "[" + " ".join(go_quote(a) for a in self.exec_args) + "]"
            self.state.output.err_line(f"command {quoted} error ({error})")
            self.state.output.flush()
            os._exit(1)  # etcdctl exits at once, whatever other watches are doing


def _is_progress(response: pb.WatchResponse) -> bool:
    """clientv3's IsProgressNotify."""
    return (
        not response.events
        and not response.canceled
        and not response.created
        and response.compact_revision == 0
        and response.header.revision != 0
    )


def follow(display: Display, stream: Watch) -> None:
    """Show the stream's responses; a watch that fails ends as clientv3 ends it for etcdctl."""
    try:
        for response in stream:
            display.show(response)
    except EtcdError as err:
        with display.lock:
            if display.stopper.stopped:
                return
            display.state.output.err_line(f"watch was canceled ({err.text})")
            display.state.output.flush()


def open_stream(client: Client, request: pb.WatchCreateRequest, stopper: Stopper) -> Watch:
    """Open a watch (on a worker thread) that ``stopper`` closes."""
    stream = client.watch(request)
    stopper.on_stop(stream.close)
    return stream


@click.command(
    "watch",
    cls=WatchCommand,
    short_help="Watches events stream on keys or prefixes",
    help="Watches events stream on keys or prefixes. "
    "Usage: watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]",
)
@click.argument("args", nargs=-1, metavar="[key or prefix] [range_end]")
@click.option("-i", "--interactive", is_flag=True, help="Interactive mode")
@click.option("--prefix", is_flag=True, help="Watch on a prefix if prefix is set")
@click.option("--rev", type=GoInt64(), default=0, help="Revision to start watching")
@click.option("--prev-kv", is_flag=True, help="get the previous key-value pair before the event happens")
@click.option(
    "--progress-notify",
    is_flag=True,
    help="get periodic watch progress notification from server (beyond etcdctl 3.4)",
)
@command_options
@pass_state
def watch(
    state: CliState,
    args: tuple[str, ...],
    interactive: bool,
    prefix: bool,
    rev: int,
    prev_kv: bool,
    progress_notify: bool,
) -> None:
    """Watch a key, a range or a prefix, printing every event."""
    options = WatchOptions(prefix=prefix, rev=rev, prev_kv=prev_kv, progress_notify=progress_notify)
    if interactive:
        _interactive(state, options)
    exec_args: list[str] = click.get_current_context().meta.get(EXEC_META, [])
    request = watch_request(with_environment(list(args), bool(exec_args)), options)
    printer = state.printer()
    client = state.client()
    stopper = Stopper()
    if _live_view_wanted(state, exec_args):
        console = Console()
        reason = run_or_die_of_signal(
            lambda: run_view(console, client, request, on_open=lambda s: stopper.on_stop(s.close)), stopper
        )
        raise CliError(ExitCode.INTERRUPTED, f"watch is canceled by the server ({reason})")
    display = Display(state, printer, exec_args, stopper)
    run_or_die_of_signal(lambda: follow(display, open_stream(client, request, stopper)), stopper)
    raise CliError(ExitCode.INTERRUPTED, "watch is canceled by the server")


def _live_view_wanted(state: CliState, exec_args: list[str]) -> bool:
    """A person at a terminal with the default output gets the live view; scripts get etcdctl's bytes."""
    out = state.output.out
    return (
        not exec_args
        and state.options.write_out == "simple"
        and not state.options.hex
        and hasattr(out, "isatty")
        and out.isatty()
    )


def _interactive(state: CliState, options: WatchOptions) -> NoReturn:
    """etcdctl's watch -i: ``watch [flags] key [range_end] [-- cmd]`` and ``progress`` lines from stdin.

    stdin is read on the worker too (`StdinLines`): the main thread only waits.
    """
    client = state.client()
    stopper = Stopper()
    with StdinLines(sys.stdin) as lines:
        stopper.on_stop(lines.stop)
        run_or_die_of_signal(lambda: _read_lines(state, client, options, lines, stopper), stopper)


def _read_lines(
    state: CliState, client: Client, options: WatchOptions, lines: Iterable[str], stopper: Stopper
) -> NoReturn:
    """Handle the lines until stdin ends (etcdctl's error then) or ``stopper`` stops the reading."""
    streams: list[Watch] = []
    for line in lines:
        _interactive_line(state, client, options, line, streams, stopper)
        state.output.flush()
    stopper.stop()  # the streams end before the client closes under them
    raise CliError(ExitCode.INVALID_INPUT, "Error reading watch request line: EOF")


def _interactive_line(
    state: CliState,
    client: Client,
    options: WatchOptions,
    line: str,
    streams: list[Watch],
    stopper: Stopper,
) -> None:
    """Start a watch (added to ``streams``), ask every stream for progress, or say why the line is invalid."""
    words = shlex.split(line)
    if not words:
        state.output.err_line(f"Invalid command: {line} (watch and progress supported)")
    elif words[0] == "progress":
        for stream in streams:
            stream.request_progress()
    elif words[0] != "watch":
        state.output.err_line(f"Invalid command {line} (only support watch)")
    elif len(words) < 2:
        state.output.err_line(f"Invalid command {line} (command type or key is not provided)")
    else:
        exec_args: list[str] = []
        if "--" in words:
            at = words.index("--")
            words, exec_args = words[:at], words[at + 1 :]
        keys, line_options = _line_options(words[1:], options)
        try:
            request = watch_request(keys, line_options)
        except CliError as err:
            state.output.err_line(f"Invalid command {line} ({err.message})")
            return
        stream = open_stream(client, request, stopper)
        streams.append(stream)
        display = Display(state, state.printer(), exec_args, stopper)
        threading.Thread(target=follow, args=(display, stream), daemon=True).start()


def _line_options(words: list[str], base: WatchOptions) -> tuple[list[str], WatchOptions]:
    keys: list[str] = []
    prefix, rev, prev_kv = base.prefix, base.rev, base.prev_kv
    it = iter(words)
    for word in it:
        if word == "--prefix":
            prefix = True
        elif word == "--prev-kv":
            prev_kv = True
        elif word == "--rev":
            rev = int(next(it, "0"))
        elif word.startswith("--rev="):
            rev = int(word.split("=", 1)[1])
        else:
            keys.append(word)
    return keys, WatchOptions(prefix=prefix, rev=rev, prev_kv=prev_kv, progress_notify=base.progress_notify)


def register(group: click.Group) -> None:
    """Add watch to the top-level group."""
    group.add_command(watch)
