"""Inputs stepped between ready() and advance(): what a Ready handed out must stay valid.

The application may step messages while it handles a Ready (a follower receives
while it persists; the leader sends while its fsync runs). Nothing stepped then
may invalidate what that Ready handed out: above all the committed entries the
application is applying, whose conf changes it passes to apply_conf_change().
"""

from __future__ import annotations

import contextlib
from random import Random

import pytest

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft import (
    MemoryStorage,
    ProposalDropped,
    RaftConfig,
    RaftError,
    RawNode,
    Ready,
    SnapshotStatus,
    conf_change_entry,
    decode_conf_change,
    sender,
)

from .helpers import msg
from .interaction import LEVELS, Env, Node, encode_state


def follower(applied: int = 1, storage: MemoryStorage | None = None) -> tuple[RawNode, MemoryStorage]:
    """Follower is node 3 of voters (1, 2, 3), booted from a snapshot at index 1, term 1."""
    if storage is None:
        storage = MemoryStorage()
        meta = pb.SnapshotMetadata(index=1, term=1, conf_state=pb.ConfState(voters=[1, 2, 3]))
        storage.apply_snapshot(pb.Snapshot(metadata=meta))
        storage.set_hard_state(pb.HardState(term=1, commit=1))
    cfg = RaftConfig(
        id=3, election_tick=10, heartbeat_tick=1, storage=storage, applied=applied, rand=Random(3)
    )
    return RawNode(cfg), storage


def persist(storage: MemoryStorage, rd: Ready) -> None:
    if rd.snapshot is not None:
        storage.apply_snapshot(rd.snapshot)
    storage.append(list(rd.entries))
    if rd.hard_state is not None:
        storage.set_hard_state(rd.hard_state)


def append_committed(node: RawNode, entry: pb.Entry, prev: tuple[int, int] = (1, 1)) -> None:
    """Append_committed delivers entry from leader 1 (term 2) with a commit index covering it."""
    node.step(
        msg(pb.MsgApp, 1, 3, term=2, index=prev[0], log_term=prev[1], entries=[entry], commit=entry.index)
    )


def cc_entry(cc: pb.ConfChange | pb.ConfChangeV2, index: int, term: int = 2) -> pb.Entry:
    e = conf_change_entry(cc)
    e.index, e.term = index, term
    return e


def snapshot(index: int, cs: pb.ConfState, term: int = 2) -> pb.Snapshot:
    return pb.Snapshot(metadata=pb.SnapshotMetadata(index=index, term=term, conf_state=cs), data=b"state")


def responses(rd: Ready) -> list[tuple[int, int, bool]]:
    """Responses are the (type, index, reject) of the Ready's messages to the leader."""
    return [(m.type, m.index, m.reject) for m in (*rd.messages, *rd.persisted_messages) if m.to == 1]


def apply_all(node: RawNode, rd: Ready) -> pb.ConfState | None:
    cs = None
    for e in rd.committed_entries:
        cc = decode_conf_change(e)
        if cc is not None:
            cs = node.apply_conf_change(cc)
    return cs


JOINT_CS = pb.ConfState(voters=[1, 3, 4], voters_outgoing=[1, 2, 3], auto_leave=True)


def test_snapshot_while_conf_change_is_applied_is_refused_then_installed() -> None:
    # The reproduction from the simulator (seeds 745, 749, 1780): a joint change
    # "add 4, remove 2" is committed and handed out; the leader's snapshot, taken
    # after the change, arrives before the application has applied it.
    node, storage = follower()
    joint = pb.ConfChangeV2(
        changes=[
            pb.ConfChangeSingle(type=pb.ConfChangeAddNode, node_id=4),
            pb.ConfChangeSingle(type=pb.ConfChangeRemoveNode, node_id=2),
        ]
    )
    append_committed(node, cc_entry(joint, 2))
    rd = node.ready()
    assert [e.index for e in rd.committed_entries] == [2]
    persist(storage, rd)

    node.step(msg(pb.MsgSnap, 1, 3, term=2, snapshot=snapshot(5, JOINT_CS)))

    # The conf change applies onto the configuration it was committed in.
    cs = apply_all(node, rd)
    assert cs is not None
    assert (sorted(cs.voters), sorted(cs.voters_outgoing)) == ([1, 3, 4], [1, 2, 3])
    node.advance(rd)

    # The snapshot was answered as a stale one (our commit index, no rejection) ...
    rd = node.ready()
    assert rd.snapshot is None
    assert responses(rd) == [(pb.MsgAppResp, 2, False)]
    persist(storage, rd)
    node.advance(rd)

    # ... so the leader sends it again once it learns the snapshot did not take, and now it does.
    node.step(msg(pb.MsgSnap, 1, 3, term=2, snapshot=snapshot(5, JOINT_CS)))
    rd = node.ready()
    assert rd.snapshot is not None and rd.snapshot.metadata.index == 5
    assert rd.hard_state is not None and rd.hard_state.commit == 5
    assert responses(rd) == [(pb.MsgAppResp, 5, False)]
    persist(storage, rd)
    node.advance(rd)
    assert node.status().applied == 5
    assert node.status().conf_state == JOINT_CS


