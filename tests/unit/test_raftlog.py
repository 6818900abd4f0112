"""RaftLogStorage: raft's Storage on LevelDB survives reopening, overwrites conflicts, compacts, snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft import NO_LIMIT, ErrCompacted, ErrUnavailable
from etcdpy.server.storage.backend import Backend
from etcdpy.server.storage.raftlog import RaftLogCorruptError, RaftLogStorage, entry_key


def ents(first: int, last: int, term: int) -> tuple[pb.Entry, ...]:
    return tuple(pb.Entry(index=i, term=term, data=b"d%d" % i) for i in range(first, last + 1))


def save(log: RaftLogStorage, **kwargs: object) -> None:
    log.write(log.prepare(**kwargs))  # type: ignore[arg-type]


def test_entries_and_hard_state_survive_reopening(tmp_path: Path) -> None:
    backend = Backend(tmp_path)
    log = RaftLogStorage.open(backend)
    save(log, entries=ents(1, 5, 1), hard_state=pb.HardState(term=1, vote=7, commit=3))
    backend.close()
    backend = Backend(tmp_path)
    log = RaftLogStorage.open(backend)
    assert (log.first_index(), log.last_index()) == (1, 5)
    assert log.initial_state()[0] == pb.HardState(term=1, vote=7, commit=3)
    assert [e.data for e in log.entries(2, 4, NO_LIMIT)] == [b"d2", b"d3"]
    backend.close()


def test_an_append_replaces_the_conflicting_suffix_on_disk(tmp_path: Path) -> None:
    backend = Backend(tmp_path)
    log = RaftLogStorage.open(backend)
    save(log, entries=ents(1, 5, 1))
    save(log, entries=ents(3, 3, 2))  # a new leader overwrote 3.. with one entry
    assert log.last_index() == 3 and log.term(3) == 2
    backend.close()
    backend = Backend(tmp_path)
    log = RaftLogStorage.open(backend)
    assert log.last_index() == 3 and log.term(3) == 2 and log.term(2) == 1
    backend.close()


def test_compaction_and_snapshot_point_move_the_first_index(tmp_path: Path) -> None:
    backend = Backend(tmp_path)
    log = RaftLogStorage.open(backend)
    save(log, entries=ents(1, 10, 1))
    log.create_snapshot(8, pb.ConfState(voters=[1, 2]))
    save(log, compact_to=6)
    assert log.first_index() == 7
    with pytest.raises(ErrCompacted):
        log.entries(6, 8, NO_LIMIT)
    assert log.term(6) == 1  # the entry before the first keeps its term for raft's matching
    backend.close()
    backend = Backend(tmp_path)
    log = RaftLogStorage.open(backend)
    assert log.first_index() == 7
    assert list(log.snapshot().metadata.conf_state.voters) == [1, 2]
    backend.close()


def test_an_installed_snapshot_replaces_the_log(tmp_path: Path) -> None:
    backend = Backend(tmp_path)
    log = RaftLogStorage.open(backend)
    save(log, entries=ents(1, 3, 1))
    meta = pb.SnapshotMetadata(index=20, term=3)
    save(log, snapshot=meta, entries=ents(21, 22, 3))
    assert (log.first_index(), log.last_index()) == (21, 22)
    with pytest.raises(ErrUnavailable):
        log.term(23)
    backend.close()
    backend = Backend(tmp_path)
    log = RaftLogStorage.open(backend)
    assert (log.first_index(), log.last_index(), log.term(20)) == (21, 22, 3)
    backend.close()


def test_a_damaged_last_entry_is_a_torn_tail_and_earlier_damage_is_corruption(tmp_path: Path) -> None:
    backend = Backend(tmp_path)
    log = RaftLogStorage.open(backend)
    save(log, entries=ents(1, 4, 1))
    backend.db.put(entry_key(4), b"garbage-garbage-garbage")
    log = RaftLogStorage.open(backend)
    assert log.dropped_tail == 1 and log.last_index() == 3
    backend.db.put(entry_key(2), b"garbage-garbage-garbage")
    with pytest.raises(RaftLogCorruptError):
        RaftLogStorage.open(backend)
    backend.close()
