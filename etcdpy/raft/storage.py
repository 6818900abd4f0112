"""Storage: the log, hard state and snapshot raft reads; MemoryStorage implements it.

Raft only reads from storage. The application writes to it (entries and hard state
from each Ready, snapshots it installs or creates) before calling advance().
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft.errors import ErrCompacted, ErrSnapOutOfDate, ErrUnavailable

NO_LIMIT = (1 << 64) - 1
"""NO_LIMIT as a max_size means 'no size limit'."""


# An upper bound on an entry's encoding beyond its payload: tags, varint term,
# index and type, and the payload's length prefix.
_MAX_ENTRY_OVERHEAD = 32


def limit_size(entries: list[pb.Entry], max_size: int) -> list[pb.Entry]:
    """Limit_size returns the longest prefix of entries within max_size bytes, but at least one entry.

    Its cost follows the prefix it returns, not the list it is given (a restarted member's log offers
    thousands of committed entries at a time): it counts payloads plus the largest overhead an entry
    can have, which is cheap, until that bound passes max_size; from there it counts exact encodings.
    """
    if max_size >= NO_LIMIT or len(entries) <= 1:
        return entries
    bound = 0
    fits = 0  # entries[:fits] fit: their exact size is at most the bound
    for entry in entries:
        bound += len(entry.data) + _MAX_ENTRY_OVERHEAD
        if bound > max_size:
            break
        fits += 1
    else:
        return entries  # the common case: everything fits even counting the largest overhead
    size = sum(e.ByteSize() for e in entries[:fits])
    for limit in range(fits, len(entries)):
        size += entries[limit].ByteSize()
        if size > max_size:
            return entries[: max(limit, 1)]
    return entries


class Storage(Protocol):
    """Storage is the read-only view of persisted raft state that raft consults.

    Raft never writes through this interface. Errors: ErrCompacted for indexes
    below first_index()-1 (term) or first_index() (entries), ErrUnavailable for
    indexes past last_index(), ErrSnapshotTemporarilyUnavailable from snapshot()
    while one is being prepared (raft then retries later).
    """

    def initial_state(self) -> tuple[pb.HardState, pb.ConfState]:
        """Initial_state: the hard state to resume with, and the configuration as of the snapshot."""
        ...

    def entries(self, lo: int, hi: int, max_size: int) -> list[pb.Entry]:
        """Entries: the stored entries lo..hi-1, cut to max_size bytes of encoding but never to none."""
        ...

    def term(self, i: int) -> int:
        """Term of entry i, for i in [first_index()-1, last_index()] (the first is the snapshot's)."""
        ...

    def first_index(self) -> int:
        """First_index: the oldest index entries() still returns (the one after the snapshot's)."""
        ...

    def last_index(self) -> int:
        """Last_index: the index of the newest stored entry (the snapshot's when none follows it)."""
        ...

    def snapshot(self) -> pb.Snapshot:
        """Snapshot: the newest snapshot held (ErrSnapshotTemporarilyUnavailable while one is made)."""
        ...


class EntryWindow:
    """EntryWindow is an in-memory run of log entries after a compaction point, read as raft's Storage reads.

    MemoryStorage and the server's durable raft log both keep one; each decides how
    the window changes (appends, compaction, snapshots) and what a bad change means.
    """

    def __init__(self) -> None:
        # _ents[0] is a dummy entry carrying the index and term of the last entry
        # dropped (by compaction or a snapshot), so _ents is never empty; it is
        # replaced only whole, by a new list that starts with a new dummy.
        self._ents: list[pb.Entry] = [pb.Entry()]

    def entries(self, lo: int, hi: int, max_size: int) -> list[pb.Entry]:
        """Entries returns entries in [lo, hi) limited to max_size bytes (at least one)."""
        offset = self._ents[0].index
        if lo <= offset:
            raise ErrCompacted()
        if hi > self.last_index() + 1:
            raise IndexError(f"entries' hi({hi}) is out of bound lastindex({self.last_index()})")
        if len(self._ents) == 1:
            raise ErrUnavailable()
        return limit_size(self._ents[lo - offset : hi - offset], max_size)

    def term(self, i: int) -> int:
        """Term of entry i: ErrCompacted below the dummy entry, ErrUnavailable past the last."""
        offset = self._ents[0].index
        if i < offset:
            raise ErrCompacted()
        if i - offset >= len(self._ents):
            raise ErrUnavailable()
        return self._ents[i - offset].term

    def last_index(self) -> int:
        """Last_index: the dummy entry's index plus the entries after it."""
        return self._ents[0].index + len(self._ents) - 1

    def first_index(self) -> int:
        """First_index is the index after the compaction point."""
        return self._ents[0].index + 1


class MemoryStorage(EntryWindow):
    """MemoryStorage keeps the log, hard state and snapshot in memory: the Storage raft's tests drive."""

    def __init__(self) -> None:
        super().__init__()
        self.hard_state = pb.HardState()
        self._snapshot = pb.Snapshot(metadata=pb.SnapshotMetadata())

    def initial_state(self) -> tuple[pb.HardState, pb.ConfState]:
        """Initial_state returns the hard state and the snapshot's configuration."""
        return self.hard_state, self._snapshot.metadata.conf_state

    def set_hard_state(self, hard_state: pb.HardState) -> None:
        """Set_hard_state keeps what initial_state() returns (the caller passes each Ready's hard_state)."""
        self.hard_state = hard_state

    def snapshot(self) -> pb.Snapshot:
        """Snapshot: the one last installed by apply_snapshot or made by create_snapshot."""
        return self._snapshot

    def apply_snapshot(self, snap: pb.Snapshot) -> None:
        """Apply_snapshot replaces the log with the snapshot (received from a leader)."""
        if snap.metadata.index <= self._snapshot.metadata.index:
            raise ErrSnapOutOfDate()
        self._snapshot = snap
        self._ents = [pb.Entry(term=snap.metadata.term, index=snap.metadata.index)]

    def create_snapshot(self, i: int, conf_state: pb.ConfState | None, data: bytes) -> pb.Snapshot:
        """Create_snapshot records a snapshot of the applied state up to index i.

        Log entries are kept; call compact() to discard those covered by the snapshot.
        """
        if i <= self._snapshot.metadata.index:
            raise ErrSnapOutOfDate()
        offset = self._ents[0].index
        if i > self.last_index():
            raise IndexError(f"snapshot {i} is out of bound lastindex({self.last_index()})")
        meta = pb.SnapshotMetadata(index=i, term=self._ents[i - offset].term)
        meta.conf_state.CopyFrom(conf_state if conf_state is not None else self._snapshot.metadata.conf_state)
        self._snapshot = pb.Snapshot(data=data, metadata=meta)
        return self._snapshot

    def compact(self, compact_index: int) -> None:
        """Compact drops entries up to compact_index, the last becoming the dummy; pass no unapplied index."""
        offset = self._ents[0].index
        if compact_index <= offset:
            raise ErrCompacted()
        if compact_index > self.last_index():
            raise IndexError(f"compact {compact_index} is out of bound lastindex({self.last_index()})")
        i = compact_index - offset
        dummy = pb.Entry(index=self._ents[i].index, term=self._ents[i].term)
        self._ents = [dummy, *self._ents[i + 1 :]]

    def append(self, entries: Sequence[pb.Entry]) -> None:
        """Append adds entries, replacing any conflicting suffix; entries must be contiguous."""
        if not entries:
            return
        first = self.first_index()
        last = entries[-1].index
        if last < first:
            return  # everything is already compacted
        ents = list(entries)
        if first > ents[0].index:
            ents = ents[first - ents[0].index :]
        offset = ents[0].index - self._ents[0].index
        if offset > len(self._ents):
            raise IndexError(f"missing log entry [last: {self.last_index()}, append at: {ents[0].index}]")
        assert offset >= 1, "an append never replaces the dummy entry"
        del self._ents[offset:]
        self._ents.extend(ents)
