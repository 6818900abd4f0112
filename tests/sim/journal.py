"""A real LevelDB backend whose unsynced write batches a simulated power loss can take back.

The server writes apply batches with sync=False and its raft log with
sync=True, into the same LevelDB: a synced write makes every earlier batch
durable (LevelDB's log is sequential), and a power loss can lose any suffix of
the batches written since.  `JournaledBackend` keeps, for each unsynced batch,
the values its keys had before it (an undo image); `lose_unsynced(keep)` puts
them back for all but the first `keep` batches, which leaves the database as a
machine that lost power would find it.  The database is then closed and opened
again by the restart, as the real server's is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from etcdpy.server.storage.backend import Backend

Undo = dict[bytes, bytes | None]  # key -> its value before the batch (None: absent)


class _RecordingBatch:
    """A plyvel write batch that notes each key's old value before the batch first touches it."""

    def __init__(self, db: Any, wb: Any, undo: Undo) -> None:
        self._db = db
        self._wb = wb
        self._undo = undo

    def _remember(self, key: bytes) -> None:
        if key not in self._undo:
            self._undo[key] = self._db.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._remember(key)
        self._wb.put(key, value)

    def delete(self, key: bytes) -> None:
        self._remember(key)
        self._wb.delete(key)


class JournaledBackend(Backend):
    """JournaledBackend is the server's Backend with an undo journal of its unsynced batches."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        super().__init__(data_dir)
        self.unsynced: list[Undo] = []  # undo images of the batches not yet durable, oldest first

    @contextmanager
    def batch(self, *, sync: bool) -> Iterator[Any]:
        undo: Undo = {}
        with self.db.write_batch(sync=sync, transaction=True) as wb:
            yield _RecordingBatch(self.db, wb, undo)
        if sync:
            self.unsynced.clear()  # this fsync carried every earlier batch to the disk too
        elif undo:
            self.unsynced.append(undo)

    def synced(self) -> None:
        """Synced records an fsync of the database (the raft log's, in the real server)."""
        self.unsynced.clear()

    def lose_unsynced(self, keep: int) -> int:
        """Lose_unsynced undoes every unsynced batch but the first `keep`; returns how many it undid."""
        lost = self.unsynced[keep:]
        with self.db.write_batch(sync=True) as wb:
            for undo in reversed(lost):
                for key, value in undo.items():
                    if value is None:
                        wb.delete(key)
                    else:
                        wb.put(key, value)
        self.unsynced.clear()
        return len(lost)
