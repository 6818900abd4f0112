"""RaftLog and Unstable: appending, conflicts, commit, and the stable/unstable split."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft import MemoryStorage
from etcdpy.raft.errors import ErrCompacted
from etcdpy.raft.log import RaftLog
from etcdpy.raft.log_unstable import Unstable
from etcdpy.raft.storage import limit_size


def ents(*pairs: tuple[int, int]) -> list[pb.Entry]:
    """Ents builds entries from (index, term) pairs."""
    return [pb.Entry(index=i, term=t) for i, t in pairs]


def ids(entries: list[pb.Entry]) -> list[tuple[int, int]]:
    return [(e.index, e.term) for e in entries]


def log_with(*pairs: tuple[int, int], committed: int = 0) -> RaftLog:
    log = RaftLog(MemoryStorage())
    log.append(ents(*pairs))
    log.commit_to(committed)
    return log


@pytest.mark.parametrize(
    ("index", "log_term", "commit", "new", "want_last", "want_commit", "want_log"),
    [
        # The previous entry does not match: rejected, nothing changes.
        (3, 2, 3, [(4, 4)], None, 1, [(1, 1), (2, 2), (3, 3)]),
        (4, 4, 3, [(5, 4)], None, 1, [(1, 1), (2, 2), (3, 3)]),
        # Match, nothing new: only the commit index moves (bounded by the last new entry).
        (3, 3, 3, [], 3, 3, [(1, 1), (2, 2), (3, 3)]),
        (3, 3, 9, [], 3, 3, [(1, 1), (2, 2), (3, 3)]),
        (2, 2, 9, [], 2, 2, [(1, 1), (2, 2), (3, 3)]),  # the leader's commit beyond our match is not taken
        # New entries are appended.
        (3, 3, 4, [(4, 4)], 4, 4, [(1, 1), (2, 2), (3, 3), (4, 4)]),
        # Entries we already hold are not rewritten; a conflicting suffix is replaced.
        (1, 1, 1, [(2, 2)], 2, 1, [(1, 1), (2, 2), (3, 3)]),
        (1, 1, 3, [(2, 4), (3, 4)], 3, 3, [(1, 1), (2, 4), (3, 4)]),
    ],
)
def test_maybe_append(
    index: int,
    log_term: int,
    commit: int,
    new: list[tuple[int, int]],
    want_last: int | None,
    want_commit: int,
    want_log: list[tuple[int, int]],
) -> None:
    log = log_with((1, 1), (2, 2), (3, 3), committed=1)
    assert log.maybe_append(index, log_term, commit, ents(*new)) == want_last
    assert log.committed == want_commit
    assert ids(log.all_entries()) == want_log


def test_maybe_append_never_rewrites_committed_entries() -> None:
    log = log_with((1, 1), (2, 2), (3, 3), committed=2)
    with pytest.raises(AssertionError):
        log.maybe_append(1, 1, 3, ents((2, 9)))


@pytest.mark.parametrize(
    ("index", "term", "want"),
    [
        (6, 3, (6, 3)),  # we hold (6, 3) itself
        (6, 2, (3, 2)),  # skip our whole term 3 (4..6): last index with term <= 2 is 3
        (9, 2, (3, 2)),  # beyond our log: still the last entry of term <= 2
        (6, 1, (1, 1)),
        (6, 0, (0, 0)),
    ],
)
def test_find_conflict_by_term(index: int, term: int, want: tuple[int, int]) -> None:
    log = log_with((1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 3))
    if index > log.last_index():
        index = log.last_index()  # callers clamp to the last index first
    assert log.find_conflict_by_term(index, term) == want


@pytest.mark.parametrize(
    ("lasti", "term", "want"),
    [(2, 3, False), (3, 3, True), (9, 3, True), (1, 2, False), (9, 2, False), (1, 4, True)],
)
def test_is_up_to_date(lasti: int, term: int, want: bool) -> None:
    log = log_with((1, 1), (2, 2), (3, 3))
    assert log.is_up_to_date(lasti, term) is want


def test_commit_index_never_decreases_and_stays_within_the_log() -> None:
    log = log_with((1, 1), (2, 1), committed=2)
    log.commit_to(1)
    assert log.committed == 2
    with pytest.raises(AssertionError):
        log.commit_to(3)


def test_maybe_commit_only_for_the_given_term() -> None:
    log = log_with((1, 1), (2, 2), (3, 3))
    assert not log.maybe_commit(2, 3)
    assert log.committed == 0
    assert log.maybe_commit(3, 3)
    assert log.committed == 3


def test_next_committed_entries_follow_applied_and_size_limit() -> None:
    log = log_with((1, 1), (2, 1), (3, 1), committed=3)
    log.applied_to(1)
    assert ids(log.next_committed_ents()) == [(2, 1), (3, 1)]
    log.max_next_committed_size = 1
    assert ids(log.next_committed_ents()) == [(2, 1)]  # at least one, at most the limit
    log.applied_to(3)
    assert not log.has_next_committed_ents()


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=300), max_size=12),
    max_size=st.integers(min_value=0, max_value=2000),
)
def test_limit_size_keeps_the_longest_prefix_within_the_limit_but_at_least_one(
    sizes: list[int], max_size: int
) -> None:
    entries = [pb.Entry(term=1 + n % 3, index=(n + 1) ** 3, data=b"d" * size) for n, size in enumerate(sizes)]
    want, total = 0, 0
    for entry in entries:
        total += entry.ByteSize()
        if total > max_size and want > 0:
            break
        want += 1
    assert limit_size(entries, max_size) == entries[:want]


class CountingList(list[pb.Entry]):
    """A list that counts the entries read from it, by iteration or by index."""

    read = 0

    def __iter__(self) -> Iterator[pb.Entry]:
        for entry in super().__iter__():
            self.read += 1
            yield entry

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        got = super().__getitem__(index)
        self.read += len(got) if isinstance(index, slice) else 1
        return got


def test_limit_size_reads_no_further_than_the_first_entry_past_the_limit() -> None:
    # A restarted member offers raft thousands of committed entries per Ready; the cut must not cost
    # a pass over all of them each time (that made a restart quadratic in the entries to replay).
    entries = CountingList(pb.Entry(term=1, index=i, data=b"d" * 1000) for i in range(1, 10_001))
    got = limit_size(entries, 10_000)
    assert [e.index for e in got] == list(range(1, 10))  # nine of 1,000-odd bytes fit in 10,000
    assert entries.read <= 4 * len(got)


def test_stable_and_unstable_parts_stitch_together() -> None:
    storage = MemoryStorage()
    storage.append(ents((1, 1), (2, 1)))
    log = RaftLog(storage)
    log.append(ents((3, 2), (4, 2)))
    assert ids(log.unstable_entries()) == [(3, 2), (4, 2)]
    assert ids(log.slice(2, 5, 1 << 30)) == [(2, 1), (3, 2), (4, 2)]
    storage.append(log.unstable_entries())
    log.stable_to(4, 2)
    assert log.unstable_entries() == []
    assert ids(log.all_entries()) == [(1, 1), (2, 1), (3, 2), (4, 2)]


def test_stable_to_ignores_entries_replaced_meanwhile() -> None:
    u = Unstable(5)
    u.truncate_and_append(ents((5, 1), (6, 1)))
    u.truncate_and_append(ents((6, 2)))  # a new leader replaced index 6 before it was persisted
    u.stable_to(6, 1)  # the persisted (6, 1) is not what we hold now
    assert ids(u.entries) == [(5, 1), (6, 2)]
    u.stable_to(5, 1)
    assert (u.offset, ids(u.entries)) == (6, [(6, 2)])


@pytest.mark.parametrize(
    ("append", "want_offset", "want"),
    [
        ([(7, 1)], 5, [(5, 1), (6, 1), (7, 1)]),  # directly after
        ([(6, 2)], 5, [(5, 1), (6, 2)]),  # replaces the tail
        ([(5, 2), (6, 2)], 5, [(5, 2), (6, 2)]),  # replaces everything
        ([(4, 2)], 4, [(4, 2)]),  # starts before: the log restarts there
    ],
)
def test_unstable_truncate_and_append(
    append: list[tuple[int, int]], want_offset: int, want: list[tuple[int, int]]
) -> None:
    u = Unstable(5)
    u.truncate_and_append(ents((5, 1), (6, 1)))
    u.truncate_and_append(ents(*append))
    assert (u.offset, ids(u.entries)) == (want_offset, want)


def test_compacted_entries_raise() -> None:
    storage = MemoryStorage()
    storage.append(ents((1, 1), (2, 1), (3, 1)))
    storage.compact(2)
    log = RaftLog(storage)
    assert log.term(2) == 1  # the compaction point keeps its term
    with pytest.raises(ErrCompacted):
        log.term(1)
    with pytest.raises(ErrCompacted):
        log.slice(2, 4, 1 << 30)
    assert log.term_or_zero(1) == 0
