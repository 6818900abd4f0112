"""Hashes of the MVCC store for corruption checks between members.

`hash_kv` is logical: it covers the history records a read at or above the
compact revision can still see, so members agree whatever their physical
compaction has deleted so far.  `hash_all` is physical: every MVCC byte.
"""

from __future__ import annotations

import zlib
from typing import Any

from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server.mvcc import layout


def hash_kv(view: Any, rev: int, compact_rev: int) -> int:
    """crc32 over the history records with main <= rev that survive compaction at compact_rev.

    Records above the compaction all count; at or below it only each key's
    newest version <= compact_rev, and only if it is not a tombstone.
    """
    crc = 0
    stop = layout.history_key(layout.Revision(rev + 1))
    index = view.raw_iterator()
    try:
        for hkey, record in view.iterator(start=layout.HISTORY_START, stop=stop):
            rev_of = layout.history_rev(hkey)
            if rev_of.main <= compact_rev and not _kept(index, hkey, record, compact_rev):
                continue
            crc = zlib.crc32(record, zlib.crc32(hkey, crc))
    finally:
        index.close()
    return crc


def _kept(index: Any, hkey: bytes, record: bytes, compact_rev: int) -> bool:
    kind, kv_bytes = layout.decode_record(record)
    if kind == layout.TOMBSTONE:
        return False
    group = layout.index_group(kv_pb2.KeyValue.FromString(kv_bytes).key)
    index.seek(layout.index_seek(group, compact_rev))
    if not index.valid() or not index.key().startswith(group):
        return False
    return layout.split_index_key(index.key())[2] == layout.history_rev(hkey)


def hash_all(view: Any) -> int:
    """crc32 over every key and value of the history, key index, current and live-keys keyspaces."""
    crc = 0
    for start, stop in (
        (layout.HISTORY_START, layout.HISTORY_STOP),
        (layout.INDEX_START, layout.INDEX_STOP),
        (layout.CURRENT_START, layout.CURRENT_STOP),
        (layout.LIVE_START, layout.LIVE_STOP),
    ):
        for key, value in view.iterator(start=start, stop=stop):
            crc = zlib.crc32(value, zlib.crc32(key, crc))
    return crc
