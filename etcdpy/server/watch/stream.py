"""WatchStream: one client stream's watchers and the bounded queue of responses waiting to be sent.

Responses leave in the order they were queued: a watcher's created response
before its events, its events in revision order, a progress response after
every event it vouches for.  Consecutive event responses of one watcher merge
(whole revisions only).  The queue holds at most about ``max_pending_events``
events and ``max_pending_bytes`` of them: past that the hub stops feeding the
stream's watchers live events and catches them up from history once the client
has read (see `WatchHub`), so a slow client costs history reads, never unbounded
memory, and never loses an event.  Events are queued encoded (`EncodedEvents`):
a revision's events are serialized once, whatever the number of watchers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server.watch.watcher import EmptyWatcherRange, Watcher

if TYPE_CHECKING:
    from etcdpy.server.watch.hub import WatchHub

DUPLICATE_ID = "mvcc: duplicate watch ID provided on the WatchStream"
DEFAULT_MAX_PENDING_EVENTS = 10_000
DEFAULT_MAX_PENDING_BYTES = 4 << 20  # of encoded events
PROGRESS_WATCH_ID = -1  # a progress response for the whole stream (WatchProgressRequest)


class WatchStream:
    """WatchStream serves one Watch call: create/cancel/progress in, responses out via `next`."""

    def __init__(
        self,
        hub: WatchHub,
        *,
        max_pending_events: int,
        max_response_bytes: int,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
    ) -> None:
        self.hub = hub
        self.max_pending_events = max_pending_events
        self.max_pending_bytes = max_pending_bytes
        self.max_response_bytes = max_response_bytes  # fragment watchers get responses split above this
        self.watchers: dict[int, Watcher] = {}
        self._queue: deque[_Queued] = deque()
        # Each watcher's newest queued events response, while it may still grow: a watcher's later
        # revisions join it (one response per watcher per send, not one per revision per watcher),
        # up to max_response_bytes of events.
        # Cleared by any other response, so nothing overtakes a created/cancel/progress response.
        self._open: dict[Watcher, _Queued] = {}
        self._pending_events = 0  # events held by the responses in _queue (0 when it is empty)
        self._pending_bytes = 0  # their encoded size
        self._fragments: deque[bytes] = deque()  # pieces of a response being sent
        self._ready = asyncio.Event()
        self._next_id = 0
        self._progress_wanted = False  # a progress request waits for every watcher to be synced
        self.closed = False

    # ---- requests ----

    def create(self, req: rpc_pb2.WatchCreateRequest) -> None:
        """Add a watcher; its created response (or refusal) is queued before any of its events."""
        now = self.hub.rev
        watch_id = req.watch_id
        if watch_id == 0:  # etcd's AutoWatchID: the next unused id
            while self._next_id in self.watchers:
                self._next_id += 1
            watch_id = self._next_id
            self._next_id += 1
        elif watch_id in self.watchers:
            self._refuse(now, DUPLICATE_ID)
            return
        start = req.start_revision if req.start_revision > 0 else now + 1
        try:
            watcher = Watcher(watch_id, self, req, start)
        except EmptyWatcherRange as exc:
            self._refuse(now, str(exc))
            return
        self.watchers[watch_id] = watcher
        self.enqueue(rpc_pb2.WatchResponse(header=self.hub.header(now), watch_id=watch_id, created=True))
        self.hub.add(watcher)

    def _refuse(self, rev: int, reason: str) -> None:
        self.enqueue(
            rpc_pb2.WatchResponse(
                header=self.hub.header(rev), watch_id=-1, created=True, canceled=True, cancel_reason=reason
            )
        )

    def cancel(self, watch_id: int) -> None:
        """Remove a watcher and confirm; an unknown id is ignored, as etcd does."""
        watcher = self.watchers.pop(watch_id, None)
        if watcher is None:
            return
        self.hub.remove(watcher)
        self.enqueue(
            rpc_pb2.WatchResponse(header=self.hub.header(self.hub.rev), watch_id=watch_id, canceled=True)
        )
        self._send_progress_if_synced()

    def cancel_compacted(self, watcher: Watcher, compact_revision: int) -> None:
        """End a watcher whose next revision was compacted away (called by the hub)."""
        self.watchers.pop(watcher.id, None)
        self.enqueue(
            rpc_pb2.WatchResponse(
                header=self.hub.header(0),  # etcd 3.4 sends no revision here (etcdctl -w json shows it)
                watch_id=watcher.id,
                canceled=True,
                compact_revision=compact_revision,
                cancel_reason=errors.ErrCompacted.message,
            )
        )
        self._send_progress_if_synced()

    def request_progress(self) -> None:
        """WatchProgressRequest: a watch_id -1 response at the current revision, once all are synced.

        Waiting keeps the bookmark honest: a watcher still catching up has not
        been sent everything up to the current revision yet.
        """
        self._progress_wanted = True
        self._send_progress_if_synced()

    def on_synced(self) -> None:
        """A watcher of this stream caught up (called by the hub)."""
        self._send_progress_if_synced()

    def _send_progress_if_synced(self) -> None:
        if self._progress_wanted and all(w.synced for w in self.watchers.values()):
            self._progress_wanted = False
            rev = self.hub.rev
            self.enqueue(rpc_pb2.WatchResponse(header=self.hub.header(rev), watch_id=PROGRESS_WATCH_ID))

    def close(self) -> None:
        """The client went away: drop every watcher and anything queued."""
        self.closed = True
        for watcher in self.watchers.values():
            self.hub.remove(watcher)
        self.watchers.clear()
        self._queue.clear()
        self._open.clear()
        self._fragments.clear()
        self._pending_events = 0
        self._pending_bytes = 0
        self._ready.set()

    # ---- the queue ----

    def has_room(self) -> bool:
        return (
            not self.closed
            and self._pending_events < self.max_pending_events
            and self._pending_bytes < self.max_pending_bytes
        )

    def enqueue(self, response: rpc_pb2.WatchResponse) -> None:
        """Queue a response without events (created, canceled, progress)."""
        if self.closed:
            return
        self._queue.append(_Queued(response.watch_id, response))
        self._open.clear()
        self._ready.set()

    def enqueue_events(self, watcher: Watcher, events: EncodedEvents) -> None:
        """Queue one revision's events for a watcher, merged into its unsent response.

        The header carries the hub's revision when the response is sent, as etcd's
        does, so headers never go back on a stream even while a watcher replays history.
        """
        if self.closed:
            return
        queued = self._open.get(watcher)
        if queued is None or queued.size + events.size > self.max_response_bytes:
            queued = self._open[watcher] = _Queued(watcher.id)
            self._queue.append(queued)
        queued.frames.extend(events.frames)
        queued.size += events.size
        self._pending_events += len(events.frames)
        self._pending_bytes += events.size
        self._ready.set()

    def progress(self, watcher: Watcher) -> None:
        """A progress notification for one watcher (progress_notify), at the hub's revision."""
        self.enqueue(rpc_pb2.WatchResponse(header=self.hub.header(self.hub.rev), watch_id=watcher.id))

    async def next(self) -> rpc_pb2.WatchResponse | None:
        """The next response, decoded (for in-process readers); None once the stream is closed."""
        wire = await self.next_wire()
        return None if wire is None else rpc_pb2.WatchResponse.FromString(wire)

    async def next_wire(self) -> bytes | None:
        """The next response to send, encoded; None once the stream is closed."""
        while True:
            if self._fragments:
                return self._fragments.popleft()
            if self.closed:
                return None
            if self._queue:
                queued = self._queue.popleft()
                if queued.response is not None:
                    return queued.response.SerializeToString()
                watcher = self.watchers.get(queued.watch_id)
                if watcher is not None and self._open.get(watcher) is queued:
                    del self._open[watcher]  # being sent: no longer mergeable
                self._pending_events -= len(queued.frames)
                self.hub.events_sent += len(queued.frames)  # etcd_debugging_mvcc_events_total
                self._pending_bytes -= queued.size
                assert self._queue or self._pending_events == self._pending_bytes == 0, "pending drifted"
                if (
                    self._pending_events < self.max_pending_events // 2
                    and self._pending_bytes < self.max_pending_bytes // 2
                    and self.hub.has_unsynced(self)
                ):
                    self.hub.wake()
                head = rpc_pb2.WatchResponse(header=self.hub.header(self.hub.rev), watch_id=queued.watch_id)
                if watcher is not None and watcher.fragment:
                    self._fragments.extend(fragment(head, queued.frames, self.max_response_bytes))
                    continue
                return head.SerializeToString() + b"".join(queued.frames)
            self._ready.clear()
            await self._ready.wait()


