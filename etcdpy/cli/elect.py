"""``elect <election-name> [proposal]`` and ``elect -l <election-name>``: etcdctl's elect.

A candidate campaigns with its proposal on a session (a ``concurrency.Election``,
one queue with etcdctl's candidates), prints its key and value (like ``get``)
once elected, and holds leadership until SIGINT/SIGTERM, then resigns.  An
observer (``-l``) prints the leader, and every later leader and proclaimed
value, until interrupted.

Beyond etcdctl 3.4: ``--ttl`` sets the session's TTL (etcdctl always uses
60 s, so a dead leader is replaced only after a minute); the session's lease
is revoked on exit; an observer needs no session at all.
"""

from __future__ import annotations

import threading

import click

from etcdpy.api.errors import EtcdError
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.cli.context import CliState, pass_state
from etcdpy.cli.errors import CliError, ExitCode
from etcdpy.cli.kv import arg_bytes
from etcdpy.cli.lock import CANCELED, SessionWork, wait_for_end
from etcdpy.cli.options import GoInt64, command_options
from etcdpy.cli.printers import Printer
from etcdpy.cli.signals import Interrupted, Signals, interruptible, run_until_signal
from etcdpy.client import Client
from etcdpy.client.concurrency import Election, Observation
from etcdpy.client.concurrency.session import DEFAULT_TTL


@click.command(
    "elect",
    short_help="Observes and participates in leader election",
    help="Campaigns with <proposal> and holds leadership until interrupted (then resigns); "
    "with -l, prints every leader and proclaimed value. Usage: elect <election-name> [proposal]",
)
@click.argument("args", nargs=-1, metavar="<election-name> [proposal]")
@click.option("-l", "--listen", is_flag=True, help="observation mode")
@click.option(
    "--ttl",
    type=GoInt64(),
    default=DEFAULT_TTL,
    show_default=True,
    help="timeout for the candidate's session (etcdpy only; etcdctl uses 60)",
)
@command_options
@pass_state
def elect(state: CliState, args: tuple[str, ...], listen: bool, ttl: int) -> None:
    """Campaign for leadership of an election, or observe its leaders."""
    if len(args) not in (1, 2):
        raise CliError(
            ExitCode.BAD_ARGS, "elect takes one election name argument and an optional proposal argument"
        )
    if len(args) == 1 and not listen:
        raise CliError(ExitCode.BAD_ARGS, "no proposal argument but -l not set")
    if len(args) == 2 and listen:
        raise CliError(ExitCode.BAD_ARGS, "proposal given but -l is set")
    printer = state.printer()
    client = state.client()
    with interruptible() as signals:
        try:
            if listen:
                _observe(state, printer, client, arg_bytes(args[0]), signals)
            else:
                _campaign(state, printer, client, args[0], arg_bytes(args[1]), ttl, signals)
        finally:
            signals.ignore()


def _campaign(
    state: CliState, printer: Printer, client: Client, name: str, proposal: bytes, ttl: int, signals: Signals
) -> None:
    work = SessionWork(client, ttl)

    def campaign() -> tuple[Election, pb.RangeResponse]:
        election = Election(work.open(), name)
        election.campaign(proposal)
        return election, client.get(election.key)

    try:
        try:
            election, response = run_until_signal(signals, campaign, work.stop)
        except Interrupted:
            raise CliError(ExitCode.ERROR, CANCELED) from None
        assert work.session is not None
        try:
            printer.get(response)
            state.output.flush()
            interrupted = wait_for_end(work.session, signals)
        except Interrupted:  # elected already: resign as on a later signal
            interrupted = True
        if not interrupted:
            raise CliError(ExitCode.ERROR, "elect: session expired")
        signals.ignore()
        election.resign()
    finally:
        signals.ignore()
        work.close()


def _observe(state: CliState, printer: Printer, client: Client, name: bytes, signals: Signals) -> None:
    """Print each leader and value until interrupted; etcdctl's error if the observation ends by itself.

    The observation runs on a worker thread (see `run_until_signal`): a signal
    raised inside grpc's code could otherwise hang the exit or end the
    observation as if it had been lost.
    """
    follower = _Follower(state, printer, client, name + b"/")
    try:
        run_until_signal(signals, follower.run, follower.stop)
    except Interrupted:
        return
    except EtcdError:
        pass
    raise CliError(ExitCode.ERROR, "elect: observer lost")


class _Follower:
    """Prints an election's leaders until the observation ends by itself (or fails), or `stop` is called."""

    def __init__(self, state: CliState, printer: Printer, client: Client, prefix: bytes) -> None:
        self._state = state
        self._printer = printer
        self._client = client
        self._prefix = prefix
        self._lock = threading.Lock()
        self._stopped = False  # guarded by _lock; once set, nothing more is printed
        self._observation: Observation | None = None  # guarded by _lock, set once it exists

    def run(self) -> None:
        """Print until the observation ends (by itself, or once stopped); its EtcdError if it fails."""
        client, prefix = self._client, self._prefix
        read = _read_now(client, prefix)
        observation = Observation(client, prefix)
        with self._lock:
            self._observation = observation
            if self._stopped:  # stop came before there was an observation to close
                observation.close()
        try:
            previous = b""
            for leader in observation:
                proclaimed = leader.key == previous
                if previous and not proclaimed:
                    read = _read_now(client, prefix)
                previous = leader.key
                with self._lock:
                    if self._stopped:
                        return
                    self._printer.get(_as_etcd_observer_shows(read, leader, proclaimed))
                    self._state.output.flush()
        finally:
            observation.close()

    def stop(self) -> None:
        """End `run` soon (from another thread): the observation is closed, a new line is not printed."""
        with self._lock:
            self._stopped = True
            observation = self._observation
        if observation is not None:
            observation.close()


def _read_now(client: Client, prefix: bytes) -> pb.RangeResponse:
    """The election read when a leader is first seen: etcd's observer shows its header."""
    return client.get(prefix, prefix=True, count_only=True)


def _as_etcd_observer_shows(
    read: pb.RangeResponse, leader: kv_pb2.KeyValue, proclaimed: bool
) -> pb.RangeResponse:
    """The response etcd's observer (Go's ``Election.Observe``) sends for ``leader``.

    A new leader comes in a fresh response with the read's header and no
    count; a value it proclaims comes in the response the leader was read
    with (count included), under the header of the watch event.
    """
    response = pb.RangeResponse(header=read.header, kvs=[leader], count=read.count if proclaimed else 0)
    if proclaimed or leader.mod_revision > read.header.revision:
        response.header.revision = leader.mod_revision
    return response


def register(group: click.Group) -> None:
    """Add elect to the top-level group."""
    group.add_command(elect)
