"""coalesce: merged messages have the same effect on their receiver as the originals, in fewer messages."""

from __future__ import annotations

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft.coalesce import coalesce

from .helpers import cluster, msg

BIG = 1 << 20


def _apps_to(messages: list[pb.Message], peer: int) -> list[pb.Message]:
    return [m for m in messages if m.to == peer and m.type == pb.MsgApp]


def _leader_ready_with_many_appends() -> tuple[object, list[pb.Message]]:
    """A leader that proposed three times and saw a commit advance before taking one Ready."""
    env = cluster(3)
    leader = env.raw(1)
    leader.propose(b"a")
    leader.propose(b"b")
    last = leader.raft.raft_log.last_index()
    leader.step(msg(pb.MsgAppResp, 2, 1, term=1, index=last))  # commits a, b: commit-only appends follow
    leader.propose(b"c")
    rd = leader.ready()
    leader.advance(rd)
    return env, list(rd.messages)


def test_consecutive_appends_to_a_follower_become_one() -> None:
    _, messages = _leader_ready_with_many_appends()
    assert len(_apps_to(messages, 3)) > 2  # the situation coalescing is for
    merged = coalesce(messages, BIG)
    for peer in (2, 3):
        (app,) = _apps_to(merged, peer)
        originals = _apps_to(messages, peer)
        assert (app.index, app.log_term) == (originals[0].index, originals[0].log_term)
        assert [e.data for e in app.entries] == [e.data for m in originals for e in m.entries]
        assert app.commit == max(m.commit for m in originals)


def test_a_follower_ends_in_the_same_state_from_merged_appends() -> None:
    env, messages = _leader_ready_with_many_appends()
    for m in _apps_to(messages, 2):  # follower 2 steps raft's messages one by one
        env.raw(2).step(m)
    as_3 = [m for m in messages if m.to == 3]
    for m in coalesce(as_3, BIG):  # follower 3 (same log so far) steps them merged
        env.raw(3).step(m)
    f2, f3 = env.raw(2).raft, env.raw(3).raft
    assert f2.raft_log.all_entries() == f3.raft_log.all_entries()
    assert f2.raft_log.committed == f3.raft_log.committed > 1
    answers2 = [m for m in env.raw(2).ready().persisted_messages if m.type == pb.MsgAppResp]
    answers3 = [m for m in env.raw(3).ready().persisted_messages if m.type == pb.MsgAppResp]
    assert len(answers3) == 1 and len(answers2) == len(_apps_to(messages, 2))
    assert answers3[0].index == max(m.index for m in answers2)
    (reply,) = coalesce(answers2, BIG)  # and the follower's answers merge to the newest
    assert reply.index == answers3[0].index


def test_another_message_to_the_peer_in_between_stops_the_merge() -> None:
    first = msg(pb.MsgApp, 1, 2, term=1, index=5, log_term=1, entries=[pb.Entry(index=6, term=1, data=b"x")])
    heartbeat = msg(pb.MsgHeartbeat, 1, 2, term=1)
    second = msg(pb.MsgApp, 1, 2, term=1, index=6, log_term=1, entries=[pb.Entry(index=7, term=1)])
    to_other = msg(pb.MsgApp, 1, 3, term=1, index=6, log_term=1)
    assert coalesce([first, heartbeat, second], BIG) == [first, heartbeat, second]
    merged = coalesce([first, to_other, second], BIG)
    assert [m.to for m in merged] == [2, 3] and len(merged[0].entries) == 2


def test_appends_that_do_not_continue_each_other_stay_apart() -> None:
    first = msg(pb.MsgApp, 1, 2, term=2, index=5, log_term=2, entries=[pb.Entry(index=6, term=2)])
    gap = msg(pb.MsgApp, 1, 2, term=2, index=7, log_term=2, entries=[pb.Entry(index=8, term=2)])
    wrong_term = msg(pb.MsgApp, 1, 2, term=2, index=6, log_term=1, entries=[pb.Entry(index=7, term=2)])
    assert coalesce([first, gap], BIG) == [first, gap]
    assert coalesce([first, wrong_term], BIG) == [first, wrong_term]


def test_merging_leaves_raft_messages_untouched_and_respects_the_size_limit() -> None:
    parts = [
        msg(
            pb.MsgApp,
            1,
            2,
            term=1,
            index=i,
            log_term=1,
            entries=[pb.Entry(index=i + 1, term=1, data=b"x" * 9)],
        )
        for i in range(1, 5)
    ]
    merged = coalesce(parts, 20)
    assert [len(m.entries) for m in merged] == [2, 2]
    assert all(len(m.entries) == 1 for m in parts)


def test_rejections_are_never_merged_and_acks_keep_the_highest_index() -> None:
    ack5 = msg(pb.MsgAppResp, 2, 1, term=1, index=5)
    ack7 = msg(pb.MsgAppResp, 2, 1, term=1, index=7)
    stale = msg(pb.MsgAppResp, 2, 1, term=1, index=3)
    reject = msg(pb.MsgAppResp, 2, 1, term=1, index=9, reject=True, reject_hint=6)
    assert coalesce([ack5, ack7, stale], BIG) == [ack7]
    assert coalesce([ack5, reject, ack7], BIG) == [ack5, reject, ack7]