def test_simple_conf_change_is_not_reapplied_onto_a_newer_snapshot() -> None:
    # A simple change (add 4) is handed out; the snapshot that arrives meanwhile
    # already has 4 added and removed again. Before the fix raft accepted it and
    # the late apply re-added 4: this node alone would have had four voters.
    node, storage = follower()
    append_committed(node, cc_entry(pb.ConfChange(type=pb.ConfChangeAddNode, node_id=4), 2))
    rd = node.ready()
    persist(storage, rd)
    later = pb.ConfState(voters=[1, 2, 3])
    node.step(msg(pb.MsgSnap, 1, 3, term=2, snapshot=snapshot(6, later)))
    cs = apply_all(node, rd)
    assert cs is not None and sorted(cs.voters) == [1, 2, 3, 4]  # the change, on the config it was made in
    node.advance(rd)
    rd = node.ready()
    assert rd.snapshot is None
    node.advance(rd)

    node.step(msg(pb.MsgSnap, 1, 3, term=2, snapshot=snapshot(6, later)))
    rd = node.ready()
    assert rd.snapshot is not None
    persist(storage, rd)
    node.advance(rd)
    assert sorted(node.status().conf_state.voters) == [1, 2, 3]


def test_snapshot_accepted_between_ready_and_advance_when_nothing_is_being_applied() -> None:
    # Only handed-out committed entries block a snapshot: a Ready that carries
    # just new (uncommitted) entries does not.
    node, storage = follower()
    node.step(
        msg(pb.MsgApp, 1, 3, term=2, index=1, log_term=1, entries=[pb.Entry(index=2, term=2)], commit=1)
    )
    rd = node.ready()
    assert rd.entries and not rd.committed_entries
    persist(storage, rd)
    node.step(msg(pb.MsgSnap, 1, 3, term=2, snapshot=snapshot(5, pb.ConfState(voters=[1, 2, 3]))))
    node.advance(rd)
    rd = node.ready()
    assert rd.snapshot is not None and rd.snapshot.metadata.index == 5
    assert responses(rd) == [(pb.MsgAppResp, 5, False)]


def test_snapshot_matching_our_log_still_fast_forwards_the_commit_while_applying() -> None:
    # A snapshot of entries we hold needs no restore: it only moves the commit
    # index, which is safe while a Ready is being applied.
    node, storage = follower()
    node.step(
        msg(
            pb.MsgApp,
            1,
            3,
            term=2,
            index=1,
            log_term=1,
            entries=[pb.Entry(index=2, term=2), pb.Entry(index=3, term=2)],
            commit=2,
        )
    )
    rd = node.ready()
    assert [e.index for e in rd.committed_entries] == [2]
    persist(storage, rd)
    node.step(msg(pb.MsgSnap, 1, 3, term=2, snapshot=snapshot(3, pb.ConfState(voters=[1, 2, 3]))))
    node.advance(rd)
    rd = node.ready()
    assert rd.snapshot is None
    assert [e.index for e in rd.committed_entries] == [3]
    assert rd.hard_state is not None and rd.hard_state.commit == 3


def test_snapshot_refused_while_a_restarted_node_replays_its_conf_changes() -> None:
    # After a restart raft hands out the committed entries after the applied
    # index again, conf changes included; a snapshot must wait for those too.
    node, storage = follower()
    append_committed(node, cc_entry(pb.ConfChange(type=pb.ConfChangeAddLearnerNode, node_id=4), 2))
    rd = node.ready()
    persist(storage, rd)
    apply_all(node, rd)
    node.advance(rd)

    again, _ = follower(applied=1, storage=storage)
    rd = again.ready()
    assert [e.index for e in rd.committed_entries] == [2]
    later = pb.ConfState(voters=[1, 2, 3], learners=[4])
    again.step(msg(pb.MsgSnap, 1, 3, term=2, snapshot=snapshot(5, later)))
    cs = apply_all(again, rd)
    assert cs is not None and list(cs.learners) == [4]
    again.advance(rd)
    rd = again.ready()
    assert rd.snapshot is None and responses(rd) == [(pb.MsgAppResp, 2, False)]


