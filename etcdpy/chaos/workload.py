"""Workload plumbing: the context client threads run in, and recorded requests they share.

A `Workload` starts its client threads with `start` and, once the run's faults are
healed and its threads stopped, may check what only it knows with `finish`.  Every
request goes through one of the recorded helpers below, which note the call and
return times, the header revision and, for writes, the revision created and its
effects.  A write whose answer never arrived (timeout, connection reset, member
killed) is recorded as of unknown outcome: it may or may not have been applied.
"""

from __future__ import annotations

import random
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.mvccpb.kv_pb2 import KeyValue
from etcdpy.chaos.history import RunHistory
from etcdpy.checker import KvInput, KvOutput
from etcdpy.checker.watch import Delete, Put
from etcdpy.client import (
    Client,
    CompareResult,
    CompareTarget,
    TLSConfig,
    compare,
    op_delete,
    op_get,
    op_put,
)
from etcdpy.client import requests as rq

COMMAND_TIMEOUT = 2.0  # short, so a request stuck on a dead member soon counts as unknown
# After a write of unknown outcome, wait this long: each one may be linearized anywhere after its
# call, so a client failing fast in a loop would give the checker thousands of them to place.
UNKNOWN_BACKOFF = 0.2


@dataclass
class Context:
    """Context is what every workload thread shares: endpoints, the history, the stop signal, the seed."""

    endpoints: Sequence[str]
    history: RunHistory
    seed: int
    tls: TLSConfig | None = None  # what every client presents (the cluster's `client_tls`)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)  # harness failures (a bug in a workload, not in etcdpy)
    threads: list[threading.Thread] = field(default_factory=list)  # load: they end when `stop` is set
    background: list[threading.Thread] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)  # end background work on `close`
    _clients: list[Client] = field(default_factory=list)

    def rng(self, name: str) -> random.Random:
        """A random source of its own for each thread, derived from the run's seed."""
        return random.Random(f"{self.seed}/{name}")

    def client(self, index: int, *, single: bool = False) -> Client:
        """A client starting at endpoint `index` (only that endpoint if `single`); closed at the end."""
        rotated = [
            *self.endpoints[index % len(self.endpoints) :],
            *self.endpoints[: index % len(self.endpoints)],
        ]
        client = Client(
            rotated[:1] if single else rotated,
            command_timeout=COMMAND_TIMEOUT,
            dial_timeout=1.0,
            tls=self.tls,
        )
        self._clients.append(client)
        return client

    def spawn(self, name: str, body: Callable[[], None], *, background: bool = False) -> None:
        """Run `body` in a thread; an exception escaping it is a harness error.

        Load threads end when ``stop`` is set; `background` ones (watches) when their owner closes them.
        """

        def guarded() -> None:
            try:
                body()
            except Exception:
                self.errors.append(f"{name}: {traceback.format_exc()}")

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        (self.background if background else self.threads).append(thread)
        thread.start()

    def stop_load(self, timeout: float = 30.0) -> None:
        """Set `stop` and wait for the load threads."""
        self.stop.set()
        self._join(self.threads, timeout)

    def close(self, timeout: float = 15.0) -> None:
        """End the background work (if the run ended early), wait for every thread, close every client."""
        self.stop.set()
        for closer in self.closers:
            closer()
        self._join([*self.threads, *self.background], timeout)
        for client in self._clients:
            client.close()

    def _join(self, threads: list[threading.Thread], timeout: float) -> None:
        for thread in threads:
            thread.join(timeout)
            if thread.is_alive():
                self.errors.append(f"{thread.name} did not stop within {timeout}s")


class Workload(Protocol):
    """Workload is one kind of client traffic."""

    name: str

    def start(self, ctx: Context) -> None:
        """Start the workload's threads (they run until ``ctx.stop`` is set)."""

    def finish(self, ctx: Context, client: Client) -> None:
        """Check what only this workload can check, once faults are healed and threads stopped."""


class Process:
    """Process is one logical client of the linearizability history: a new one after each unknown write.

    Like Jepsen's processes: an operation of unknown outcome may still take effect at
    any later time, so the thread carries on under a new identity.
    """

    def __init__(self, first: int) -> None:
        self.id = first

    def crashed(self) -> None:
        self.id += 1_000


