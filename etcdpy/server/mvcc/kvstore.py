"""KVStore: the MVCC key-value store on the member's LevelDB.

Memory holds only the current and compact revisions; everything else is read
from LevelDB (see `layout`), so opening is one meta read whatever the size.

Writes happen in batches (`begin` -> requests through `Batch`/`WriteTxn` ->
the caller writes the LevelDB batch -> `published`).  Reads from outside a
batch (`read`) use a LevelDB snapshot and take the revisions stored in it, so a
read never mixes two batches even if a batch is written from another thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from etcdpy.api import errors
from etcdpy.server.mvcc import compaction, hashing, layout
from etcdpy.server.mvcc.leases import LeaseLookup, NoLeases
from etcdpy.server.mvcc.reader import Reader
from etcdpy.server.mvcc.writer import Batch
from etcdpy.server.storage.backend import Backend


class KVStore:
    """KVStore opens the MVCC keyspaces of a backend; the applier is its only writer."""

    def __init__(self, backend: Backend, *, leases: LeaseLookup | None = None) -> None:
        self.backend = backend
        self.leases: LeaseLookup = leases if leases is not None else NoLeases()
        self._rev, self._compact_rev = _stored_revisions(backend.db)
        self._pinned: Any = None  # a LevelDB snapshot reads are served from, while the state is replaced

    def reload(self) -> None:
        """Re-read the revisions from meta (after the database content was replaced); ends a `pin`."""
        # The pinned snapshot is not closed: a reader on another thread may still hold it; it is
        # released with its last use.
        self._pinned = None
        self._rev, self._compact_rev = _stored_revisions(self.backend.db)

    @property
    def current_revision(self) -> int:
        """The revision of the last written batch (1 for an empty store)."""
        return self._rev

    @property
    def compact_revision(self) -> int:
        """The last scheduled compaction (-1 if never): reads below it fail."""
        return self._compact_rev

    # ---- reads ----

    @contextmanager
    def read(self) -> Iterator[Reader]:
        """A reader of the newest written state (the pinned one while pinned), on a snapshot."""
        pinned = self._pinned
        snapshot = pinned if pinned is not None else self.backend.db.snapshot()
        try:
            rev, compact_rev = _stored_revisions(snapshot)
            yield Reader(snapshot, None, rev, compact_rev)
        finally:
            if snapshot is not pinned:
                snapshot.close()

    def pin(self) -> None:
        """Serve reads from the state as it is now until `reload`, whatever is written meanwhile.

        For a raft snapshot's install, which replaces the state in many batches (thread-safe).
        """
        self._pinned = self.backend.db.snapshot()

    def leased_keys(self) -> Iterator[tuple[int, bytes]]:
        """(lease id, key) of every live key with a lease, for a lessor rebuilding its attachments."""
        with self.read() as reader:
            for kv in reader.range(b"\x00", b"", reader.rev):
                if kv.lease:
                    yield kv.lease, kv.key

    # ---- writes ----

    def begin(self, wb: Any) -> Batch:
        """Start a batch writing into the plyvel write batch ``wb``."""
        return Batch(self.backend.db, wb, self._rev, self._compact_rev, self.leases)

    def published(self, batch: Batch) -> None:
        """Adopt a batch's revisions once its write batch is on disk."""
        self._rev = batch.rev
        self._compact_rev = batch.compact_rev

    # ---- compaction ----

    @property
    def compaction_pending(self) -> bool:
        """Whether a scheduled compaction still has versions to delete physically."""
        scheduled, finished = compaction.compaction_state(self.backend.db)
        return finished < scheduled

    def compact_step(self, max_records: int = compaction.DEFAULT_STEP_RECORDS) -> bool:
        """Delete one bounded batch of compacted versions; True when no compaction is left to do."""
        return compaction.compact_step(self.backend.db, self.backend.batch, max_records)

    # ---- hashes ----

    def hash(self) -> int:
        """crc32 of every MVCC byte (differs between members while a compaction is unfinished)."""
        with self.read() as reader:
            return hashing.hash_all(reader.view)

    def hash_kv(self, revision: int) -> tuple[int, int, int]:
        """(hash, compact_revision, hash_revision) of the history visible at ``revision`` (0 = now).

        Equal on every member with the same history, whatever physical
        compaction has done.  ErrCompacted if 0 < revision <= compact revision,
        ErrFutureRev if revision is beyond the current one.
        """
        with self.read() as reader:
            if 0 < revision <= reader.compact_rev:
                raise errors.ErrCompacted()
            if revision > reader.rev:
                raise errors.ErrFutureRev()
            rev = revision if revision > 0 else reader.rev
            return hashing.hash_kv(reader.view, rev, reader.compact_rev), reader.compact_rev, rev


def _stored_revisions(view: Any) -> tuple[int, int]:
    rev = layout.decode_u64(view.get(layout.meta_key(layout.META_CURRENT_REV)), layout.FIRST_REVISION)
    scheduled, _ = compaction.compaction_state(view)
    return rev, scheduled
