"""WAL: the member's raft log and hard state, kept in the backend's LevelDB.

Layout (prefixes from `schema`)::

    w + index (8 bytes, big-endian)  ->  term (8) | type (1) | crc32 (4) | data
    s + b"hardstate"                 ->  term (8) | vote (8) | commit (8)

`WAL.save` (or `WAL.prepare` on the event loop, then `WAL.write` on a worker
thread) writes new entries, the hard state and the removal of old entries in ONE
LevelDB write batch with ``sync=True`` (False only under --unsafe-no-fsync):
after it returns the batch is on disk,
and a crash leaves either all of it or none of it (LevelDB discards a torn batch
when it replays its own log).  The crc32 covers index, term, type and data, so a
damaged or misplaced value is caught when the log is opened: damage to the newest
entry is treated as a torn tail and dropped (it was never acknowledged, since the
write that carried it did not complete); damage anywhere else is corruption.

Invariant: stored indexes are contiguous, ``first_index .. last_index``.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from etcdpy.server.storage import schema
from etcdpy.server.storage.backend import Backend, BackendError

_ENTRY_HEAD = struct.Struct(">QBI")  # term, type, crc32
_INDEX = struct.Struct(">Q")
_HARD_STATE = struct.Struct(">QQQ")
_CRC_HEAD = struct.Struct(">QQB")  # index, term, type: the part of the checksum before data
HARD_STATE_KEY = schema.RAFT_STATE + b"hardstate"


class WALCorruptError(BackendError):
    """The raft log is damaged somewhere other than its tail; the data dir needs repair."""


class EntryType(IntEnum):
    """What an entry's data holds (numbered as raftpb.EntryType)."""

    NORMAL = 0  # an InternalRaftRequest, or b"" for a leader's empty entry
    CONF_CHANGE = 1  # a serialized rpc_pb2.Member being added


@dataclass(frozen=True, slots=True)
class Entry:
    """One raft log entry."""

    index: int
    term: int
    type: EntryType
    data: bytes


@dataclass(frozen=True, slots=True)
class HardState:
    """Raft's persistent state: current term, vote in it, highest index known committed."""

    term: int = 0
    vote: int = 0
    commit: int = 0


def entry_key(index: int) -> bytes:
    return schema.WAL + _INDEX.pack(index)


def encode_entry(entry: Entry) -> bytes:
    crc = zlib.crc32(entry.data, zlib.crc32(_CRC_HEAD.pack(entry.index, entry.term, entry.type)))
    return _ENTRY_HEAD.pack(entry.term, entry.type, crc) + entry.data


def decode_entry(index: int, value: bytes) -> Entry | None:
    """The entry stored at `index`, or None if the value fails its checksum."""
    if len(value) < _ENTRY_HEAD.size:
        return None
    term, kind, crc = _ENTRY_HEAD.unpack_from(value)
    data = value[_ENTRY_HEAD.size :]
    if kind not in EntryType._value2member_map_:
        return None
    if zlib.crc32(data, zlib.crc32(_CRC_HEAD.pack(index, term, kind))) != crc:
        return None
    return Entry(index, term, EntryType(kind), data)


