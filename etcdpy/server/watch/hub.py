"""WatchHub: every watcher of the member, fed live events as apply batches end, or caught up from history.

A watcher is *synced* when everything it wants up to the hub's revision is
queued on its stream: `on_events` (the Applier's callback, after each batch is
written) hands it each new revision.  Synced watchers are found by the keys an
event touches: single-key watchers in a dict, ranges in an interval tree
(`RangeIndex`), so an event costs in proportion to the watchers that want it,
not to all of them.  It is *unsynced* when it starts in the
past or its stream's queue was full when a revision came: the catch-up task
then reads history from ``next_rev`` in chunks of at most ``chunk_revisions``
revisions, from a LevelDB snapshot on a worker thread (so writes and other
watchers go on meanwhile), and delivers whole revisions while the stream has
room.  Once it reaches the hub's revision it is synced again.  All state
changes happen on the event loop; the worker thread only reads.

A watcher whose next revision was compacted is cancelled with the compact
revision and etcd's reason text.  Progress notifications (``progress_notify``)
go to synced watchers every ``progress_interval`` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server.mvcc.history import read_events
from etcdpy.server.mvcc.kvstore import KVStore
from etcdpy.server.watch.intervals import RangeIndex
from etcdpy.server.watch.stream import (
    DEFAULT_MAX_PENDING_BYTES,
    DEFAULT_MAX_PENDING_EVENTS,
    EncodedEvents,
    WatchStream,
)
from etcdpy.server.watch.watcher import Selection, Watcher

CHUNK_REVISIONS = 256  # revisions read per catch-up step
PROGRESS_SECONDS = 600.0  # etcd's progress report interval (10 minutes)
DEFAULT_MAX_RESPONSE_BYTES = 1536 * 1024  # etcd's --max-request-bytes default: fragments stay under it

HeaderFiller = Callable[[rpc_pb2.ResponseHeader], None]
"""Sets cluster id, member id and raft term (and the revision only if unset): ResponseHeaders.fill."""


@dataclass(frozen=True)
class _Chunk:
    reached: int  # every revision up to here was read (or the compact revision if compacted)
    groups: list[tuple[int, list[kv_pb2.Event]]]
    compacted: bool = False


class WatchHub:
    """WatchHub routes events to watchers; ``run`` the catch-up task alongside the server."""

    def __init__(
        self,
        store: KVStore,
        *,
        fill_header: HeaderFiller | None = None,
        chunk_revisions: int = CHUNK_REVISIONS,
        progress_interval: float = PROGRESS_SECONDS,
    ) -> None:
        self.store = store
        self.fill_header = fill_header
        self.chunk_revisions = chunk_revisions
        self.progress_interval = progress_interval
        self.rev = store.current_revision  # the last revision handed to on_events (or loaded)
        self._by_key: dict[bytes, set[Watcher]] = {}  # synced single-key watchers
        self._ranges: RangeIndex[Watcher] = RangeIndex()  # synced range watchers, found by key
        self._unsynced: set[Watcher] = set()
        self.events_sent = 0  # taken off the streams' queues to send (etcd_debugging_mvcc_events_total)
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="etcdpy-watch")

    # ---- streams and watchers ----

    def new_stream(
        self,
        *,
        max_pending_events: int = DEFAULT_MAX_PENDING_EVENTS,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> WatchStream:
        return WatchStream(
            self,
            max_pending_events=max_pending_events,
            max_pending_bytes=max_pending_bytes,
            max_response_bytes=max_response_bytes,
        )

    def header(self, rev: int) -> rpc_pb2.ResponseHeader:
        """A response header at ``rev``; 0 stays 0 (no revision), as in etcd's compaction cancels."""
        header = rpc_pb2.ResponseHeader(revision=rev)
        if self.fill_header is not None:
            self.fill_header(header)
            header.revision = rev
        return header

    def add(self, watcher: Watcher) -> None:
        """Start a watcher: synced if it starts after the current revision, else caught up first."""
        if watcher.next_rev > self.rev:
            self._make_synced(watcher)
        else:
            self._unsynced.add(watcher)
            self.wake()

    def remove(self, watcher: Watcher) -> None:
        if watcher.synced:
            self._index_remove(watcher)
            watcher.synced = False
        self._unsynced.discard(watcher)

    def has_unsynced(self, stream: WatchStream) -> bool:
        return any(w.stream is stream for w in self._unsynced)

    def wake(self) -> None:
        self._wakeup.set()

    @property
    def watcher_count(self) -> int:
        return sum(len(ws) for ws in self._by_key.values()) + len(self._ranges) + len(self._unsynced)

    @property
    def pending_events(self) -> int:
        """Events queued on the watchers' streams, not sent yet (etcd_debugging_mvcc_pending_events_total)."""
        streams = {w.stream for w in self._synced()} | {w.stream for w in self._unsynced}
        return sum(stream._pending_events for stream in streams)

    @property
    def unsynced_count(self) -> int:
        """Watchers catching up from history (etcd_debugging_mvcc_slow_watcher_total)."""
        return len(self._unsynced)

    def _synced(self) -> list[Watcher]:
        return [*self._ranges, *(w for ws in self._by_key.values() for w in ws)]

    def _index_add(self, watcher: Watcher) -> None:
        if watcher.end is None:
            self._by_key.setdefault(watcher.key, set()).add(watcher)
        else:
            self._ranges.add(watcher.key, watcher.end, watcher)

    def _index_remove(self, watcher: Watcher) -> None:
        if watcher.end is None:
            group = self._by_key.get(watcher.key)
            if group is not None:
                group.discard(watcher)
                if not group:
                    del self._by_key[watcher.key]
        else:
            self._ranges.remove(watcher.key, watcher.end, watcher)

    def _make_synced(self, watcher: Watcher) -> None:
        self._unsynced.discard(watcher)
        watcher.synced = True
        self._index_add(watcher)
        watcher.stream.on_synced()

    def _make_unsynced(self, watcher: Watcher, next_rev: int) -> None:
        self._index_remove(watcher)
        watcher.synced = False
        watcher.next_rev = next_rev
        self._unsynced.add(watcher)

    # ---- live events ----

    def on_events(self, rev: int, events: Sequence[kv_pb2.Event]) -> None:
        """Deliver one applied revision to the synced watchers it concerns (the Applier's on_events)."""
        assert rev > self.rev, f"revision {rev} delivered after {self.rev}"
        self.rev = rev
        candidates: set[Watcher] = set()
        for event in events:
            key = event.kv.key
            group = self._by_key.get(key)
            if group:
                candidates.update(group)
            for covering in self._ranges.stab(key):
                candidates.update(covering)
        selections: dict[Selection, EncodedEvents] = {}
        for watcher in candidates:
            if rev < watcher.next_rev:
                continue  # starts in the future
            wanted = _select(watcher, events, selections)
            if not wanted.frames:
                continue
            if watcher.stream.has_room():
                watcher.stream.enqueue_events(watcher, wanted)
                watcher.next_rev = rev + 1
            else:
                self._make_unsynced(watcher, rev)
        if self._unsynced:
            self.wake()

    def restore(self, rev: int) -> None:
        """The store was replaced (raft snapshot): every synced watcher catches up from history to ``rev``."""
        caught_up_to = self.rev
        for watcher in self._synced():
            self._make_unsynced(watcher, max(watcher.next_rev, caught_up_to + 1))
        self.rev = rev
        self.wake()

    def notify_progress(self) -> None:
        """Send a progress notification to every synced watcher that asked for them."""
        for watcher in self._synced():
            if watcher.progress_notify and watcher.stream.has_room():
                watcher.stream.progress(watcher)

    # ---- catching up ----

    async def run(self) -> None:
        """Catch up unsynced watchers and send periodic progress; runs until cancelled."""
        progress = asyncio.get_running_loop().create_task(self._progress_loop())
        try:
            while True:
                if not await self.sync_step():
                    self._wakeup.clear()
                    await self._wakeup.wait()
        finally:
            progress.cancel()
            self._executor.shutdown(wait=True)

    async def _progress_loop(self) -> None:
        while True:
            await asyncio.sleep(self.progress_interval)
            self.notify_progress()

    async def sync_step(self) -> bool:
        """Read one chunk for the unsynced watchers whose streams have room; False if none could use one."""
        group = [w for w in self._unsynced if w.stream.has_room()]
        if not group:
            return False
        start = min(w.next_rev for w in group)
        prev_kv = any(w.prev_kv for w in group)
        chunk = await asyncio.get_running_loop().run_in_executor(self._executor, self._read, start, prev_kv)
        if chunk.compacted:
            for watcher in group:
                if watcher in self._unsynced and watcher.next_rev < chunk.reached:
                    self._unsynced.discard(watcher)
                    watcher.stream.cancel_compacted(watcher, chunk.reached)
            return True
        selections: dict[int, dict[Selection, EncodedEvents]] = {}  # per revision, shared by the group
        for watcher in group:
            if watcher in self._unsynced:
                self._deliver(watcher, chunk, selections)
        return True

    def _read(self, start: int, prev_kv: bool) -> _Chunk:
        """On the worker thread: revisions from ``start`` on, from a snapshot (never the loop's state)."""
        with self.store.read() as reader:
            if start < reader.compact_rev:
                return _Chunk(reader.compact_rev, [], compacted=True)
            groups = read_events(reader, start, self.chunk_revisions, prev_kv=prev_kv)
            reached = groups[-1][0] if len(groups) == self.chunk_revisions else reader.rev
            return _Chunk(reached, groups)

    def _deliver(
        self, watcher: Watcher, chunk: _Chunk, selections: dict[int, dict[Selection, EncodedEvents]]
    ) -> None:
        if watcher.next_rev > chunk.reached:
            return  # needs a later chunk
        stream = watcher.stream
        for rev, events in chunk.groups:
            if rev < watcher.next_rev:
                continue
            if not stream.has_room():
                return  # resumes at this revision once the client has read
            wanted = _select(watcher, events, selections.setdefault(rev, {}))
            if wanted.frames:
                stream.enqueue_events(watcher, wanted)
            watcher.next_rev = rev + 1
        watcher.next_rev = max(watcher.next_rev, chunk.reached + 1)
        if watcher.next_rev > self.rev:
            self._make_synced(watcher)


def _select(
    watcher: Watcher, events: Sequence[kv_pb2.Event], selections: dict[Selection, EncodedEvents]
) -> EncodedEvents:
    """``watcher.select(events)``, encoded: once per selection among the watchers of a revision."""
    selected = selections.get(watcher.selection)
    if selected is None:
        selected = selections[watcher.selection] = EncodedEvents(watcher.select(events))
    return selected
