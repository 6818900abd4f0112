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

import bisect
from collections.abc import Iterator
from typing import Any

from etcdpy.api import errors
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server.mvcc import layout
from etcdpy.server.mvcc.layout import Revision


def key_range(key: bytes, range_end: bytes) -> bytes | None:
    """Map a request's (key, range_end) onto the internal ``end`` convention."""
    if not range_end:
        return None
    if range_end == b"\x00":
        return b""
    return range_end


class Overlay:
    """Overlay holds an open batch's changes, readable before the batch is written."""

    def __init__(self) -> None:
        # key -> KeyValue bytes of its newest version in the batch, None if that version is a delete
        self.current: dict[bytes, bytes | None] = {}
        # key -> [(revision, KeyValue bytes or None for a tombstone)], oldest first
        self.versions: dict[bytes, list[tuple[Revision, bytes | None]]] = {}
        self._sorted_keys: list[bytes] = []  # invariant: sorted(self.current)

    def record(self, key: bytes, rev: Revision, kv_bytes: bytes | None) -> None:
        if key not in self.current:
            bisect.insort(self._sorted_keys, key)
        self.current[key] = kv_bytes
        self.versions.setdefault(key, []).append((rev, kv_bytes))

    def keys_in(self, key: bytes, end: bytes | None) -> list[bytes]:
        if end is None:
            return [key] if key in self.current else []
        lo = bisect.bisect_left(self._sorted_keys, key)
        hi = len(self._sorted_keys) if end == b"" else bisect.bisect_left(self._sorted_keys, end)
        return self._sorted_keys[lo:hi]

    def version_at(self, key: bytes, rev: int) -> tuple[bool, bytes | None]:
        """(found, KeyValue bytes or None) of the key's newest batch version with main <= rev."""
        found: tuple[bool, bytes | None] = (False, None)
        for vrev, kv_bytes in self.versions.get(key, ()):
            if vrev.main > rev:
                break
            found = (True, kv_bytes)
        return found


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
            return sum(1 for _ in self._merge_current(key, end, with_values=False))
        return sum(1 for _, found in self._merge_past(key, end, rev) if _is_live(found))

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
        stop = layout.current_key(end) if end else layout.CURRENT_STOP
        disk = self.view.iterator(start=layout.current_key(key), stop=stop, include_value=with_values)
        if with_values:
            disk_items: Iterator[tuple[bytes, bytes | None]] = ((k[1:], v) for k, v in disk)
        else:
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
        it = self.view.raw_iterator()
        try:
            if end is None:
                hit = _seek_version(it, layout.index_group(key), rev)
                if hit is not None:
                    yield key, hit
                return
            if end and end <= key:
                return
            stop = layout.index_bound(end) if end else layout.INDEX_STOP
            pos = layout.index_bound(key)
            while True:
                it.seek(pos)
                if not it.valid() or it.key() >= stop:
                    return
                group, raw, _ = layout.split_index_key(it.key())
                hit = _seek_version(it, group, rev)
                if hit is not None:
                    yield raw, hit
                pos = layout.index_group_end(group)
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
    __slots__ = ("rev", "tombstone")

    def __init__(self, rev: Revision, tombstone: bool) -> None:
        self.rev = rev
        self.tombstone = tombstone


class _OverlayHit:
    __slots__ = ("kv_bytes",)

    def __init__(self, kv_bytes: bytes | None) -> None:
        self.kv_bytes = kv_bytes


def _is_live(found: Any) -> bool:
    if isinstance(found, _OverlayHit):
        return found.kv_bytes is not None
    return not found.tombstone


def _seek_version(it: Any, group: bytes, rev: int) -> _DiskHit | None:
    """The newest index entry of the group with main <= rev, via one seek."""
    it.seek(layout.index_seek(group, rev))
    if not it.valid():
        return None
    ikey = it.key()
    if not ikey.startswith(group):  # escaped keys never contain the terminator: no other key matches
        return None
    _, _, found_rev = layout.split_index_key(ikey)
    return _DiskHit(found_rev, it.value() == layout.TOMBSTONE)


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