def text(value: bytes) -> str:
    return value.decode(errors="replace")


def recorded_get(ctx: Context, proc: Process, client: Client, key: bytes) -> KeyValue | bool | None:
    """A linearizable get recorded as a register read: the kv, None when absent, False when it failed."""
    history = ctx.history
    handle = history.kv.call(proc.id, KvInput.get(text(key)))
    called = history.clock()
    try:
        response = client.get(key)
    except Exception:
        history.kv.failed(handle)  # a read changes nothing: a failed one is left out
        return False
    kv = response.kvs[0] if response.kvs else None
    history.kv.returned(handle, KvOutput(text(kv.value) if kv is not None else None))
    history.timed(called, response.header.revision, f"get {text(key)}")
    return kv


def recorded_put(
    ctx: Context, proc: Process, client: Client, key: bytes, value: bytes, lease: int = 0
) -> pb.PutResponse | None:
    """A put recorded as a register write; None when its outcome is unknown."""
    history = ctx.history
    handle = history.kv.call(proc.id, KvInput.put(text(key), text(value)))
    called = history.clock()
    try:
        response = client.put(key, value, lease=lease)
    except Exception:
        history.kv.unknown(handle)
        proc.crashed()
        ctx.stop.wait(UNKNOWN_BACKOFF)
        return None
    history.kv.returned(handle, KvOutput())
    history.committed(response.header.revision, Put(key, value, lease))
    history.timed(called, response.header.revision, f"put {text(key)}")
    return response


def recorded_cas(
    ctx: Context,
    proc: Process,
    client: Client,
    key: bytes,
    expected: KeyValue | None,
    value: bytes | None,
    *,
    by_revision: bool,
) -> bool | None:
    """Write `value` (None: delete) iff the key is still `expected` (None: absent); None when unknown.

    ``by_revision`` compares mod_revision (Kubernetes' optimistic concurrency) instead
    of the value; values are unique per write, so both are the register's CAS.
    """
    history = ctx.history
    handle = history.kv.call(
        proc.id, KvInput.cas(text(key), text(expected.value) if expected else None, value and text(value))
    )
    if expected is None:
        guard = compare(key, CompareTarget.CREATE, CompareResult.EQUAL, 0)
    elif by_revision:
        guard = compare(key, CompareTarget.MOD, CompareResult.EQUAL, expected.mod_revision)
    else:
        guard = compare(key, CompareTarget.VALUE, CompareResult.EQUAL, expected.value)
    write = op_put(rq.put_request(key, value)) if value is not None else op_delete(rq.delete_request(key))
    called = history.clock()
    try:
        response = client.txn([guard], [write], [op_get(rq.range_request(key))])
    except Exception:
        history.kv.unknown(handle)
        proc.crashed()
        ctx.stop.wait(UNKNOWN_BACKOFF)
        return None
    history.kv.returned(handle, KvOutput(ok=response.succeeded))
    history.timed(called, response.header.revision, f"cas {text(key)}")
    if response.succeeded:
        effect = Put(key, value) if value is not None else Delete(key)
        if value is not None or response.responses[0].response_delete_range.deleted:
            history.committed(response.header.revision, effect)
    return response.succeeded


def recorded_txn(ctx: Context, client: Client, request: pb.TxnRequest, what: str) -> pb.TxnResponse | None:
    """A txn outside the register model: its effects recorded if it succeeded; None when unknown.

    Only puts and single-key deletes are recorded as effects (the workloads use no others in txns).
    """
    history = ctx.history
    called = history.clock()
    try:
        response = client.send_txn(request)
    except Exception:
        ctx.stop.wait(UNKNOWN_BACKOFF)
        return None
    history.timed(called, response.header.revision, what)
    ops = request.success if response.succeeded else request.failure
    effects: list[Put | Delete] = []
    for op, result in zip(ops, response.responses, strict=True):
        if op.HasField("request_put"):
            put = op.request_put
            effects.append(Put(put.key, put.value, put.lease))
        elif op.HasField("request_delete_range") and result.response_delete_range.deleted:
            effects.append(Delete(op.request_delete_range.key))
    if effects:
        history.committed(response.header.revision, *effects)
    return response
