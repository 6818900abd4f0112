"""RaftLogStorage: raft's Storage over the member's LevelDB, with the write side the Ready loop uses.

Layout (prefixes from `schema`)::

    w + index (8 bytes, big-endian)  ->  term (8) | type (1) | crc32 (4) | data
    s + b"hardstate"                 ->  term (8) | vote (8) | commit (8)
    s + b"snapshot"                  ->  raftpb.SnapshotMetadata (index, term, conf state)
    s + b"compacted"                 ->  index (8) | term (8) of the last entry dropped

The raft snapshot holds no data here: the state machine IS the MVCC keyspaces of
the same database, so a snapshot is only the point (index, term, configuration)
below which the log may be dropped.  A snapshot sent to a peer carries a
consistent LevelDB snapshot of the state keyspaces (storage/snapshot.py encodes
it, consensus/transport.py streams it).

`RaftLogStorage.prepare` turns one Ready's snapshot, entries and hard state into ONE
LevelDB write batch; `RaftLogStorage.write` writes it (synced unless --unsafe-no-fsync)
on a worker thread and then updates the in-memory view raft reads.  Entries
between the snapshot and the last index are mirrored in memory, so raft's reads
(MsgApp to followers, term lookups) never touch the disk.

Invariants: stored indexes are contiguous, ``first_index() .. last_index()``;
``first_index() == snapshot index + 1`` after the log was compacted or a snapshot
installed (before that, the log may start later than 1 only after compaction).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft import ErrSnapOutOfDate
from etcdpy.raft.storage import EntryWindow
from etcdpy.server.storage import schema
from etcdpy.server.storage.backend import Backend, BackendCorruptError, recovery_advice

_ENTRY_HEAD = struct.Struct(">QBI")  # term, type, crc32
_INDEX = struct.Struct(">Q")
_HARD_STATE = struct.Struct(">QQQ")
_CRC_HEAD = struct.Struct(">QQB")  # index, term, type: the part of the checksum before data
HARD_STATE_KEY = schema.RAFT_STATE + b"hardstate"
SNAPSHOT_KEY = schema.RAFT_STATE + b"snapshot"
COMPACTED_KEY = schema.RAFT_STATE + b"compacted"  # index and term of the last dropped entry
_POINT = struct.Struct(">QQ")
_ENTRY_TYPES = frozenset(pb.EntryType.values())


class RaftLogCorruptError(BackendCorruptError):
    """The raft log is damaged somewhere other than its tail; the data dir needs repair."""


def entry_key(index: int) -> bytes:
    return schema.WAL + _INDEX.pack(index)


def encode_entry(entry: pb.Entry) -> bytes:
    crc = zlib.crc32(entry.data, zlib.crc32(_CRC_HEAD.pack(entry.index, entry.term, entry.type)))
    return _ENTRY_HEAD.pack(entry.term, entry.type, crc) + entry.data


def decode_entry(index: int, value: bytes) -> pb.Entry | None:
    """The entry stored at `index`, or None if the value fails its checksum."""
    if len(value) < _ENTRY_HEAD.size:
        return None
    term, kind, crc = _ENTRY_HEAD.unpack_from(value)
    data = value[_ENTRY_HEAD.size :]
    if kind not in _ENTRY_TYPES:
        return None
    if zlib.crc32(data, zlib.crc32(_CRC_HEAD.pack(index, term, kind))) != crc:
        return None
    return pb.Entry(index=index, term=term, type=kind, data=data)


@dataclass(frozen=True, slots=True)
class PreparedWrite:
    """One Ready's writes encoded into a LevelDB write batch, ready for `RaftLogStorage.write`."""

    batch: Any  # plyvel.WriteBatch
    snapshot: pb.SnapshotMetadata | None
    entries: tuple[pb.Entry, ...]
    hard_state: pb.HardState | None
    compact_to: int  # entries <= this are dropped (0: none)
    synced: bool = True  # the write waits for an fsync (a commit index alone does not)


