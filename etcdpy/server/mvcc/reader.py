"""Reader answers "which key-values are live at revision R" over LevelDB plus unwritten changes.

A Reader reads one LevelDB view (the database itself or a snapshot) and, inside
an apply batch, an `Overlay` of the batch's changes that are not written yet, so
every request of a batch sees the requests before it.  Overlay revisions are
always newer than anything on disk, which keeps the merge simple: for a key the
overlay wins whenever it holds a version at or below the revision asked for.

Key ranges use one convention everywhere below the request layer:
``end is None`` is the single key, ``end == b""`` is every key >= key, otherwise
``[key, end)`` (empty when ``end <= key``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from etcdpy.api import errors
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server.mvcc import layout
from etcdpy.server.mvcc.layout import Revision
from etcdpy.server.mvcc.overlay import Overlay


def key_range(key: bytes, range_end: bytes) -> bytes | None:
    """Map a request's (key, range_end) onto the internal ``end`` convention."""
    if not range_end:
        return None
    if range_end == b"\x00":
        return b""
    return range_end


_CHEAP_CHANGES = 64  # this many changes are cheaper to replay than almost any index walk


class Reader:
    """Reader reads the store as of its revision ``rev``; ``compact_rev`` bounds past reads.

    ``rev`` may move forward while the reader is used by a write transaction.
    """

    def __init__(self, view: Any, overlay: Overlay | None, rev: int, compact_rev: int) -> None:
        self.view = view  # plyvel DB or Snapshot
        self.overlay = overlay
        self.rev = rev
        self.compact_rev = compact_rev

    # ---- single keys ----

    def get(self, key: bytes) -> kv_pb2.KeyValue | None:
        """The live KeyValue of ``key`` at ``self.rev``."""
        data = self._current_bytes(key)
        return None if data is None else kv_pb2.KeyValue.FromString(data)

    def _current_bytes(self, key: bytes) -> bytes | None:
        if self.overlay is not None and key in self.overlay.current:
            return self.overlay.current[key]
        data: bytes | None = self.view.get(layout.current_key(key))
        return data

    # ---- ranges ----

    def check_revision(self, rev: int) -> int:
        """Resolve a request revision (<= 0 means now); raise for future or compacted ones."""
        if rev > self.rev:
            raise errors.ErrFutureRev()
        if rev <= 0:
            rev = self.rev
        if rev < self.compact_rev:
            raise errors.ErrCompacted()
        return rev

    def range(self, key: bytes, end: bytes | None, rev: int) -> Iterator[kv_pb2.KeyValue]:
        """Live KeyValues in the range at ``rev`` (already checked), in key order."""
        if rev >= self.rev:
            for _, data in self._merge_current(key, end, with_values=True):
                assert data is not None
                yield kv_pb2.KeyValue.FromString(data)
            return
        for _, found in self._merge_past(key, end, rev):
            kv_bytes = self._resolve(found)
            if kv_bytes is not None:
                yield kv_pb2.KeyValue.FromString(kv_bytes)

    def count(self, key: bytes, end: bytes | None, rev: int) -> int:
        """Number of live keys in the range at ``rev`` (already checked), values never read."""
        if rev >= self.rev:
            return self._count_current(key, end)
        if self.overlay is not None:
            return sum(1 for _, found in self._merge_past(key, end, rev) if _is_live(found))
        if end is not None:
            now = self._count_current(key, end)
            # few changes since rev: correct today's count by them (a change costs ~8 keys of the walk)
            if self.rev - rev <= max(now // 8, _CHEAP_CHANGES):
                return now + self._count_change_since(key, end, rev)
        return sum(1 for _, _, tombstone in self._walk_index(key, end, rev) if not tombstone)

    def _count_current(self, key: bytes, end: bytes | None) -> int:
        if self.overlay is not None or end is None:
            return sum(1 for _ in self._merge_current(key, end, with_values=False))
        if end and end <= key:
            return 0
        stop = layout.live_key(end) if end else layout.LIVE_STOP
        return sum(1 for _ in self.view.iterator(start=layout.live_key(key), stop=stop, include_value=False))

    def _count_change_since(self, key: bytes, end: bytes, rev: int) -> int:
        """(live keys in range at rev) - (live keys in range now), from the history after rev."""
        touched: set[bytes] = set()
        start, stop = layout.history_key(Revision(rev + 1)), layout.history_key(Revision(self.rev + 1))
        for record in self.view.iterator(start=start, stop=stop, include_key=False):
            k = kv_pb2.KeyValue.FromString(layout.decode_record(record)[1]).key
            if key <= k and (not end or k < end):
                touched.add(k)
        change = 0
        it = self.view.raw_iterator()
        try:
            for k in touched:
                group = layout.index_group(k)
                it.seek(layout.index_seek(group, rev))
                if it.valid() and it.key().startswith(group) and it.value() != layout.TOMBSTONE:
                    change += 1
                change -= self._current_bytes(k) is not None
        finally:
            it.close()
        return change

    def _merge_current(
        self, key: bytes, end: bytes | None, *, with_values: bool
    ) -> Iterator[tuple[bytes, bytes | None]]:
        if end is None:
            data = self._current_bytes(key)
            if data is not None:
                yield key, data
            return
        if end and end <= key:
            return
        if with_values:
            stop = layout.current_key(end) if end else layout.CURRENT_STOP
            disk = self.view.iterator(start=layout.current_key(key), stop=stop)
            disk_items: Iterator[tuple[bytes, bytes | None]] = ((k[1:], v) for k, v in disk)
        else:  # the live-keys keyspace holds the same keys without values
            stop = layout.live_key(end) if end else layout.LIVE_STOP
            disk = self.view.iterator(start=layout.live_key(key), stop=stop, include_value=False)
            disk_items = ((k[1:], None) for k in disk)
        if self.overlay is None:
            yield from disk_items
            return
        pending = self.overlay.current
        for k, v in _merge_sorted(disk_items, self.overlay.keys_in(key, end)):
            if k in pending:
                data = pending[k]
                if data is not None:
                    yield k, data
            else:
                yield k, v

    def _merge_past(self, key: bytes, end: bytes | None, rev: int) -> Iterator[tuple[bytes, Any]]:
        """(key, found) for every key with a version <= rev; found is overlay bytes or a disk hit."""
        disk = self._disk_versions(key, end, rev)
        if self.overlay is None:
            yield from disk
            return
        overlay = self.overlay
        for k, disk_found in _merge_sorted(disk, overlay.keys_in(key, end)):
            has, kv_bytes = overlay.version_at(k, rev)
            if has:
                yield k, _OverlayHit(kv_bytes)
            elif disk_found is not None:
                yield k, disk_found

    def _disk_versions(self, key: bytes, end: bytes | None, rev: int) -> Iterator[tuple[bytes, _DiskHit]]:
        """(key, newest index entry <= rev) for every key in the range that has one, in key order."""
        for ikey, cut, tombstone in self._walk_index(key, end, rev):
            yield layout.group_raw_key(ikey, cut), _DiskHit(ikey, cut, tombstone)

    def _walk_index(self, key: bytes, end: bytes | None, rev: int) -> Iterator[tuple[bytes, int, bool]]:
        """(index key, group length, tombstone) of each key's newest entry <= rev, in key order.

        Walks the index sequentially (most groups hold few versions) and seeks
        only to jump over versions newer than ``rev`` or over a long group tail.
        This loop is the cost of past reads and counts, hence the local names.
        """
        if end is not None and end and end <= key:
            return
        suffix = layout.seek_suffix(rev)
        it = self.view.raw_iterator()
        seek, valid, ikey_of = it.seek, it.valid, it.key
        terminator, tomb, max_u64 = layout.TERMINATOR, layout.TOMBSTONE, layout.MAX_U64
        try:
            if end is None:
                group = layout.index_group(key)
                seek(group + suffix)
                if valid() and ikey_of().startswith(group):
                    yield ikey_of(), len(group), it.value() == tomb
                return
            stop = layout.index_bound(end) if end else layout.INDEX_STOP
            seek(layout.index_bound(key))
            while valid():
                ikey = ikey_of()
                if ikey >= stop:
                    return
                cut = ikey.index(terminator) + 2
                group = ikey[:cut]
                if max_u64 - int.from_bytes(ikey[cut : cut + 8], "big") > rev:
                    seek(group + suffix)
                    if not valid():
                        return
                    ikey = ikey_of()
                    if not ikey.startswith(group):
                        continue  # no version <= rev; ikey already starts the next group
                yield ikey, cut, it.value() == tomb
                _skip_group(it, group)
        finally:
            it.close()

    def _resolve(self, found: Any) -> bytes | None:
        if isinstance(found, _OverlayHit):
            return found.kv_bytes
        if found.tombstone:
            return None
        record = self.view.get(layout.history_key(found.rev))
        if record is None:
            raise RuntimeError(f"mvcc: key index points at missing history record {found.rev}")
        return layout.decode_record(record)[1]

    def get_at(self, key: bytes, rev: int) -> kv_pb2.KeyValue | None:
        """The live KeyValue of ``key`` at ``rev`` (already checked)."""
        for kv in self.range(key, None, rev):
            return kv
        return None


class _DiskHit:
    """An index entry found on disk: where its history record is and whether it is a tombstone."""

    __slots__ = ("cut", "ikey", "tombstone")

    def __init__(self, ikey: bytes, cut: int, tombstone: bool) -> None:
        self.ikey = ikey
        self.cut = cut
        self.tombstone = tombstone

    @property
    def rev(self) -> Revision:
        return layout.index_rev(self.ikey, self.cut)


class _OverlayHit:
    __slots__ = ("kv_bytes",)

    def __init__(self, kv_bytes: bytes | None) -> None:
        self.kv_bytes = kv_bytes


def _is_live(found: Any) -> bool:
    if isinstance(found, _OverlayHit):
        return found.kv_bytes is not None
    return not found.tombstone


def _skip_group(it: Any, group: bytes, walk: int = 4) -> None:
    """Move past the group's remaining entries: step a few, then seek over a long tail."""
    for _ in range(walk):
        it.next()
        if not it.valid() or not it.key().startswith(group):
            return
    it.seek(layout.index_group_end(group))


def _merge_sorted(disk: Iterator[tuple[bytes, Any]], extra: list[bytes]) -> Iterator[tuple[bytes, Any]]:
    """Merge a sorted (key, value) stream with sorted extra keys; extra keys get value None."""
    i = 0
    for k, v in disk:
        while i < len(extra) and extra[i] < k:
            yield extra[i], None
            i += 1
        if i < len(extra) and extra[i] == k:
            i += 1
        yield k, v
    for k in extra[i:]:
        yield k, None
