"""``make-mirror [--prefix] [--dest-prefix | --no-dest-prefix] [--dest-*] DEST``: etcdctl 3.4's mirror.

As clientv3/mirror's syncer: the keys under ``--prefix`` (all keys without one)
are read at one revision in pages of 1000 and put to the destination, then a
watch from the next revision replays every change, the events of one source
revision as one destination transaction.  Keys are renamed by replacing the
first occurrence of the prefix with the destination prefix (the prefix itself
by default; ``--no-dest-prefix`` strips it).  The number of keys mirrored so
far is printed every 30 seconds, as etcdctl does.

Beyond etcdctl: a destination that does not answer fails at once (etcdctl
retries forever), and SIGINT/SIGTERM print the number of keys mirrored before
the command ends with 128+N (etcdctl dies of the signal and prints nothing).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import click

from etcdpy.api.errors import ErrCompacted, EtcdError
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.cli.context import CliState, pass_state
from etcdpy.cli.errors import CliError, ExitCode
from etcdpy.cli.options import command_options
from etcdpy.cli.signals import Interrupted, Stopper, interruptible, run_until_signal
from etcdpy.client import Client, TLSConfig, TLSFileError
from etcdpy.client import requests as rq
from etcdpy.client.watch import watch_create_request

BATCH_LIMIT = 1000  # keys per range request while syncing the base state (clientv3/mirror's batchLimit)
REPORT_SECONDS = 30.0  # how often the running total is printed


@click.command("make-mirror", short_help="Makes a mirror at the destination etcd cluster")
@click.argument("args", nargs=-1, metavar="<destination>")
@click.option("--prefix", default="", help="Key-value prefix to mirror")
@click.option(
    "--dest-prefix",
    default="",
    help="destination prefix to mirror a prefix to a different prefix in the destination cluster",
)
@click.option(
    "--no-dest-prefix", is_flag=True, help="mirror key-values to the root of the destination cluster"
)
@click.option(
    "--dest-cert",
    default="",
    help="Identify secure client using this TLS certificate file for the destination cluster",
)
@click.option("--dest-key", default="", help="Identify secure client using this TLS key file")
@click.option(
    "--dest-cacert", default="", help="Verify certificates of TLS enabled secure servers using this CA bundle"
)
@click.option(
    "--dest-insecure-transport/--no-dest-insecure-transport",
    default=True,
    help="Disable transport security for client connections",
)
@command_options
@pass_state
def make_mirror(
    state: CliState,
    args: tuple[str, ...],
    prefix: str,
    dest_prefix: str,
    no_dest_prefix: bool,
    dest_cert: str,
    dest_key: str,
    dest_cacert: str,
    dest_insecure_transport: bool,
) -> None:
    """Make a mirror of the keys (under --prefix) at the destination etcd cluster, and keep it current."""
    if len(args) != 1:
        raise CliError(ExitCode.BAD_ARGS, "make-mirror takes one destination argument")
    tls = TLSConfig(
        cacert=Path(dest_cacert) if dest_cacert else None,
        cert=Path(dest_cert) if dest_cert else None,
        key=Path(dest_key) if dest_key else None,
        always=bool(dest_cacert or dest_cert or dest_key) or not dest_insecure_transport,
    )
    try:
        if tls.always:
            tls.credentials()  # read the files now: a missing one is a bad argument, as in etcdctl
    except TLSFileError as err:
        raise CliError(ExitCode.BAD_ARGS, str(err)) from None
    source = state.client()
    if no_dest_prefix and dest_prefix:
        raise CliError(
            ExitCode.BAD_ARGS,
            "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
        )
    o = state.options
    dest = Client(
        [args[0]],
        dial_timeout=o.dial_timeout,
        command_timeout=o.command_timeout,
        keepalive_time=o.keepalive_time,
        keepalive_timeout=o.keepalive_timeout,
        tls=tls,
    )
    click.get_current_context().call_on_close(dest.close)
    try:
        dest.get(b"foo", count_only=True, timeout=o.dial_timeout + o.command_timeout)
    except EtcdError as err:
        raise CliError(ExitCode.BAD_CONNECTION, err.text) from None
    mirror = Mirror(
        source, dest, prefix.encode(), b"" if no_dest_prefix else (dest_prefix or prefix).encode()
    )
    with interruptible() as signals:
        reporter = threading.Thread(target=mirror.report_every, args=(state, REPORT_SECONDS), daemon=True)
        reporter.start()
        try:
            run_until_signal(signals, mirror.run, mirror.stop)
        except Interrupted:
            with mirror.print_lock:
                state.output.line(str(mirror.total))
                state.output.flush()
            raise signals.killed_exit() from None
        except EtcdError as err:
            mirror.stop()
            raise CliError(ExitCode.ERROR, err.text) from None
        finally:
            signals.ignore()
            mirror.stop()
    # etcdctl prints "Error: <nil>" when the source ends the watch: say what happened instead.
    raise CliError(ExitCode.ERROR, "the source cluster ended the watch")


class Mirror:
    """clientv3/mirror's syncer and etcdctl's makeMirror: the base state, then the updates, to ``dest``."""

    def __init__(self, source: Client, dest: Client, prefix: bytes, dest_prefix: bytes) -> None:
        self.source = source
        self.dest = dest
        self.prefix = prefix
        self.dest_prefix = dest_prefix
        self.total = 0  # keys put or deleted at the destination (only the worker adds to it)
        self.print_lock = threading.Lock()  # one line at a time: the reporter's and the final one
        self._stopper = Stopper()
        self._stopped = threading.Event()

    def rename(self, key: bytes) -> bytes:
        """The destination's key: the first occurrence of the prefix replaced (Go's strings.Replace, n=1)."""
        return key.replace(self.prefix, self.dest_prefix, 1)

    def run(self) -> None:
        """Sync the base state, then follow the updates until stopped; EtcdError on a failure."""
        revision = self.source.get(b"foo").header.revision
        for kvs in self._base(revision):
            for kv in kvs:
                if self._stopper.stopped:
                    return
                self.dest.put(self.rename(kv.key), kv.value)
                self.total += 1
        self._follow(revision + 1)

    def _base(self, revision: int) -> Iterator[list[kv_pb2.KeyValue]]:
        key, end = (self.prefix, rq.prefix_range_end(self.prefix)) if self.prefix else (b"\x00", b"\x00")
        while True:
            response = self.source.get(key, end, limit=BATCH_LIMIT, revision=revision)
            yield list(response.kvs)
            if not response.more:
                return
            key = response.kvs[-1].key + b"\x00"

    def _follow(self, start: int) -> None:
        request = watch_create_request(self.prefix, prefix=True, start_revision=start)
        stream = self.source.watch(request)
        self._stopper.on_stop(stream.close)
        for response in stream:
            if response.compact_revision != 0:
                raise ErrCompacted()
            ops: list[pb.RequestOp] = []
            last = 0
            for event in response.events:
                if last and event.kv.mod_revision > last:
                    self.dest.txn(success=ops)
                    ops = []
                last = event.kv.mod_revision
                key = self.rename(event.kv.key)
                if event.type == kv_pb2.Event.PUT:
                    ops.append(rq.op_put(rq.put_request(key, event.kv.value)))
                else:
                    ops.append(rq.op_delete(rq.delete_request(key)))
                self.total += 1
            if ops:
                self.dest.txn(success=ops)

    def report_every(self, state: CliState, seconds: float) -> None:
        """Print the running total every ``seconds`` until stopped (etcdctl's reporting goroutine)."""
        while not self._stopped.wait(seconds):
            with self.print_lock:
                if self._stopped.is_set():
                    return
                state.output.line(str(self.total))
                state.output.flush()

    def stop(self) -> None:
        """End `run` soon (from another thread) and the reporting."""
        self._stopped.set()
        self._stopper.stop()


def register(group: click.Group) -> None:
    """Add make-mirror to the top-level group."""
    group.add_command(make_mirror)
