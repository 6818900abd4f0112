"""Batch and WriteTxn: the write side of the MVCC store.

A `Batch` gathers the changes of one apply call in one LevelDB write batch and
an `Overlay` (so later requests of the call read earlier ones).  Each write
request opens a `WriteTxn`: it owns one main revision, numbers its changes with
sub revisions, and only takes the revision if it changes something.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from etcdpy.api import errors
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server.mvcc import layout
from etcdpy.server.mvcc.layout import Revision
from etcdpy.server.mvcc.leases import LeaseLookup
from etcdpy.server.mvcc.overlay import Overlay
from etcdpy.server.mvcc.reader import Reader

Event = kv_pb2.Event


class Batch:
    """Batch is one apply call's pending changes; the caller writes ``wb``, then calls `KVStore.published`."""

    def __init__(self, view: Any, wb: Any, rev: int, compact_rev: int, leases: LeaseLookup) -> None:
        self.view = view
        self.wb = wb  # plyvel write batch; the caller may add its own keys (e.g. the applied index)
        self.overlay = Overlay()
        self.rev = rev  # current revision including this batch's writes so far
        self.compact_rev = compact_rev  # logical compaction including this batch's
        self.leases = leases
        self.events: list[tuple[int, list[kv_pb2.Event]]] = []  # (revision, its events), ascending

    def reader(self) -> Reader:
        """A reader of the batch's current state (disk plus everything applied so far)."""
        return Reader(self.view, self.overlay, self.rev, self.compact_rev)

    @contextmanager
    def writing(self) -> Iterator[WriteTxn]:
        """A write transaction that ends, taking its revision, when the block exits normally.

        An EtcdError escaping after the transaction wrote something is a bug
        (requests check before writing): it becomes a RuntimeError, so the
        whole batch is abandoned instead of committing half a request.
        """
        w = WriteTxn(self)
        try:
            yield w
        except errors.EtcdError as exc:
            if w.changed:
                raise RuntimeError("a request failed after writing; the apply batch is abandoned") from exc
            raise
        w.end()

    def compact(self, rev: int) -> None:
        """Schedule a compaction at ``rev``: reads below it fail from now on.

        The physical deletion runs later in bounded steps (`KVStore.compact_step`).
        """
        if rev <= self.compact_rev:
            raise errors.ErrCompacted()
        if rev > self.rev:
            raise errors.ErrFutureRev()
        self.compact_rev = rev
        self.wb.put(layout.meta_key(layout.META_COMPACT_SCHEDULED), layout.encode_i64(rev))

    def finish(self) -> None:
        """Record the batch's current revision with its changes (call once, before writing)."""
        self.wb.put(layout.meta_key(layout.META_CURRENT_REV), layout.encode_u64(self.rev))


class WriteTxn(Reader):
    """WriteTxn applies one write request at revision ``main``; reads see its own earlier writes.

    Its ``rev`` is the revision a read inside it observes: the batch revision
    before the first change, ``main`` after it.
    """

    def __init__(self, batch: Batch) -> None:
        super().__init__(batch.view, batch.overlay, batch.rev, batch.compact_rev)
        self._batch = batch
        self.main = batch.rev + 1
        self._changes = 0  # next sub revision
        self._events: list[kv_pb2.Event] = []

    @property
    def changed(self) -> bool:
        return self._changes > 0

    def put(self, key: bytes, value: bytes, lease: int) -> None:
        """Write a new version of ``key``; keeps create revision, bumps version, moves the lease."""
        # The event is built in place, its prev_kv parsed straight from the stored bytes: no
        # separate KeyValue messages copied into it (a put's hottest path, on every member).
        event = kv_pb2.Event()  # type PUT (0)
        prev_bytes = self._current_bytes(key)
        prev: kv_pb2.KeyValue | None = None
        if prev_bytes is not None:
            prev = event.prev_kv
            prev.MergeFromString(prev_bytes)
        kv = event.kv
        kv.key = key
        kv.create_revision = prev.create_revision if prev is not None else self.main
        kv.mod_revision = self.main
        kv.version = prev.version + 1 if prev is not None else 1
        kv.value = value
        kv.lease = lease
        kv_bytes = kv.SerializeToString()
        rev = self._next_rev()
        wb = self._batch.wb
        wb.put(layout.history_key(rev), layout.encode_record(layout.PUT, kv_bytes))
        wb.put(layout.index_key(key, rev), layout.PUT)
        wb.put(layout.current_key(key), kv_bytes)
        if prev is None:
            wb.put(layout.live_key(key), b"")
        self._record(key, rev, kv_bytes)
        leases = self._batch.leases
        if prev is not None and prev.lease:
            leases.detach(key, prev.lease)
        if lease:
            leases.attach(key, lease)
        self._events.append(event)

    def delete_range(self, key: bytes, end: bytes | None) -> list[kv_pb2.KeyValue]:
        """Delete every live key in the range (one tombstone each); return what was deleted."""
        deleted = list(self.range(key, end, self.rev))
        wb = self._batch.wb
        leases = self._batch.leases
        for prev in deleted:
            rev = self._next_rev()
            tomb = kv_pb2.KeyValue(key=prev.key, mod_revision=self.main)
            wb.put(layout.history_key(rev), layout.encode_record(layout.TOMBSTONE, tomb.SerializeToString()))
            wb.put(layout.index_key(prev.key, rev), layout.TOMBSTONE)
            wb.delete(layout.current_key(prev.key))
            wb.delete(layout.live_key(prev.key))
            self._record(prev.key, rev, None)
            if prev.lease:
                leases.detach(prev.key, prev.lease)
            self._events.append(kv_pb2.Event(type=kv_pb2.Event.DELETE, kv=tomb, prev_kv=prev))
        return deleted

    def _record(self, key: bytes, rev: Revision, kv_bytes: bytes | None) -> None:
        assert self.overlay is not None
        self.overlay.record(key, rev, kv_bytes)

    def _next_rev(self) -> Revision:
        rev = Revision(self.main, self._changes)
        self._changes += 1
        self.rev = self.main
        return rev

    def end(self) -> None:
        """Close the transaction: the batch takes its revision only if something changed."""
        if self._changes:
            self._batch.rev = self.main
            self._batch.events.append((self.main, self._events))
