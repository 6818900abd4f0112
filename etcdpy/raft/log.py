"""RaftLog: the raft log as one sequence, stitched from storage and the unstable tail."""

from __future__ import annotations

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft.errors import ErrCompacted, ErrUnavailable, StorageError
from etcdpy.raft.log_unstable import Unstable
from etcdpy.raft.storage import NO_LIMIT, Storage, limit_size


class RaftLog:
    """RaftLog is the log: entries in storage, followed by the unstable ones.

    Its indexes keep applied <= applying <= committed <= last_index(); every
    method that moves one of them asserts it.
    """

    __slots__ = ("applied", "applying", "committed", "max_next_committed_size", "storage", "unstable")

    def __init__(self, storage: Storage, max_next_committed_size: int = NO_LIMIT) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        # committed is the highest index known to be durable on a quorum.
        self.committed = first - 1
        # applied is the highest index the application has applied.
        self.applied = first - 1
        # applying is the highest index handed to the application (in a Ready) for
        # applying; above applied while that Ready is not yet advanced.
        self.applying = first - 1
        self.max_next_committed_size = max_next_committed_size

    def __str__(self) -> str:
        return (
            f"committed={self.committed}, applied={self.applied}, applying={self.applying}, "
            f"unstable.offset={self.unstable.offset}, len(unstable.entries)={len(self.unstable.entries)}"
        )

    # -- indexes and terms --

    def first_index(self) -> int:
        """First_index is the first index whose entry is available."""
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        """Last_index: the unstable tail's last index (or its snapshot's), else storage's."""
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def last_term(self) -> int:
        """Last_term is the term of the last entry."""
        return self.term(self.last_index())

    def term(self, i: int) -> int:
        """Term looks i up in the unstable tail, then storage; ErrCompacted / ErrUnavailable out of range."""
        t = self.unstable.maybe_term(i)
        if t is not None:
            return t
        # The dummy entry before first_index() still has a known term (the snapshot's).
        if i < self.first_index() - 1:
            raise ErrCompacted()
        if i > self.last_index():
            raise ErrUnavailable()
        return self.storage.term(i)

    def term_or_zero(self, i: int) -> int:
        """Term_or_zero is term(i), or 0 when entry i is compacted or not there."""
        try:
            return self.term(i)
        except StorageError:
            return 0

    def match_term(self, i: int, t: int) -> bool:
        """Match_term says whether entry i exists with term t."""
        return self.term_or_zero(i) == t

    def is_up_to_date(self, lasti: int, term: int) -> bool:
        """Is_up_to_date says whether a log ending at (term, lasti) is at least as current as ours."""
        our_term = self.last_term()
        return term > our_term or (term == our_term and lasti >= self.last_index())

    # -- appending --

    def maybe_append(self, index: int, log_term: int, committed: int, ents: list[pb.Entry]) -> int | None:
        """Maybe_append appends ents after (index, log_term) if our log matches there.

        Returns the index of the last new entry, or None when the logs diverge at index.
        """
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(ents)
        conflict = self.find_conflict(ents)
        if conflict:
            if conflict <= self.committed:
                raise AssertionError(
                    f"entry {conflict} conflicts with committed entry [committed({self.committed})]"
                )
            self.append(ents[conflict - (index + 1) :])
        self.commit_to(min(committed, last_new))
        return last_new

    def append(self, ents: list[pb.Entry]) -> int:
        """Append adds ents to the unstable tail (truncating a conflicting suffix); returns last_index."""
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            raise AssertionError(f"after({after}) is out of range [committed({self.committed})]")
        self.unstable.truncate_and_append(ents)
        last = self.last_index()
        assert self.committed <= last, f"append left committed {self.committed} past last {last}"
        return last

    def find_conflict(self, ents: list[pb.Entry]) -> int:
        """Find_conflict is the index of the first entry of ents we lack or hold with another term, else 0."""
        for e in ents:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Find_conflict_by_term finds the last index <= index whose term is <= term.

        Returns (index, its term); the term is 0 when unknown (compacted). Used to
        skip whole terms when a follower's log diverges from the leader's.
        """
        while index > 0:
            try:
                our_term = self.term(index)
            except StorageError:
                return index, 0
            if our_term <= term:
                return index, our_term
            index -= 1
        return 0, 0

    # -- commit / apply / stable --

    def commit_to(self, to_commit: int) -> None:
        """Commit_to raises the commit index (it never decreases)."""
        if self.committed < to_commit:
            if self.last_index() < to_commit:
                raise AssertionError(
                    f"to_commit({to_commit}) is out of range [last_index({self.last_index()})]"
                )
            self.committed = to_commit
        assert self.applying <= self.committed, self

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Maybe_commit commits up to max_index if that entry is of the given (current) term."""
        if max_index > self.committed and self.term_or_zero(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def applied_to(self, i: int) -> None:
        """Applied_to records that the application applied everything up to i."""
        if i == 0:
            return
        if self.committed < i or i < self.applied:
            raise AssertionError(
                f"applied({i}) is out of range [prev_applied({self.applied}), committed({self.committed})]"
            )
        self.applied = i
        if self.applying < i:
            self.applying = i
        assert self.applied <= self.applying <= self.committed, self

    def accept_applying(self, i: int) -> None:
        """Accept_applying records that entries up to i were handed to the application."""
        if i > self.committed:
            raise AssertionError(f"applying({i}) is out of range [committed({self.committed})]")
        if i > self.applying:
            self.applying = i
        assert self.applied <= self.applying <= self.committed, self

    def is_applying(self) -> bool:
        """Is_applying says whether committed entries were handed out but not yet reported applied."""
        return self.applying > self.applied

    def stable_to(self, i: int, t: int) -> None:
        """Stable_to records that storage holds entries up to i (of term t)."""
        self.unstable.stable_to(i, t)

    def stable_snap_to(self, i: int) -> None:
        """Stable_snap_to records that storage holds the snapshot at i."""
        self.unstable.stable_snap_to(i)

    def restore(self, snap: pb.Snapshot) -> None:
        """Restore resets the log to a snapshot from the leader."""
        self.committed = snap.metadata.index
        self.unstable.restore(snap)
        assert self.applying <= self.committed == self.last_index(), self

    # -- reading --

    def unstable_entries(self) -> list[pb.Entry]:
        """Unstable_entries are the entries to persist."""
        return list(self.unstable.entries)

    def has_pending_snapshot(self) -> bool:
        """Has_pending_snapshot says whether a snapshot awaits persisting."""
        return self.unstable.snapshot is not None

    def _next_committed_lo(self) -> int:
        return max(self.applied + 1, self.first_index())

    def has_next_committed_ents(self) -> bool:
        """Has_next_committed_ents says whether committed entries await application."""
        return self.committed + 1 > self._next_committed_lo()

    def next_committed_ents(self) -> list[pb.Entry]:
        """Next_committed_ents are committed, unapplied entries (size-limited, at least one)."""
        lo = self._next_committed_lo()
        if self.committed + 1 > lo:
            return self.slice(lo, self.committed + 1, self.max_next_committed_size)
        return []

    def snapshot(self) -> pb.Snapshot:
        """Snapshot is the pending snapshot, else the one in storage."""
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def entries(self, i: int, max_size: int) -> list[pb.Entry]:
        """Entries returns entries from i to the end, limited to max_size bytes."""
        last = self.last_index()
        if i > last:
            return []
        return self.slice(i, last + 1, max_size)

    def all_entries(self) -> list[pb.Entry]:
        """All_entries returns every available entry (retrying if compaction races)."""
        while True:
            try:
                return self.entries(self.first_index(), NO_LIMIT)
            except ErrCompacted:
                continue

    def slice(self, lo: int, hi: int, max_size: int) -> list[pb.Entry]:
        """Slice: entries [lo, hi), the stored part then the unstable part, cut to max_size bytes (>= 1)."""
        if lo > hi:
            raise AssertionError(f"invalid slice {lo} > {hi}")
        if lo < self.first_index():
            raise ErrCompacted()
        if hi > self.last_index() + 1:
            raise AssertionError(f"slice[{lo},{hi}) out of bound [{self.first_index()},{self.last_index()}]")
        if lo == hi:
            return []
        offset = self.unstable.offset
        ents: list[pb.Entry] = []
        if lo < offset:
            stored = self.storage.entries(lo, min(hi, offset), max_size)
            # Storage stopped early because of the size limit: do not add unstable ones.
            if len(stored) < min(hi, offset) - lo:
                return stored
            ents = stored
        if hi > offset:
            unstable = self.unstable.slice(max(lo, offset), hi)
            ents = ents + unstable if ents else unstable
        return limit_size(ents, max_size)
