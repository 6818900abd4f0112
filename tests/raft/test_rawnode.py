"""RawNode and MemoryStorage: the application-facing contract."""

from __future__ import annotations

import dataclasses
from random import Random

import pytest

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft import (
    ErrCompacted,
    ErrSnapOutOfDate,
    ErrStepLocalMsg,
    ErrStepPeerNotFound,
    ErrUnavailable,
    MemoryStorage,
    ProposalDropped,
    RaftConfig,
    RawNode,
    StateType,
)

from .helpers import cluster, msg


def single_node(storage: MemoryStorage | None = None, applied: int = 0) -> tuple[RawNode, MemoryStorage]:
    if storage is None:
        storage = MemoryStorage()
        meta = pb.SnapshotMetadata(index=1, term=1, conf_state=pb.ConfState(voters=[1]))
        storage.apply_snapshot(pb.Snapshot(metadata=meta))
        applied = 1
    cfg = RaftConfig(
        id=1, election_tick=10, heartbeat_tick=1, storage=storage, applied=applied, rand=Random(1)
    )
    return RawNode(cfg), storage


def drain(rn: RawNode, storage: MemoryStorage) -> list[pb.Entry]:
    """Drain runs the Ready loop until idle; returns the committed entries applied."""
    applied: list[pb.Entry] = []
    while rn.has_ready():
        rd = rn.ready()
        if rd.snapshot is not None:
            storage.apply_snapshot(rd.snapshot)
        storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        assert rd.messages == () and rd.persisted_messages == ()  # nobody to talk to
        applied.extend(rd.committed_entries)
        rn.advance(rd)
    return applied


def test_single_node_elects_itself_commits_and_restarts() -> None:
    rn, storage = single_node()
    rn.campaign()
    drain(rn, storage)
    assert rn.is_leader()
    rn.propose(b"a")
    rn.propose_many([b"b", b"c"])
    applied = drain(rn, storage)
    assert [e.data for e in applied if e.data] == [b"a", b"b", b"c"]
    last = applied[-1].index

    # Restart from the same storage: the state comes back, nothing is applied twice.
    again, _ = single_node(storage, applied=last)
    st = again.status()
    assert (st.hard_state.term, st.hard_state.commit, st.applied) == (1, last, last)
    assert st.soft_state.role is StateType.FOLLOWER
    assert drain(again, storage) == []


def test_single_node_read_index_answers_at_once() -> None:
    rn, storage = single_node()
    rn.campaign()
    drain(rn, storage)
    rn.read_index(b"ctx")
    rd = rn.ready()
    assert [(s.index, s.request_ctx) for s in rd.read_states] == [(2, b"ctx")]
    rn.advance(rd)


def test_soft_state_and_hard_state_only_when_changed() -> None:
    rn, storage = single_node()
    rn.campaign()
    rd = rn.ready()
    assert rd.soft_state is not None and rd.soft_state.role is StateType.CANDIDATE
    assert rd.hard_state == pb.HardState(term=1, vote=1, commit=1)
    assert rd.must_sync
    storage.set_hard_state(rd.hard_state)
    rn.advance(rd)
    rd = rn.ready()  # the self-vote made it leader
    assert rd.soft_state is not None and rd.soft_state.role is StateType.LEADER
    assert rd.hard_state is None  # term and vote unchanged, commit not yet moved
    rn.advance(rd)


def test_step_refuses_local_messages_and_unknown_peers() -> None:
    rn, _ = single_node()
    with pytest.raises(ErrStepLocalMsg):
        rn.step(msg(pb.MsgHup, 1, 1))
    with pytest.raises(ErrStepPeerNotFound):
        rn.step(msg(pb.MsgAppResp, 9, 1, term=1, index=1))


def test_proposals_without_a_leader_raise() -> None:
    env = cluster(leader=None)
    with pytest.raises(ProposalDropped):
        env.raw(2).propose(b"x")
    with pytest.raises(ProposalDropped):
        env.raw(2).read_index(b"r")


def test_candidate_drops_proposals() -> None:
    env = cluster(leader=None)
    env.raw(1).campaign()
    with pytest.raises(ProposalDropped):
        env.raw(1).propose(b"x")


def test_advance_requires_the_outstanding_ready() -> None:
    rn, _ = single_node()
    rn.campaign()
    rd = rn.ready()
    with pytest.raises(RuntimeError):
        rn.advance(dataclasses.replace(rd))  # an equal copy is not the Ready handed out
    rn.advance(rd)
    with pytest.raises(RuntimeError):
        rn.advance(rd)  # only once


# -- MemoryStorage --


def storage_with(*terms: int) -> MemoryStorage:
    """Storage_with holds a snapshot at index 3 (term 3) then entries 4.. with the given terms."""
    s = MemoryStorage()
    s.apply_snapshot(pb.Snapshot(metadata=pb.SnapshotMetadata(index=3, term=3)))
    s.append([pb.Entry(index=i, term=t) for i, t in enumerate(terms, 4)])
    return s


def test_storage_term_bounds() -> None:
    s = storage_with(4, 5)
    assert [s.term(i) for i in (3, 4, 5)] == [3, 4, 5]
    with pytest.raises(ErrCompacted):
        s.term(2)
    with pytest.raises(ErrUnavailable):
        s.term(6)


def test_storage_entries_bounds_and_size_limit() -> None:
    s = MemoryStorage()
    s.append([pb.Entry(index=i, term=1, data=b"x" * 10) for i in range(1, 6)])
    assert [e.index for e in s.entries(2, 5, 1 << 30)] == [2, 3, 4]
    one = s.entries(2, 5, 0)[0].ByteSize()
    assert [e.index for e in s.entries(2, 5, 2 * one)] == [2, 3]
    assert [e.index for e in s.entries(2, 5, 1)] == [2]  # always at least one
    s.compact(3)
    with pytest.raises(ErrCompacted):
        s.entries(3, 5, 1 << 30)


def test_storage_append_replaces_conflicting_suffix_and_ignores_compacted() -> None:
    s = storage_with(4, 4, 4)  # 4..6
    s.append([pb.Entry(index=5, term=5), pb.Entry(index=6, term=5), pb.Entry(index=7, term=5)])
    assert [(i, s.term(i)) for i in range(3, 8)] == [(3, 3), (4, 4), (5, 5), (6, 5), (7, 5)]
    s.append([pb.Entry(index=2, term=2), pb.Entry(index=3, term=3)])  # all compacted: ignored
    assert s.last_index() == 7


def test_storage_snapshots() -> None:
    s = storage_with(4, 4, 5)  # 4..6
    snap = s.create_snapshot(5, pb.ConfState(voters=[1]), b"state")
    assert (snap.metadata.index, snap.metadata.term, snap.data) == (5, 4, b"state")
    with pytest.raises(ErrSnapOutOfDate):
        s.create_snapshot(4, None, b"")
    s.compact(5)
    assert (s.first_index(), s.last_index()) == (6, 6)
    with pytest.raises(ErrSnapOutOfDate):
        s.apply_snapshot(pb.Snapshot(metadata=pb.SnapshotMetadata(index=5, term=4)))
    s.apply_snapshot(pb.Snapshot(metadata=pb.SnapshotMetadata(index=9, term=6)))
    assert (s.first_index(), s.last_index(), s.term(9)) == (10, 9, 6)
