"""Backend: the member's one LevelDB (plyvel) under ``<data-dir>/member/db``.

It owns opening (with clear errors for a data dir held by another process or a
foreign/corrupt one), the data-dir format marker, write batches and snapshots.
Raft log writes are synced (``sync=True``); apply batches are not, because the
raft log is the durability point and LevelDB's own log keeps batches ordered.

Damage (see `BackendCorruptError`): LevelDB opens with paranoid checks, so a
damaged record inside its write-ahead ``.log`` or its MANIFEST refuses to open.
A record cut short at the very end of the ``.log`` is dropped by LevelDB's own
recovery, as etcd's WAL repair drops a torn tail: that write never completed,
so it was never synced, so never acknowledged (a synced write is acknowledged
only after its fsync returned).  Table files (``.ldb``) are checked by
`Backend.verify`, which the server runs before serving: it reads every block
with its checksum (about a million records a second), because LevelDB
otherwise returns a damaged block's content without checking it.  A known
gap: LevelDB's background compaction, which may start as soon as the database
opens, does not check block checksums in this build, so a damaged table it
merges before `verify` reads it comes out rewritten with fresh checksums.  The
cross-member HashKV comparison is the net for that.

Defragmentation (`Backend.defragment`) is LevelDB's ``compact_range`` over the
whole key space: it merges every level, dropping what deletes and MVCC
compaction left behind, and writes fresh tables.  LevelDB serves reads and
writes while it runs (plyvel releases the GIL for it), so unlike bbolt's
rewrite of the whole file in etcd it blocks nothing; one runs at a time, and
closing waits for a running one (LevelDB must not be closed under it).

Two LevelDB facts shape it.  plyvel's ``compact_range()`` without bounds passes
empty keys, a range nothing overlaps: the bounds are given.  And a manual
compaction merges each level into the next one down, so the files of the
deepest level are only rewritten when a file above overlaps them; a memtable
flushed straight to the deepest level (what a small database does) would keep
every deleted and overwritten record.  So a second pass puts two fence keys
around the whole key space (below and above every keyspace prefix), whose table
overlaps every deepest file and drags them all into the merge, then deletes them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import plyvel

from etcdpy.server.storage import schema

# LevelDB tuned for a store that is rewritten constantly and read mostly from memory: a large
# memtable means fewer, larger flushes, and no snappy compression (most of LevelDB's background
# CPU under a write load, measured on a 3-member cluster; bbolt, etcd's store, compresses nothing).
LEVELDB_OPTIONS: dict[str, Any] = {"write_buffer_size": 64 << 20, "compression": None}

# Below and above every keyspace prefix of `schema` (one letter each): the bounds of a whole-space
# compaction, and the fence keys `defragment` writes and deletes again.
FENCE_LOW = b"\x00"
FENCE_HIGH = b"\xff"


class BackendError(Exception):
    """The data directory cannot be used; the message says why and what to do."""


class BackendInUseError(BackendError):
    """Another process (a running member) holds the data dir's LevelDB lock."""


class BackendCorruptError(BackendError):
    """The member's stored data is damaged: it must not serve, and the message says how to recover."""


def recovery_advice(data_dir: Path) -> str:
    """What an operator does with a member whose data dir is damaged (the end of every corruption message)."""
    return (
        "this member's data cannot be trusted. If the cluster has other healthy members: remove this "
        "member (`etcdpy member remove <id>`), wipe the data dir, add it back (`etcdpy member add`) and "
        "start it with --initial-cluster-state=existing; a single-member cluster must be restored from "
        f"a backup. Keep a copy of {data_dir} for analysis before wiping it."
    )


def _text(exc: Exception) -> str:
    """plyvel's message (it carries bytes) as text."""
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


class Backend:
    """One open LevelDB plus helpers for the keyspaces declared in `schema`."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir)
        # Held by a running defragment and by close: one compaction at a time, none under a close.
        self._compacting = threading.Lock()
        self.path = self.data_dir / "member" / "db"
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self.db: Any = plyvel.DB(
                str(self.path), create_if_missing=True, paranoid_checks=True, **LEVELDB_OPTIONS
            )
        except plyvel.IOError as exc:
            if "lock" in str(exc).lower():
                raise BackendInUseError(
                    f"data dir {self.data_dir} is in use by another running server (LevelDB lock held)"
                ) from exc
            raise BackendError(f"cannot open data dir {self.data_dir}: {exc}") from exc
        except plyvel.CorruptionError as exc:
            raise BackendCorruptError(
                f"data dir {self.data_dir} is corrupt: LevelDB in {self.path} cannot be opened "
                f"({_text(exc)}): its write-ahead .log or MANIFEST file is damaged; "
                + recovery_advice(self.data_dir)
            ) from exc
        self._check_format()

    def _check_format(self) -> None:
        key = schema.META + schema.META_FORMAT
        found = self.db.get(key)
        if found is None:
            if any(True for _ in self.db.iterator(include_value=False)):
                raise BackendError(
                    f"data dir {self.data_dir} holds a foreign LevelDB (no etcdpy format marker)"
                )
            self.db.put(key, schema.FORMAT_VERSION, sync=True)
        elif found != schema.FORMAT_VERSION:
            raise BackendError(
                f"data dir {self.data_dir} has format {found!r}, this etcdpy reads {schema.FORMAT_VERSION!r}"
            )

    def verify(self) -> int:
        """Read every record with block checksums checked; return the count or raise BackendCorruptError."""
        count = 0
        last: bytes | None = None
        try:
            for key in self.db.iterator(include_value=False, verify_checksums=True, fill_cache=False):
                count += 1
                last = key
        except plyvel.CorruptionError as exc:
            where = "at the first key" if last is None else f"after key {last!r}"
            raise BackendCorruptError(
                f"data dir {self.data_dir} is corrupt: a table file (.ldb) of the LevelDB in {self.path} "
                f"fails its checksum {where} ({_text(exc)}); " + recovery_advice(self.data_dir)
            ) from exc
        return count

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.db.get(key)
        return value

    @contextmanager
    def batch(self, *, sync: bool) -> Iterator[Any]:
        """Yield a write batch committed atomically on exit (synced if asked)."""
        with self.db.write_batch(sync=sync, transaction=True) as wb:
            yield wb

    def snapshot(self) -> Any:
        """A consistent read view; call ``.close()`` (or use as a context manager) when done."""
        return self.db.snapshot()

    def size_bytes(self) -> int:
        """Bytes the database occupies on disk."""
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())

    def defragment(self) -> None:
        """Compact the whole key space (blocking: call it on a worker thread); waits for one running.

        Reclaims the space of deleted keys and compacted history; reads and writes go on meanwhile.
        """
        with self._compacting:
            if self.db.closed:
                raise BackendError(f"data dir {self.data_dir} is closed")
            self.db.compact_range(start=FENCE_LOW, stop=FENCE_HIGH)  # every level above the deepest
            self.db.put(FENCE_LOW, b"")
            self.db.put(FENCE_HIGH, b"")
            self.db.compact_range(start=FENCE_LOW, stop=FENCE_HIGH)  # the fences drag the deepest in
            with self.db.write_batch() as wb:
                wb.delete(FENCE_LOW)
                wb.delete(FENCE_HIGH)

    def close(self) -> None:
        with self._compacting:
            if not self.db.closed:
                self.db.close()
