"""Helpers for the Lock and Election service tests: stubs on one channel, prefix events, RPC errors.

The tests run one body against the reference etcd and etcdpy; a server fixture
per module keeps them fast (each test uses its own lock or election name).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from procs import ServerProcess

from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.api.v3electionpb import v3election_pb2_grpc
from etcdpy.api.v3lockpb import v3lock_pb2_grpc
from etcdpy.client import Client
from etcdpy.client.watch import watch_create_request

WAIT = 15.0  # seconds an awaited event may take on a loaded machine
ETCD_JEPSEN_BUG = (
    "etcd 3.4 reports a lock or leadership whose lease died while it waited as acquired "
    "(Jepsen's finding; etcd 3.5's Mutex answers 'mutex: session is expired'): etcdpy fails the call"
)


def module_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    """Start the server `request.param` names ("etcd" or "etcdpy"); the caller stops it."""
    kind = str(request.param)
    return ServerProcess(kind, tmp_path_factory.mktemp(kind) / "data").start()


@dataclass
class Recipes:
    """Lock and Election stubs plus an etcdpy Client (KV, leases, watches) on one server or cluster."""

    channel: grpc.Channel
    lock: Any  # v3lock_pb2_grpc.LockStub (the generated stubs are untyped)
    election: Any  # v3election_pb2_grpc.ElectionStub
    client: Client
    on_close: list[Callable[[], object]] = field(default_factory=list)  # streams to end before the stubs

    @classmethod
    def open(cls, endpoint: str, client_endpoints: list[str] | None = None) -> Recipes:
        channel = grpc.insecure_channel(endpoint)
        return cls(
            channel,
            v3lock_pb2_grpc.LockStub(channel),
            v3election_pb2_grpc.ElectionStub(channel),
            Client(client_endpoints or [endpoint]),
        )

    def close(self) -> None:
        for close in self.on_close:
            close()
        self.channel.close()
        self.client.close()

    def events(self, prefix: bytes, start_revision: int) -> PrefixEvents:
        """Watch `prefix` from `start_revision` on, until `close`."""
        events = PrefixEvents(self.client, prefix, start_revision)
        self.on_close.append(events.close)
        return events

    def grant(self, ttl: int = 60) -> int:
        return self.client.lease_grant(ttl).ID

    def keys(self, prefix: bytes) -> list[kv_pb2.KeyValue]:
        return list(self.client.get(prefix, prefix=True).kvs)


@dataclass(frozen=True)
class Failure:
    code: grpc.StatusCode
    details: str


def failure_of(call: Callable[[], Any]) -> Failure:
    """The status a call fails with (the test fails if it succeeds)."""
    try:
        result = call()
    except grpc.RpcError as err:
        return Failure(err.code(), err.details() or "")
    raise AssertionError(f"expected the call to fail, it answered {result!r}")


def unknown(text: str) -> Failure:
    """How etcd's Lock and Election services send every error: code UNKNOWN with the text."""
    return Failure(grpc.StatusCode.UNKNOWN, text)


class PrefixEvents:
    """The events under a prefix from a revision on, collected by a thread; `expect` awaits one."""

    def __init__(self, client: Client, prefix: bytes, start_revision: int = 0) -> None:
        self._watch = client.watch(watch_create_request(prefix, prefix=True, start_revision=start_revision))
        self._events: queue.Queue[kv_pb2.Event | BaseException] = queue.Queue()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        try:
            for response in self._watch:
                for event in response.events:
                    self._events.put(event)
        except Exception as exc:  # handed to the test by `expect` (a closed watch just ends)
            self._events.put(exc)

    def expect(self, kind: int, key: bytes | None = None, timeout: float = WAIT) -> kv_pb2.Event:
        """The next event of `kind` (on `key`, if given); the ones skipped are dropped."""
        while True:
            try:
                event = self._events.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {kv_pb2.Event.EventType.Name(kind)} event on {key!r}") from None
            if isinstance(event, BaseException):
                raise AssertionError("the watch failed") from event
            if event.type == kind and (key is None or event.kv.key == key):
                return event

    def close(self) -> None:
        self._watch.close()
        self._thread.join(timeout=WAIT)


PUT = kv_pb2.Event.PUT
DELETE = kv_pb2.Event.DELETE


def revision_of(response: Any) -> int:
    header: rpc_pb2.ResponseHeader = response.header
    return int(header.revision)


def open_recipes(server: ServerProcess) -> Iterator[Recipes]:
    recipes = Recipes.open(server.endpoint)
    yield recipes
    recipes.close()