class EncodedEvents:
    """Events of one revision, each encoded once as a WatchResponse ``events`` field, for every watcher.

    A serialized WatchResponse followed by such fields is that response with those
    events (protobuf merges concatenated messages), so a response costs a join, not a copy per watcher.
    """

    __slots__ = ("frames", "size")

    def __init__(self, events: Sequence[kv_pb2.Event]) -> None:
        self.frames = [rpc_pb2.WatchResponse(events=[event]).SerializeToString() for event in events]
        self.size = sum(len(frame) for frame in self.frames)


class _Queued:
    """A whole response (created, canceled, progress), or a watcher's encoded events awaiting a header."""

    __slots__ = ("frames", "response", "size", "watch_id")

    def __init__(self, watch_id: int, response: rpc_pb2.WatchResponse | None = None) -> None:
        self.watch_id = watch_id
        self.response = response
        self.frames: list[bytes] = []
        self.size = 0


def fragment(head: rpc_pb2.WatchResponse, frames: list[bytes], max_bytes: int) -> list[bytes]:
    """etcd's sendFragments: ``head`` plus ``frames`` in pieces under ``max_bytes`` (one event at least).

    All pieces but the last are flagged ``fragment``.
    """
    if head.ByteSize() + sum(len(frame) for frame in frames) < max_bytes or len(frames) < 2:
        return [head.SerializeToString() + b"".join(frames)]
    overhead = head.ByteSize() + 2  # the fragment flag: tag and value
    groups: list[list[bytes]] = [[]]
    size = overhead
    for frame in frames:
        if groups[-1] and size + len(frame) >= max_bytes:
            groups.append([])
            size = overhead
        groups[-1].append(frame)
        size += len(frame)
    flagged = head.SerializeToString() + rpc_pb2.WatchResponse(fragment=True).SerializeToString()
    last = head.SerializeToString()
    return [(last if i == len(groups) - 1 else flagged) + b"".join(group) for i, group in enumerate(groups)]
