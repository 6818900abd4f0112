"""A real LevelDB backend whose unsynced writes a simulated power loss can take back.

The server writes apply batches with sync=False, a snapshot install's state
batches with sync=False after a synced marker, and its raft log with sync=True,
all into the same LevelDB: a synced write makes every earlier one durable
(LevelDB's log is sequential), and a power loss can lose any suffix of the
writes made since.  `JournaledBackend` puts a journal between the server's code
and the database (`backend.db`), so every write is seen, whichever way it is
made (`Backend.batch`, a raw ``db.write_batch()`` written and cleared in a loop
as `snapshot.replace_state` does, or a single ``db.put``): for each unsynced
write it keeps the values its keys had before it (an undo image).
`lose_unsynced(keep)` puts them back for all but the first `keep` writes, which
leaves the database as a machine that lost power would find it.  The database
is then closed and opened again by the restart, as the real server's is.
"""

from __future__ import annotations

import os
from typing import Any

from etcdpy.server.storage.backend import Backend

Undo = dict[bytes, bytes | None]  # key -> its value before the write (None: absent)


class PowerLoss(Exception):
    """PowerLoss: the simulated machine loses power now (a test hook raises it in the middle of writes)."""


class _JournaledDB:
    """The plyvel DB with its writes journaled; reads and everything else go straight to it."""

    def __init__(self, db: Any) -> None:
        self.raw = db
        self.unsynced: list[Undo] = []  # undo images of the writes not yet durable, oldest first
        # The hot read paths, bound once (__getattr__ would look them up on every call).
        self.get = db.get
        self.iterator = db.iterator
        self.raw_iterator = db.raw_iterator
        self.snapshot = db.snapshot

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)

    def write_batch(self, *, sync: bool = False, transaction: bool = False) -> _JournaledBatch:
        return _JournaledBatch(self, sync, transaction)

    def put(self, key: bytes, value: bytes, *, sync: bool = False) -> None:
        batch = self.write_batch(sync=sync)
        batch.put(key, value)
        batch.write()

    def delete(self, key: bytes, *, sync: bool = False) -> None:
        batch = self.write_batch(sync=sync)
        batch.delete(key)
        batch.write()

    def write(self, wb: Any, keys: dict[bytes, None], sync: bool) -> None:
        """Write a batch touching `keys`, journaling it unless it is synced (then all is durable)."""
        undo: Undo = {key: self.raw.get(key) for key in keys}
        wb.write()
        if sync:
            self.unsynced.clear()  # this fsync carried every earlier write to the disk too
        elif undo:
            self.unsynced.append(undo)


class _JournaledBatch:
    """A plyvel write batch (same calls: put, delete, write, clear, `with`) whose writes are journaled."""

    def __init__(self, db: _JournaledDB, sync: bool, transaction: bool) -> None:
        self._db = db
        self._wb = db.raw.write_batch(sync=sync)
        self._sync = sync
        self._transaction = transaction  # as plyvel: leaving `with` by an exception writes nothing
        self._keys: dict[bytes, None] = {}  # the keys the pending operations touch (an ordered set)

    def put(self, key: bytes, value: bytes) -> None:
        self._keys[key] = None
        self._wb.put(key, value)

    def delete(self, key: bytes) -> None:
        self._keys[key] = None
        self._wb.delete(key)

    def clear(self) -> None:
        self._keys.clear()
        self._wb.clear()

    def write(self) -> None:
        self._db.write(self._wb, self._keys, self._sync)

    def __enter__(self) -> _JournaledBatch:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None or not self._transaction:
            self.write()


class JournaledBackend(Backend):
    """JournaledBackend is the server's Backend with an undo journal of its unsynced writes."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        super().__init__(data_dir)
        self._journal = _JournaledDB(self.db)
        self.db = self._journal

    @property
    def unsynced(self) -> list[Undo]:
        """Unsynced are the undo images of the writes not yet durable, oldest first."""
        return self._journal.unsynced

    def synced(self) -> None:
        """Synced records an fsync of the database (the raft log's, in the real server)."""
        self._journal.unsynced.clear()

    def lose_unsynced(self, keep: int) -> int:
        """Lose_unsynced undoes every unsynced write but the first `keep`; returns how many it undid."""
        journal = self._journal
        lost = journal.unsynced[keep:]
        with journal.raw.write_batch(sync=True) as wb:
            for undo in reversed(lost):
                for key, value in undo.items():
                    if value is None:
                        wb.delete(key)
                    else:
                        wb.put(key, value)
        journal.unsynced.clear()
        return len(lost)
