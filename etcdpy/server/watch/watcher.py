"""Watcher: one WatchCreateRequest's scope, options and position; the events it wants of a revision."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server.mvcc.reader import key_range

if TYPE_CHECKING:
    from etcdpy.server.watch.stream import WatchStream

PUT = kv_pb2.Event.PUT
DELETE = kv_pb2.Event.DELETE
NOPUT = rpc_pb2.WatchCreateRequest.NOPUT
NODELETE = rpc_pb2.WatchCreateRequest.NODELETE


Selection = tuple[bytes, bytes | None, bool, bool, bool]
"""What decides the events a watcher wants of a revision: key, range end, no-put, no-delete, prev_kv."""


class EmptyWatcherRange(ValueError):
    """range_end at or before key (etcd: "mvcc: watcher range is empty")."""

    def __init__(self) -> None:
        super().__init__("mvcc: watcher range is empty")


class Watcher:
    """Watcher is one watch on a stream; the hub keeps it synced (live) or unsynced (catching up)."""

    __slots__ = (
        "end",
        "fragment",
        "id",
        "key",
        "next_rev",
        "no_delete",
        "no_put",
        "prev_kv",
        "progress_notify",
        "selection",
        "stream",
        "synced",
    )

    def __init__(self, watch_id: int, stream: WatchStream, req: rpc_pb2.WatchCreateRequest, next_rev: int):
        end = key_range(req.key, req.range_end)
        if end and end <= req.key:
            raise EmptyWatcherRange()
        self.id = watch_id
        self.stream = stream
        self.key = bytes(req.key)
        self.end = end  # None: the single key; b"": every key >= key; else [key, end)
        self.prev_kv = req.prev_kv
        self.no_put = NOPUT in req.filters
        self.no_delete = NODELETE in req.filters
        self.progress_notify = req.progress_notify
        self.fragment = req.fragment
        # Watchers with equal selections want the same events of a revision: the hub selects once for them.
        self.selection: Selection = (self.key, end, self.no_put, self.no_delete, self.prev_kv)
        # Every wanted event below next_rev is queued on the stream or was sent (not asserted: that
        # would read the history; tests/e2e and the chaos watch checker verify what clients receive).
        self.next_rev = next_rev
        self.synced = False  # set by the hub: synced watchers get events as batches are applied

    def covers(self, key: bytes) -> bool:
        if self.end is None:
            return key == self.key
        return self.key <= key and (not self.end or key < self.end)

    def select(self, events: Sequence[kv_pb2.Event]) -> list[kv_pb2.Event]:
        """The events of one revision this watcher wants, prev_kv removed unless it asked for it."""
        out: list[kv_pb2.Event] = []
        for event in events:
            if not self.covers(event.kv.key):
                continue
            if (event.type == PUT and self.no_put) or (event.type == DELETE and self.no_delete):
                continue
            if not self.prev_kv and event.HasField("prev_kv"):
                event = kv_pb2.Event(type=event.type, kv=event.kv)
            out.append(event)
        return out
