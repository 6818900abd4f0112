"""WatchStream: one client stream's watchers and the bounded queue of responses waiting to be sent.

Responses leave in the order they were queued: a watcher's created response
before its events, its events in revision order, a progress response after
every event it vouches for.  Consecutive event responses of one watcher merge
(whole revisions only).  The queue holds at most about ``max_pending_events``
events: past that the hub stops feeding the stream's watchers live events and
catches them up from history once the client has read (see `WatchHub`), so a
slow client costs history reads, never unbounded memory, and never loses an event.
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
DEFAULT_MAX_PENDING_EVENTS = 1000
PROGRESS_WATCH_ID = -1  # a progress response for the whole stream (WatchProgressRequest)


class WatchStream:
    """WatchStream serves one Watch call: create/cancel/progress in, responses out via `next`."""

    def __init__(self, hub: WatchHub, *, max_pending_events: int, max_response_bytes: int) -> None:
        self.hub = hub
        self.max_pending_events = max_pending_events
        self.max_response_bytes = max_response_bytes  # fragment watchers get responses split above this
        self.watchers: dict[int, Watcher] = {}
        self._queue: deque[rpc_pb2.WatchResponse] = deque()
        # Each watcher's newest queued events response, while it may still grow: a watcher's later
        # revisions join it (one response per watcher per send, not one per revision per watcher).
        # Cleared by any other response, so nothing overtakes a created/cancel/progress response.
        self._open: dict[Watcher, rpc_pb2.WatchResponse] = {}
        self._open_bytes: dict[Watcher, int] = {}  # size of its events; merging stops at max_response_bytes
        self._pending_events = 0  # invariant: events held by the responses in _queue
        self._fragments: deque[rpc_pb2.WatchResponse] = deque()  # pieces of a response being sent
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
        self._open_bytes.clear()
        self._fragments.clear()
        self._pending_events = 0
        self._ready.set()

    # ---- the queue ----

    def has_room(self) -> bool:
        return not self.closed and self._pending_events < self.max_pending_events

    def enqueue(self, response: rpc_pb2.WatchResponse) -> None:
        if self.closed:
            return
        self._queue.append(response)
        self._pending_events += len(response.events)
        self._open.clear()
        self._open_bytes.clear()
        self._ready.set()

    def enqueue_events(self, watcher: Watcher, events: Sequence[kv_pb2.Event]) -> None:
        """Queue one revision's events for a watcher (merged into its queued response while unsent).

        The header carries the hub's revision when the response is sent, as etcd's
        does, so headers never go back on a stream even while a watcher replays history.
        """
        if self.closed:
            return
        response = self._open.get(watcher)
        size = sum(event.ByteSize() for event in events)
        if response is not None and self._open_bytes[watcher] + size <= self.max_response_bytes:
            response.events.extend(events)
            self._open_bytes[watcher] += size
        else:
            response = rpc_pb2.WatchResponse(
                header=self.hub.header(self.hub.rev), watch_id=watcher.id, events=events
            )
            self._queue.append(response)
            self._open[watcher] = response
            self._open_bytes[watcher] = size
        self._pending_events += len(events)
        self._ready.set()

    def progress(self, watcher: Watcher) -> None:
        """A progress notification for one watcher (progress_notify), at the hub's revision."""
        self.enqueue(rpc_pb2.WatchResponse(header=self.hub.header(self.hub.rev), watch_id=watcher.id))

    async def next(self) -> rpc_pb2.WatchResponse | None:
        """The next response to send; None once the stream is closed."""
        while True:
            if self._fragments:
                return self._fragments.popleft()
            if self.closed:
                return None
            if self._queue:
                response = self._queue.popleft()
                if response.events:
                    owner = self.watchers.get(response.watch_id)
                    if owner is not None and self._open.get(owner) is response:
                        del self._open[owner]  # being sent: no longer mergeable
                        del self._open_bytes[owner]
                    response.header.revision = max(response.header.revision, self.hub.rev)
                self._pending_events -= len(response.events)
                if self.hub.has_unsynced(self) and self._pending_events < self.max_pending_events // 2:
                    self.hub.wake()
                watcher = self.watchers.get(response.watch_id)
                if watcher is not None and watcher.fragment:
                    self._fragments.extend(fragment(response, self.max_response_bytes))
                    continue
                return response
            self._ready.clear()
            await self._ready.wait()


def fragment(response: rpc_pb2.WatchResponse, max_bytes: int) -> list[rpc_pb2.WatchResponse]:
    """etcd's sendFragments: pieces under ``max_bytes`` (one event at least), all but the last flagged."""
    if response.ByteSize() < max_bytes or len(response.events) < 2:
        return [response]
    pieces: list[rpc_pb2.WatchResponse] = []
    base = rpc_pb2.WatchResponse(header=response.header, watch_id=response.watch_id)
    overhead = base.ByteSize()
    current: list[kv_pb2.Event] = []
    size = overhead
    for event in response.events:
        event_size = event.ByteSize() + 6  # tag and length prefix
        if current and size + event_size >= max_bytes:
            pieces.append(_piece(base, current, more=True))
            current, size = [], overhead
        current.append(event)
        size += event_size
    pieces.append(_piece(base, current, more=False))
    return pieces


def _piece(base: rpc_pb2.WatchResponse, events: list[kv_pb2.Event], *, more: bool) -> rpc_pb2.WatchResponse:
    piece = rpc_pb2.WatchResponse()
    piece.CopyFrom(base)
    piece.events.extend(events)
    piece.fragment = more
    return piece