class WAL:
    """The durable raft log over a `Backend`; open it with `WAL.open`."""

    def __init__(self, backend: Backend, *, sync: bool = True) -> None:
        self.backend = backend
        self.sync = sync  # False only with --unsafe-no-fsync
        self.hard_state = HardState()
        self.first_index = 1  # invariant: first_index <= last_index + 1
        self.last_index = 0
        self.last_term = 0
        self.dropped_tail = 0  # entries discarded as a torn tail when opened

    @classmethod
    def open(cls, backend: Backend, *, sync: bool = True) -> WAL:
        """Load the hard state and check every stored entry (see the module docstring)."""
        wal = cls(backend, sync=sync)
        raw = backend.get(HARD_STATE_KEY)
        if raw is not None:
            if len(raw) != _HARD_STATE.size:
                raise WALCorruptError(f"data dir {backend.data_dir}: raft hard state is damaged")
            wal.hard_state = HardState(*_HARD_STATE.unpack(raw))
        wal._scan()
        return wal

    def _scan(self) -> None:
        expected: int | None = None
        bad_index: int | None = None
        for key, value in self.backend.db.iterator(prefix=schema.WAL):
            index = _INDEX.unpack_from(key, len(schema.WAL))[0]
            if bad_index is not None:
                raise WALCorruptError(
                    f"data dir {self.backend.data_dir}: raft log entry {bad_index} is damaged "
                    f"and later entries exist"
                )
            if expected is not None and index != expected:
                raise WALCorruptError(
                    f"data dir {self.backend.data_dir}: raft log has a gap: entry {expected} missing"
                )
            entry = decode_entry(index, value)
            if entry is None:
                bad_index = index
                continue
            if expected is None:
                self.first_index = index
            self.last_index, self.last_term = index, entry.term
            expected = index + 1
        if bad_index is not None:
            self.backend.db.delete(entry_key(bad_index), sync=True)
            self.dropped_tail = 1
            if expected is None:
                self.first_index = bad_index
                self.last_index = bad_index - 1

    def entries(self, lo: int, hi: int) -> list[Entry]:
        """Entries with lo <= index < hi (clipped to what is stored)."""
        out = []
        it = self.backend.db.iterator(start=entry_key(max(lo, self.first_index)), stop=entry_key(hi))
        for key, value in it:
            index = _INDEX.unpack_from(key, len(schema.WAL))[0]
            entry = decode_entry(index, value)
            if entry is None:
                raise WALCorruptError(f"data dir {self.backend.data_dir}: raft log entry {index} is damaged")
            out.append(entry)
        return out

    def term(self, index: int) -> int:
        """Term of the entry at `index` (0 if not stored)."""
        if index == self.last_index:
            return self.last_term
        raw = self.backend.get(entry_key(index))
        entry = decode_entry(index, raw) if raw is not None else None
        return entry.term if entry is not None else 0

    def save(
        self,
        entries: list[Entry],
        hard_state: HardState,
        *,
        compact_through: int = 0,
        extra: Callable[[Any], None] | None = None,
    ) -> None:
        """Append `entries`, store `hard_state` and drop entries <= `compact_through`: one synced batch.

        `extra` may put more keys into the same batch (membership at bootstrap).
        Blocking: it waits for the fsync.
        """
        self.write(self.prepare(entries, hard_state, compact_through=compact_through, extra=extra))

    def prepare(
        self,
        entries: list[Entry],
        hard_state: HardState,
        *,
        compact_through: int = 0,
        extra: Callable[[Any], None] | None = None,
    ) -> PreparedSave:
        """Encode a `save` into a LevelDB write batch without writing it (the Python half of a save).

        The server prepares on its event loop and runs `write` on a worker thread, so the
        worker barely needs the GIL.  Prepare the next save only after the previous write.
        """
        if entries and entries[0].index != self.last_index + 1:
            raise ValueError(f"append at {entries[0].index} does not follow last index {self.last_index}")
        drop_to = min(compact_through, self.last_index + len(entries))
        batch = self.backend.db.write_batch(sync=self.sync)
        for entry in entries:
            batch.put(entry_key(entry.index), encode_entry(entry))
        batch.put(HARD_STATE_KEY, _HARD_STATE.pack(hard_state.term, hard_state.vote, hard_state.commit))
        for index in range(self.first_index, drop_to + 1):
            batch.delete(entry_key(index))
        if extra is not None:
            extra(batch)
        last = entries[-1] if entries else None
        return PreparedSave(batch, last, drop_to, hard_state)

    def write(self, prepared: PreparedSave) -> None:
        """Write a prepared batch atomically (synced unless --unsafe-no-fsync) and advance the log."""
        prepared.batch.write()  # plyvel releases the GIL for the write and fsync
        if prepared.last is not None:
            self.last_index, self.last_term = prepared.last.index, prepared.last.term
        self.first_index = max(self.first_index, prepared.drop_to + 1)
        self.hard_state = prepared.hard_state


@dataclass(frozen=True, slots=True)
class PreparedSave:
    """A save encoded into a LevelDB write batch, ready for `WAL.write`."""

    batch: Any  # plyvel.WriteBatch
    last: Entry | None
    drop_to: int
    hard_state: HardState