class RaftLogStorage(EntryWindow):
    """The durable raft log and raft's `Storage` view of it; open it with `RaftLogStorage.open`.

    Raft reads through the Storage methods on the event loop; `write` runs on one
    worker thread at a time and swaps the in-memory view only after the batch is durable.
    """

    def __init__(self, backend: Backend, *, sync: bool = True) -> None:
        super().__init__()
        self.backend = backend
        self.sync = sync  # False only with --unsafe-no-fsync
        self.hard_state = pb.HardState()
        self.snapshot_meta = pb.SnapshotMetadata()
        self.dropped_tail = 0  # entries discarded as a torn tail when opened

    @classmethod
    def open(cls, backend: Backend, *, sync: bool = True) -> RaftLogStorage:
        """Load the hard state, snapshot point and every stored entry, checking each."""
        log = cls(backend, sync=sync)
        raw = backend.get(HARD_STATE_KEY)
        if raw is not None:
            if len(raw) != _HARD_STATE.size:
                damaged = f"data dir {backend.data_dir}: raft hard state is damaged; "
                raise RaftLogCorruptError(damaged + recovery_advice(backend.data_dir))
            term, vote, commit = _HARD_STATE.unpack(raw)
            log.hard_state = pb.HardState(term=term, vote=vote, commit=commit)
        raw = backend.get(SNAPSHOT_KEY)
        if raw is not None:
            log.snapshot_meta = pb.SnapshotMetadata.FromString(raw)
        log._scan()
        return log

    def _scan(self) -> None:
        ents: list[pb.Entry] = []
        bad_index: int | None = None
        for key, value in self.backend.db.iterator(prefix=schema.WAL):
            index = _INDEX.unpack_from(key, len(schema.WAL))[0]
            if bad_index is not None:
                raise RaftLogCorruptError(
                    f"data dir {self.backend.data_dir}: raft log entry {bad_index} is damaged "
                    f"and later entries exist; " + recovery_advice(self.backend.data_dir)
                )
            if ents and index != ents[-1].index + 1:
                raise RaftLogCorruptError(
                    f"data dir {self.backend.data_dir}: raft log has a gap before entry {index}; "
                    + recovery_advice(self.backend.data_dir)
                )
            entry = decode_entry(index, value)
            if entry is None:
                bad_index = index
                continue
            ents.append(entry)
        if bad_index is not None:
            # A torn tail: the write carrying it never completed, so it was never acknowledged.
            self.backend.db.delete(entry_key(bad_index), sync=True)
            self.dropped_tail = 1
        # The anchor before the first entry: the last one dropped (compaction or an installed snapshot).
        raw = self.backend.get(COMPACTED_KEY)
        index, term = _POINT.unpack(raw) if raw is not None else (0, 0)
        if ents and ents[0].index != index + 1:
            raise RaftLogCorruptError(
                f"data dir {self.backend.data_dir}: raft log starts at {ents[0].index}, "
                f"but entries up to {index} only were dropped; " + recovery_advice(self.backend.data_dir)
            )
        self._ents = [pb.Entry(index=index, term=term), *ents]

    # ---- raft's Storage protocol (read-only, event loop) ----

    def initial_state(self) -> tuple[pb.HardState, pb.ConfState]:
        return self.hard_state, self.snapshot_meta.conf_state

    def snapshot(self) -> pb.Snapshot:
        return pb.Snapshot(metadata=self.snapshot_meta)

    # ---- the write side ----

    def prepare(
        self,
        *,
        entries: tuple[pb.Entry, ...] = (),
        hard_state: pb.HardState | None = None,
        snapshot: pb.SnapshotMetadata | None = None,
        compact_to: int = 0,
        sync: bool = True,
    ) -> PreparedWrite:
        """Encode one Ready's writes (and an optional compaction) into one batch; `write` writes it.

        An installed snapshot drops the whole log; appended entries replace any
        stored suffix from their first index on (a new leader overwrote it).  `sync` False
        skips the fsync (a commit index alone may be lost: raft learns it again).
        """
        batch = self.backend.db.write_batch(sync=self.sync and sync)
        if snapshot is not None:
            if snapshot.index <= self.snapshot_meta.index:
                raise ErrSnapOutOfDate()
            batch.put(SNAPSHOT_KEY, snapshot.SerializeToString())
            batch.put(COMPACTED_KEY, _POINT.pack(snapshot.index, snapshot.term))
            for index in range(self.first_index(), self.last_index() + 1):
                batch.delete(entry_key(index))
        if entries:
            last_stored = self.last_index() if snapshot is None else snapshot.index
            for index in range(entries[0].index, last_stored + 1):
                batch.delete(entry_key(index))
            for entry in entries:
                batch.put(entry_key(entry.index), encode_entry(entry))
        if hard_state is not None:
            batch.put(HARD_STATE_KEY, _HARD_STATE.pack(hard_state.term, hard_state.vote, hard_state.commit))
        if compact_to:
            upto = min(compact_to, self.last_index())
            if upto >= self.first_index():
                for index in range(self.first_index(), upto + 1):
                    batch.delete(entry_key(index))
                batch.put(COMPACTED_KEY, _POINT.pack(upto, self.term(upto)))
        return PreparedWrite(batch, snapshot, tuple(entries), hard_state, compact_to, self.sync and sync)

    def write(self, prepared: PreparedWrite) -> None:
        """Write a prepared batch atomically (blocking: waits for the fsync), then update the view."""
        prepared.batch.write()  # plyvel releases the GIL for the write and fsync
        self.apply_prepared(prepared)

    def apply_prepared(self, prepared: PreparedWrite) -> None:
        """Update the in-memory view to what `prepared` wrote."""
        if prepared.snapshot is not None:
            self.snapshot_meta = prepared.snapshot
            self._ents = [pb.Entry(index=prepared.snapshot.index, term=prepared.snapshot.term)]
        if prepared.entries:
            first = prepared.entries[0].index
            offset = self._ents[0].index
            if first <= offset:
                raise RaftLogCorruptError(f"append at {first} is at or below the log's start {offset}")
            if first - offset > len(self._ents):
                raise RaftLogCorruptError(f"append at {first} leaves a gap after {self.last_index()}")
            del self._ents[first - offset :]
            self._ents.extend(prepared.entries)
        if prepared.hard_state is not None:
            self.hard_state = prepared.hard_state
        if prepared.compact_to:
            self._compact_view(prepared.compact_to)

    def _compact_view(self, compact_to: int) -> None:
        offset = self._ents[0].index
        upto = min(compact_to, self.last_index())
        if upto <= offset:
            return
        i = upto - offset
        self._ents = [pb.Entry(index=self._ents[i].index, term=self._ents[i].term), *self._ents[i + 1 :]]

    def create_snapshot(self, index: int, conf_state: pb.ConfState) -> pb.SnapshotMetadata:
        """Record `index` (applied, with the configuration then) as the snapshot point; synced."""
        if index <= self.snapshot_meta.index:
            raise ErrSnapOutOfDate()
        meta = pb.SnapshotMetadata(index=index, term=self.term(index))
        meta.conf_state.CopyFrom(conf_state)
        self.backend.db.put(SNAPSHOT_KEY, meta.SerializeToString(), sync=self.sync)
        self.snapshot_meta = meta
        return meta
