"""Unstable: log entries and a snapshot that raft holds but storage has not persisted yet."""

from __future__ import annotations

from etcdpy.api.raftpb import raft_pb2 as pb


class Unstable:
    """Unstable holds entries (and possibly a snapshot) not yet written to storage.

    entries[i] has raft log index offset + i (offset is the index of the next
    append when there are none); the methods that change them assert it. When a
    snapshot is pending, it precedes the entries: offset == snapshot.metadata.index + 1.
    """

    __slots__ = ("entries", "offset", "snapshot")

    def __init__(self, offset: int) -> None:
        self.snapshot: pb.Snapshot | None = None
        self.entries: list[pb.Entry] = []
        self.offset = offset

    def maybe_first_index(self) -> int | None:
        """Maybe_first_index is the first index known here: only with a pending snapshot."""
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        """Maybe_last_index is the last index of the entries, else of the snapshot, else None."""
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, i: int) -> int | None:
        """Maybe_term: entry i's term if i is the pending snapshot's index or an entry's, else None."""
        if i < self.offset:
            if self.snapshot is not None and self.snapshot.metadata.index == i:
                return self.snapshot.metadata.term
            return None
        last = self.maybe_last_index()
        if last is None or i > last:
            return None
        return self.entries[i - self.offset].term

    def stable_to(self, i: int, t: int) -> None:
        """Stable_to drops entries up to i once storage holds them (if i still has term t)."""
        if i < self.offset:
            return
        gt = self.maybe_term(i)
        # An entry replaced by a newer leader since the Ready was made stays unstable.
        if gt is not None and gt == t:
            del self.entries[: i + 1 - self.offset]
            self.offset = i + 1
            assert not self.entries or self.entries[0].index == self.offset, (self.offset, self.entries[0])

    def stable_snap_to(self, i: int) -> None:
        """Stable_snap_to forgets the pending snapshot once storage holds it."""
        if self.snapshot is not None and self.snapshot.metadata.index == i:
            self.snapshot = None

    def restore(self, snap: pb.Snapshot) -> None:
        """Restore replaces everything with a snapshot received from the leader."""
        self.offset = snap.metadata.index + 1
        self.entries = []
        self.snapshot = snap

    def truncate_and_append(self, ents: list[pb.Entry]) -> None:
        """Truncate_and_append appends ents, first dropping any entries at or after ents[0]."""
        after = ents[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(ents)
        elif after <= self.offset:
            # The log is replaced from before what we hold: the new entries restart it.
            self.offset = after
            self.entries = list(ents)
        else:
            del self.entries[after - self.offset :]
            self.entries.extend(ents)
        assert self.entries[0].index == self.offset, (self.offset, self.entries[0])

    def slice(self, lo: int, hi: int) -> list[pb.Entry]:
        """Slice returns entries in [lo, hi), which must lie within this part of the log."""
        upper = self.offset + len(self.entries)
        if lo > hi or lo < self.offset or hi > upper:
            raise IndexError(f"unstable.slice[{lo},{hi}) out of bound [{self.offset},{upper}]")
        return self.entries[lo - self.offset : hi - self.offset]
