"""A read forwarded by a follower: answered without a heartbeat round when it and the leader are a quorum."""

from __future__ import annotations

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft.messages import sender

from .helpers import cluster, msg


def _types(messages: tuple[pb.Message, ...] | list[pb.Message]) -> list[int]:
    return [m.type for m in messages]


def test_forwarded_read_in_three_members_is_answered_at_once() -> None:
    env = cluster(3)
    env.raw(2).read_index(b"f")
    (forward,) = env.raw(2).ready().messages
    assert forward.type == pb.MsgReadIndex and forward.to == 1
    env.raw(1).step(forward)
    rd = env.raw(1).ready()
    assert _types(rd.messages) == [pb.MsgReadIndexResp]  # no heartbeat round
    (answer,) = rd.messages
    assert (answer.to, answer.index, answer.entries[0].data) == (2, env.raw(1).raft.raft_log.committed, b"f")
    assert env.raw(1).raft.read_only.queue == []


def test_forward_does_not_confirm_reads_queued_before_it() -> None:
    # The leader's own read began after the follower sent its forward: only a heartbeat round confirms it.
    env = cluster(3)
    env.raw(1).read_index(b"mine")
    env.raw(1).advance(env.raw(1).ready())  # its heartbeats are lost
    env.raw(1).step(msg(pb.MsgReadIndex, 2, 1, entries=[pb.Entry(data=b"f")]))
    rd = env.raw(1).ready()
    assert _types(rd.messages) == [pb.MsgReadIndexResp] and rd.read_states == ()
    assert env.raw(1).raft.read_only.queue == [b"mine"]


def test_forwarded_read_in_five_members_still_needs_a_heartbeat_quorum() -> None:
    env = cluster(5)
    env.raw(1).step(msg(pb.MsgReadIndex, 2, 1, entries=[pb.Entry(data=b"f")]))
    rd = env.raw(1).ready()
    heartbeats = [m for m in rd.messages if m.type == pb.MsgHeartbeat]
    assert {m.to for m in heartbeats} == {2, 3, 4, 5} and all(m.context == b"f" for m in heartbeats)
    assert pb.MsgReadIndexResp not in _types(rd.messages)
    env.raw(1).advance(rd)
    env.raw(1).step(msg(pb.MsgHeartbeatResp, 3, 1, term=1, context=b"f"))
    rd = env.raw(1).ready()
    # The forward is no ack in the round: 1 and 3 are 2 of 5.
    assert pb.MsgReadIndexResp not in _types(rd.messages)
    env.raw(1).advance(rd)
    env.raw(1).step(msg(pb.MsgHeartbeatResp, 4, 1, term=1, context=b"f"))
    answers = [m for m in env.raw(1).ready().messages if m.type == pb.MsgReadIndexResp]
    assert [(m.to, m.entries[0].data) for m in answers] == [(2, b"f")]


def test_forward_from_a_learner_needs_a_heartbeat_quorum() -> None:
    env = cluster(3)
    env.raw(1).propose_conf_change(pb.ConfChange(type=pb.ConfChangeAddLearnerNode, node_id=4))
    env.add_nodes(1)
    env.stabilize()
    assert 4 in env.raw(1).raft.trk.config.learners
    env.raw(1).step(msg(pb.MsgReadIndex, 4, 1, entries=[pb.Entry(data=b"l")]))
    rd = env.raw(1).ready()
    assert {m.to for m in rd.messages if m.type == pb.MsgHeartbeat} == {2, 3, 4}
    assert pb.MsgReadIndexResp not in _types(rd.messages)


def test_leaders_own_read_still_needs_a_heartbeat_quorum() -> None:
    env = cluster(3)
    env.raw(1).read_index(b"mine")
    rd = env.raw(1).ready()
    assert rd.read_states == () and {sender(m) for m in rd.messages} == {1}
    assert {m.type for m in rd.messages} == {pb.MsgHeartbeat}
