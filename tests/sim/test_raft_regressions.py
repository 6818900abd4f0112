"""Raft bugs the simulator found, each reduced to a few deterministic steps on one RawNode.

While a bug is open its test carries a strict xfail naming it (and its seeds
are kept out of the sweep); once fixed, the test stays as a regression test.
"""

from __future__ import annotations

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft import MemoryStorage, RaftConfig, RawNode, conf_change_entry, decode_conf_change


def message(kind: pb.MessageType, frm: int, to: int, **fields: object) -> pb.Message:
    sent = pb.Message(type=kind, to=to, **fields)  # type: ignore[arg-type]
    setattr(sent, "from", frm)  # `from` is a Python keyword
    return sent


def test_snapshot_stepped_between_ready_and_advance_keeps_that_readys_conf_changes_applicable() -> None:
    """Found by the sweep (fixed in b210cce): the snapshot reset the configuration under the Ready."""
    storage = MemoryStorage()
    boot = pb.Snapshot()
    boot.metadata.index, boot.metadata.term = 1, 1
    boot.metadata.conf_state.voters.extend([1, 2, 3])
    storage.apply_snapshot(boot)
    storage.set_hard_state(pb.HardState(term=1, commit=1))
    node = RawNode(RaftConfig(id=3, election_tick=10, heartbeat_tick=1, storage=storage, applied=1))

    # Leader 1 of term 2 replicates and commits a joint change: replace 2 by 4.
    joint = pb.ConfChangeV2(
        changes=[
            pb.ConfChangeSingle(type=pb.ConfChangeAddNode, node_id=4),
            pb.ConfChangeSingle(type=pb.ConfChangeRemoveNode, node_id=2),
        ]
    )
    entry = conf_change_entry(joint)
    entry.index, entry.term = 2, 2
    node.step(message(pb.MsgApp, 1, 3, term=2, log_term=1, index=1, entries=[entry], commit=2))
    rd = node.ready()
    assert [e.index for e in rd.committed_entries] == [2]
    storage.append(list(rd.entries))
    assert rd.hard_state is not None
    storage.set_hard_state(rd.hard_state)

    # While that Ready is being persisted, the leader's snapshot (taken after the change) arrives.
    snapshot = pb.Snapshot()
    snapshot.metadata.index, snapshot.metadata.term = 5, 2
    snapshot.metadata.conf_state.voters.extend([1, 3, 4])
    snapshot.metadata.conf_state.voters_outgoing.extend([1, 2, 3])
    snapshot.metadata.conf_state.auto_leave = True
    node.step(message(pb.MsgSnap, 1, 3, term=2, snapshot=snapshot))

    # The application applies what the Ready handed it, as the contract says.
    for committed in rd.committed_entries:
        change = decode_conf_change(committed)
        assert change is not None
        node.apply_conf_change(change)
    node.advance(rd)
    conf_state = node.status().conf_state
    assert (sorted(conf_state.voters), sorted(conf_state.voters_outgoing)) == ([1, 3, 4], [1, 2, 3])


def test_node_with_higher_term_and_stale_configuration_tells_the_leader_its_term() -> None:
    # Node 12 last heard of configuration (4 11 12); it campaigned alone up to term 138 while the
    # cluster replaced 4 and 11 by 13 and 19 under leader 13, now at term 79.
    storage = MemoryStorage()
    for index, voter in enumerate((4, 11, 12), start=1):
        entry = conf_change_entry(pb.ConfChange(type=pb.ConfChangeAddNode, node_id=voter))
        entry.index, entry.term = index, 1
        storage.append([entry])
    storage.set_hard_state(pb.HardState(term=138, vote=12, commit=3))
    node = RawNode(RaftConfig(id=12, election_tick=10, heartbeat_tick=1, storage=storage))
    rd = node.ready()
    for committed in rd.committed_entries:
        change = decode_conf_change(committed)
        assert change is not None
        node.apply_conf_change(change)
    node.advance(rd)

    node.step(message(pb.MsgHeartbeat, 13, 12, term=79, commit=3))
    node.step(message(pb.MsgApp, 13, 12, term=79, log_term=1, index=3, commit=3))
    sent = []
    while node.has_ready():
        rd = node.ready()
        sent += [*rd.messages, *rd.persisted_messages]
        node.advance(rd)
    # Raft section 5.1: a request with a stale term is rejected with the current term, so the
    # leader steps down and the next election (at a higher term) brings node 12 back.
    assert any(m.to == 13 and m.term == 138 for m in sent), sent
