"""Helpers for the concurrency recipe tests: calls in the background, awaited puts, a running etcdctl."""

from __future__ import annotations

import queue
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from procs import ETCDCTL_BIN

from etcdpy.api.mvccpb import kv_pb2
from etcdpy.client import Client
from etcdpy.client.watch import watch_create_request


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


@contextmanager
def etcdctl(endpoint: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """The reference etcdctl running ``args`` against ``endpoint``; killed on exit if still running."""
    assert ETCDCTL_BIN is not None, "the reference etcdctl is not installed"
    proc = subprocess.Popen(
        [ETCDCTL_BIN, "--endpoints", endpoint, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
