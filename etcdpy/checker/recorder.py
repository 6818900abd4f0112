"""Recorder: collects a history while real clients run, for check_operations.

    recorder: Recorder[KvInput, KvOutput] = Recorder()
    handle = recorder.call(client_id=1, input=KvInput.put("x", "1"))
    try:
        client.put("x", "1")
    except DefinitelyNotApplied:       # e.g. a validation error: the write never happened
        recorder.failed(handle)
    except Exception:                  # timeout, connection lost: it may or may not have happened
        recorder.unknown(handle)
    else:
        recorder.returned(handle, KvOutput())
    result = check_operations(KV_MODEL, recorder.operations())

Times come from one clock (monotonic by default), read when the call starts and
when its outcome is known, so they must be recorded by the client around the
request itself.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from etcdpy.checker.history import UNKNOWN, Operation, Unknown

I = TypeVar("I")  # noqa: E741 - the conventional name for an operation's input type
O = TypeVar("O")  # noqa: E741 - the conventional name for an operation's output type


@dataclass
class _Call(Generic[I]):
    client_id: int
    input: I
    call_time: float


class Recorder(Generic[I, O]):
    """Recorder turns call / outcome notifications from many clients into operations.

    It is safe to use from several threads (one lock) and from asyncio tasks.
    Calls still pending when `operations()` is read count as of unknown outcome.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[int, _Call[I]] = {}
        self._done: list[Operation[I, O]] = []
        self._next_handle = 0

    def call(self, client_id: int, input: I) -> int:
        """Call records that a client starts a request now; the handle names it later."""
        with self._lock:
            handle = self._next_handle
            self._next_handle += 1
            self._pending[handle] = _Call(client_id, input, self._clock())
            return handle

    def returned(self, handle: int, output: O) -> None:
        """Returned records the answer the client received, now."""
        self._finish(handle, output)

    def unknown(self, handle: int) -> None:
        """Unknown records that the client gave up without learning whether the request took effect."""
        self._finish(handle, UNKNOWN)

    def failed(self, handle: int) -> None:
        """Failed records that the request certainly did not take effect: it is left out of the history."""
        with self._lock:
            del self._pending[handle]

    def _finish(self, handle: int, output: O | Unknown) -> None:
        with self._lock:
            started = self._pending.pop(handle)
            now = math.inf if output is UNKNOWN else self._clock()
            self._done.append(Operation(started.client_id, started.input, output, started.call_time, now))

    def operations(self) -> list[Operation[I, O]]:
        """Operations is the history so far, pending calls included as of unknown outcome."""
        with self._lock:
            pending: list[Operation[I, O]] = [
                Operation(c.client_id, c.input, UNKNOWN, c.call_time, math.inf)
                for c in self._pending.values()
            ]
            return [*self._done, *pending]
