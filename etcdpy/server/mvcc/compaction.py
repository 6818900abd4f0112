"""Physical compaction: delete the versions no read at or above the compact revision can see.

A compaction is logical first: `Batch.compact` records the scheduled revision
in meta and reads below it fail at once.  `compact_step` then deletes, in
bounded write batches, every version a read at revision >= C cannot observe:
for each key, everything at or below C except its newest version <= C, and
that one too when it is a tombstone (nothing of the key is visible at C).

Only keys written since the last finished compaction can hold such versions,
so a step scans the history window (finished, C] rather than every key, and
for each key found there cleans its whole index group.  The scan position is
stored in meta with each step's deletions, so a crash resumes where it
stopped; scheduling a later compaction while one runs just widens the window.
Deleting only entries invisible at or above C keeps concurrent reads and
writes correct, so steps may interleave with applies.
"""

from __future__ import annotations

from typing import Any

from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server import failpoints
from etcdpy.server.mvcc import layout
from etcdpy.server.mvcc.layout import Revision

DEFAULT_STEP_RECORDS = 1000


def compaction_state(view: Any) -> tuple[int, int]:
    """(scheduled, finished) compact revisions stored in meta."""
    scheduled = layout.decode_i64(
        view.get(layout.meta_key(layout.META_COMPACT_SCHEDULED)), layout.NEVER_COMPACTED
    )
    finished = layout.decode_i64(
        view.get(layout.meta_key(layout.META_COMPACT_FINISHED)), layout.NEVER_COMPACTED
    )
    return scheduled, finished


def compact_step(db: Any, write_batch: Any, max_records: int = DEFAULT_STEP_RECORDS) -> bool:
    """Run one bounded step of the scheduled compaction; True when none is left to do.

    ``write_batch`` is a context manager factory yielding a plyvel write batch
    (``Backend.batch``); each step writes its deletions and progress atomically.
    """
    scheduled, finished = compaction_state(db)
    if finished >= scheduled:
        return True
    cursor = db.get(layout.meta_key(layout.META_COMPACT_CURSOR))
    start = cursor if cursor is not None else layout.history_key(Revision(finished + 1))
    stop = layout.history_key(Revision(scheduled + 1))
    seen: set[bytes] = set()
    resume: bytes | None = None
    it = db.raw_iterator()
    try:
        with write_batch(sync=False) as wb:
            it.seek(start)
            records = 0
            while it.valid() and it.key() < stop:
                if records == max_records:
                    resume = it.key()
                    break
                key = kv_pb2.KeyValue.FromString(layout.decode_record(it.value())[1]).key
                if key not in seen:
                    seen.add(key)
                    _clean_group(db, wb, key, scheduled)
                records += 1
                it.next()
            if resume is None:
                wb.put(layout.meta_key(layout.META_COMPACT_FINISHED), layout.encode_i64(scheduled))
                wb.delete(layout.meta_key(layout.META_COMPACT_CURSOR))
            else:
                wb.put(layout.meta_key(layout.META_COMPACT_CURSOR), resume)
            failpoints.hit("compactBeforeCommitBatch")
        failpoints.hit("compactAfterCommitBatch")
    finally:
        it.close()
    return resume is None


def _clean_group(db: Any, wb: Any, key: bytes, compact_rev: int) -> None:
    """Delete the key's versions <= compact_rev except its newest one, unless that is a tombstone."""
    group = layout.index_group(key)
    it = db.raw_iterator()
    try:
        it.seek(layout.index_seek(group, compact_rev))
        newest = True
        while it.valid() and it.key().startswith(group):
            tombstone = it.value() == layout.TOMBSTONE
            if not newest or tombstone:
                _, _, rev = layout.split_index_key(it.key())
                wb.delete(it.key())
                wb.delete(layout.history_key(rev))
            newest = False
            it.next()
    finally:
        it.close()
