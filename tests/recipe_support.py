"""Helpers for the lock and election recipe tests (the client's concurrency package in tests/client,
the Lock and Election services in tests/e2e): calls in the background, awaited puts and events,
stubs on one channel, RPC errors, and a running etcdctl.

The tests run one body against the reference etcd and etcdpy; a server per module
(`shared_server`) keeps them fast, each test using its own lock or election name.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from procs import ETCDCTL_BIN

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


class Background:
    """A call running in a thread; `result` waits for its return value or re-raises its exception."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self._outcome: queue.Queue[tuple[bool, object]] = queue.Queue()
        self.done = threading.Event()

        def run() -> None:
            try:
                self._outcome.put((True, fn()))
            except BaseException as err:
                self._outcome.put((False, err))
            self.done.set()

        threading.Thread(target=run, daemon=True).start()

    def result(self, timeout: float = 20.0) -> object:
        ok, value = self._outcome.get(timeout=timeout)
        if not ok:
            assert isinstance(value, BaseException)
            raise value
        return value


def current_revision(client: Client) -> int:
    return int(client.get("\0").header.revision)


def wait_for_put(client: Client, name: str, start_revision: int, *, other_than: bytes = b"") -> bytes:
    """Block until a key other than ``other_than`` is put under ``name/`` at or after ``start_revision``."""
    watch = client.watch(watch_create_request(name + "/", prefix=True, start_revision=start_revision))
    try:
        for response in watch:
            for event in response.events:
                if event.type == kv_pb2.Event.PUT and event.kv.key != other_than:
                    return bytes(event.kv.key)
    finally:
        watch.close()
    raise AssertionError("the watch ended before the put")


def read_lines(proc: subprocess.Popen[str], count: int, timeout: float = 20.0) -> list[str]:
    """The next ``count`` lines ``proc`` prints (stripped); fails after ``timeout`` rather than hang."""
    assert proc.stdout is not None
    stdout = proc.stdout
    reading = Background(lambda: [stdout.readline().strip() for _ in range(count)])
    lines = reading.result(timeout)
    assert isinstance(lines, list)
    return lines


def etcdctl_process(endpoint: str, *args: str) -> subprocess.Popen[str]:
    """The reference etcdctl running ``args`` against ``endpoint``, its output piped; the caller ends it."""
    assert ETCDCTL_BIN is not None, "the reference etcdctl is not installed"
    return subprocess.Popen(
        [ETCDCTL_BIN, "--endpoints", endpoint, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"ETCDCTL_API": "3", "PATH": os.environ["PATH"]},
    )


@contextmanager
def etcdctl(endpoint: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """`etcdctl_process`, killed on exit if still running."""
    proc = etcdctl_process(endpoint, *args)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