def test_newer_snapshot_while_a_snapshot_is_being_installed_follows_it() -> None:
    # A Ready that hands out a snapshot (and no entries to apply) does not block
    # a newer one: it comes in the next Ready and wins.
    node, storage = follower()
    node.step(msg(pb.MsgSnap, 1, 3, term=2, snapshot=snapshot(5, pb.ConfState(voters=[1, 2, 3]))))
    rd = node.ready()
    assert rd.snapshot is not None and rd.snapshot.metadata.index == 5
    persist(storage, rd)
    node.step(msg(pb.MsgSnap, 1, 3, term=2, snapshot=snapshot(8, pb.ConfState(voters=[1, 2, 3, 4]))))
    node.advance(rd)
    assert node.status().applied == 5
    rd = node.ready()
    assert rd.snapshot is not None and rd.snapshot.metadata.index == 8
    persist(storage, rd)
    node.advance(rd)
    st = node.status()
    assert (st.applied, st.hard_state.commit, sorted(st.conf_state.voters)) == (8, 8, [1, 2, 3, 4])


# -- randomized: Readys held open while the cluster runs on --


def _random_change(rng: Random) -> pb.ConfChange | pb.ConfChangeV2:
    # Moves among 2..4 between voter and learner: node 1 stays a voter, so a quorum remains.
    single = pb.ConfChangeSingle(
        type=rng.choice((pb.ConfChangeAddNode, pb.ConfChangeAddLearnerNode)), node_id=rng.randint(2, 4)
    )
    if rng.random() < 0.5:
        return pb.ConfChange(type=single.type, node_id=single.node_id)
    other = pb.ConfChangeSingle(
        type=rng.choice((pb.ConfChangeAddNode, pb.ConfChangeAddLearnerNode)), node_id=rng.randint(2, 4)
    )
    changes = [single] if other.node_id == single.node_id else [single, other]
    return pb.ConfChangeV2(changes=changes)  # joint when it moves two nodes, left automatically


def _compact(node: Node) -> None:
    """_compact snapshots the state machine at the applied index and compacts the log up to it."""
    applied = node.raw.status().applied
    storage = node.storage
    if node.held is None and applied > storage.first_index():
        storage.create_snapshot(applied, node.conf_state_at(applied), encode_state(node.applied))
        storage.compact(applied)


@pytest.mark.parametrize("seed", range(8))
def test_held_readys_never_invalidated(seed: int) -> None:
    # Nodes keep a Ready open (persisted and sent, not yet applied) while they
    # step messages, with conf changes, snapshots and message loss going on.
    # Whatever arrives meanwhile, the held Ready stays valid: its conf changes
    # apply, every node goes through the same configurations and entries, and
    # neither the commit index nor a handed-out HardState moves backwards.
    rng = Random(seed)
    env = Env()
    env.logger.level = LEVELS["none"]
    env.add_nodes(4, [1, 2, 3], [4], 1, pre_vote=seed % 2 == 0, check_quorum=seed % 4 == 1)
    ids = sorted(env.nodes)
    hard_commits = dict.fromkeys(ids, 0)
    configs: dict[int, dict[int, pb.ConfState]] = {i: {} for i in ids}
    for step in range(2000):
        nid = rng.choice(ids)
        node = env.nodes[nid]
        roll = rng.random()
        if roll < 0.15:
            node.raw.tick()
        elif roll < 0.22:
            with contextlib.suppress(ProposalDropped):
                node.raw.propose(b"%d" % step)
        elif roll < 0.26:
            with contextlib.suppress(ProposalDropped):
                node.raw.propose_conf_change(_random_change(rng))
        elif roll < 0.30:
            _compact(node)
        elif roll < 0.48:
            if node.held is None:
                if env.take_ready(nid) and node.held is not None and node.held.hard_state is not None:
                    commit = node.held.hard_state.commit
                    assert commit >= hard_commits[nid], "a Ready's HardState moved the commit backwards"
                    hard_commits[nid] = commit
            elif rng.random() < 0.3:  # long holds: much is stepped meanwhile
                held = node.held
                env.finish_ready(nid)
                for e in held.committed_entries:
                    if decode_conf_change(e) is not None:
                        configs[nid][e.index] = node.conf_state_at(e.index)
                if node.raw.is_leader():
                    _compact(node)  # followers that fall behind need snapshots
        elif env.queue:
            m = env.queue.pop(rng.randrange(len(env.queue)))  # reordered
            lost = rng.random() < 0.25
            if not lost:
                with contextlib.suppress(RaftError):
                    env.raw(m.to).step(m)
            if m.type == pb.MsgSnap:
                status = SnapshotStatus.FAILURE if lost else SnapshotStatus.FINISH
                env.raw(sender(m)).report_snapshot(m.to, status)
        assert not [line for line in env.out if "conf change refused" in line], env.out
    for a in ids:
        for b in ids:
            sa, sb = env.nodes[a].applied, env.nodes[b].applied
            n = min(len(sa), len(sb))
            assert sa[:n] == sb[:n], "nodes applied different entries at the same index"
            for index in configs[a].keys() & configs[b].keys():
                assert configs[a][index] == configs[b][index], f"configs differ after entry {index}"
    assert sum(len(c) for c in configs.values()) > 0, "the run should have applied conf changes"
