"""Tests tied to sections of the Raft paper (Ongaro & Ousterhout, 2014) and thesis."""

from __future__ import annotations

import contextlib
from random import Random

import pytest

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft import ProposalDropped, RaftError, StateType
from etcdpy.raft.messages import sender
from etcdpy.raft.status import CampaignType

from .helpers import cluster, lone_raft, msg, take

# -- 5.1: terms --


def test_higher_term_turns_leader_into_follower() -> None:
    # Reference: Raft section 5.1
    env = cluster()
    r = env.raw(1).raft
    assert r.role is StateType.LEADER
    r.step(msg(pb.MsgAppResp, 2, 1, term=5, index=1))
    assert (r.role, r.term, r.lead, r.vote) == (StateType.FOLLOWER, 5, 0, 0)


def test_stale_term_message_is_rejected_with_our_term() -> None:
    # Reference: Raft section 5.1 (a request with a stale term is rejected; the reply carries our term)
    r = lone_raft(entries=(2,))
    r.become_follower(3, 2)
    before = [(e.index, e.term) for e in r.raft_log.all_entries()]
    r.step(msg(pb.MsgApp, 3, 1, term=2, index=2, log_term=2, entries=[pb.Entry(index=3, term=2)]))
    [resp] = take(r)
    assert (resp.type, resp.to, resp.term, resp.index) == (pb.MsgAppResp, 3, 3, 0)
    assert [(e.index, e.term) for e in r.raft_log.all_entries()] == before
    assert r.term == 3
    # Other stale messages are dropped silently.
    r.step(msg(pb.MsgVoteResp, 3, 1, term=2))
    r.step(msg(pb.MsgAppResp, 3, 1, term=2, index=3))
    assert take(r) == []


@pytest.mark.parametrize("check_quorum", [True, False])
def test_stale_leader_is_told_the_newer_term(check_quorum: bool) -> None:
    # Reference: Raft section 5.1 (thesis 9.6: a deposed leader must learn it was deposed)
    r = lone_raft(check_quorum=check_quorum)
    r.become_follower(3, 2)
    r.step(msg(pb.MsgHeartbeat, 3, 1, term=2))
    [resp] = take(r)
    assert (resp.type, resp.to, resp.term) == (pb.MsgAppResp, 3, 3)


def test_member_whose_votes_cannot_reach_the_leader_is_brought_back() -> None:
    # Found by the simulator (seed 6138): node 1 restarted with a configuration
    # that still named only members since removed (2, 3), so its campaigns raised
    # its term but reached nobody, and without check-quorum or pre-vote it ignored
    # the leader's lower-term heartbeats: stuck for good. Its answer now deposes
    # the leader, and the next election (at a higher term) brings it back.
    stale = lone_raft(nid=1, peers=(1, 2, 3))
    stale.become_follower(12, 0)
    leader = lone_raft(nid=5, peers=(1, 5, 7))
    leader.become_candidate()
    leader.become_leader()
    take(leader)
    leader.bcast_heartbeat()
    [hb] = [m for m in take(leader) if m.to == 1]
    stale.step(hb)
    [resp] = take(stale)
    assert (resp.type, resp.term) == (pb.MsgAppResp, 12)
    leader.step(resp)
    assert (leader.role, leader.term) == (StateType.FOLLOWER, 12)


# -- 5.2: leader election --


@pytest.mark.parametrize("seed", range(50))
def test_randomized_election_timeout_range(seed: int) -> None:
    # Reference: Raft section 5.2 (randomized timeouts in [election_tick, 2*election_tick))
    r = lone_raft(rand=Random(seed))
    seen = set()
    for _ in range(20):
        r.reset_randomized_election_timeout()
        seen.add(r.randomized_election_timeout)
    assert all(10 <= t < 20 for t in seen)
    assert len(seen) > 1


def test_follower_campaigns_after_election_timeout() -> None:
    # Reference: Raft section 5.2
    r = lone_raft()
    for _ in range(r.randomized_election_timeout - 1):
        r.tick_fn(r)
    assert r.role is StateType.FOLLOWER
    r.tick_fn(r)
    assert (r.role, r.term, r.vote) == (StateType.CANDIDATE, 1, 1)
    votes = sorted((m.to, m.type) for m in take(r) if m.to != 1)
    assert votes == [(2, pb.MsgVote), (3, pb.MsgVote)]


def test_candidate_wins_with_a_majority_of_five() -> None:
    # Reference: Raft section 5.2
    r = lone_raft(peers=(1, 2, 3, 4, 5))
    r.campaign(CampaignType.ELECTION)
    r.step(msg(pb.MsgVoteResp, 1, 1, term=1))  # its own vote, once persisted
    r.step(msg(pb.MsgVoteResp, 2, 1, term=1))
    assert r.role is StateType.CANDIDATE  # 2 of 5
    r.step(msg(pb.MsgVoteResp, 3, 1, term=1, reject=True))
    assert r.role is StateType.CANDIDATE  # 2 yes, 1 no: still open
    r.step(msg(pb.MsgVoteResp, 4, 1, term=1))
    assert r.role is StateType.LEADER  # type: ignore[comparison-overlap]  # 3 of 5 (step changed it)


def test_candidate_that_loses_becomes_follower_and_retries_later() -> None:
    # Reference: Raft section 5.2 (split votes are resolved by a later election)
    env = cluster(leader=None)
    r = env.raw(1).raft
    env.raw(1).campaign()
    env.process_ready(1)  # persists the self-vote
    for voter in (2, 3):
        r.step(msg(pb.MsgVoteResp, voter, 1, term=1, reject=True))
    assert (r.role, r.term) == (StateType.FOLLOWER, 1)
    env.tick(1, r.randomized_election_timeout)
    assert (r.role, r.term) == (StateType.CANDIDATE, 2)


def test_each_node_votes_at_most_once_per_term() -> None:
    # Reference: Raft section 5.2
    r = lone_raft()
    r.step(msg(pb.MsgVote, 2, 1, term=1, index=1, log_term=1))
    r.step(msg(pb.MsgVote, 3, 1, term=1, index=1, log_term=1))
    r.step(msg(pb.MsgVote, 2, 1, term=1, index=1, log_term=1))  # a retransmission is answered again
    answers = [(m.to, m.reject) for m in take(r)]
    assert answers == [(2, False), (3, True), (2, False)]
    assert r.vote == 2


def test_candidate_steps_down_for_a_leader_of_its_term() -> None:
    # Reference: Raft section 5.2
    r = lone_raft()
    r.become_candidate()
    r.step(msg(pb.MsgApp, 2, 1, term=1, index=1, log_term=1))
    assert (r.role, r.lead, r.term) == (StateType.FOLLOWER, 2, 1)


# -- 5.3: log replication --


def test_entry_commits_once_on_a_majority() -> None:
    # Reference: Raft section 5.3
    env = cluster()
    env.cmd_isolate(_cmd("3"))
    env.raw(1).propose(b"x")
    env.stabilize()
    for nid in (1, 2):
        assert env.nodes[nid].applied == [(3, b"x")]
    assert env.nodes[3].applied == []


def test_no_commit_without_a_majority() -> None:
    # Reference: Raft section 5.3
    env = cluster()
    env.cmd_isolate(_cmd("1"))
    env.raw(1).propose(b"x")
    env.stabilize()
    assert env.raw(1).raft.raft_log.committed == 2
    assert env.nodes[1].applied == []


def test_follower_conflicting_entries_are_replaced() -> None:
    # Reference: Raft section 5.3 (the leader forces followers' logs to duplicate its own)
    r = lone_raft(entries=(1, 1, 1))  # indexes 2..4 of term 1, uncommitted
    r.become_follower(2, 2)
    ents = [pb.Entry(index=3, term=2, data=b"a"), pb.Entry(index=4, term=2, data=b"b")]
    r.step(msg(pb.MsgApp, 2, 1, term=2, index=2, log_term=1, entries=ents, commit=3))
    assert [(e.index, e.term) for e in r.raft_log.all_entries()] == [(2, 1), (3, 2), (4, 2)]
    assert r.raft_log.committed == 3
    [resp] = take(r)
    assert (resp.type, resp.index, resp.reject) == (pb.MsgAppResp, 4, False)


def test_follower_rejects_append_that_does_not_match_and_hints() -> None:
    # Reference: Raft section 5.3 (consistency check; the hint is the paper's optimisation)
    r = lone_raft(entries=(1, 1, 1, 1))  # 2..5 of term 1
    r.become_follower(3, 2)
    r.step(msg(pb.MsgApp, 2, 1, term=3, index=7, log_term=3, commit=1))
    [resp] = take(r)
    # It lacks index 7: hint at its last index 5, whose term (1) is <= 3.
    assert (resp.reject, resp.index, resp.reject_hint, resp.log_term) == (True, 7, 5, 1)


@pytest.mark.parametrize("seed", range(12))
def test_safety_under_random_message_loss(seed: int) -> None:
    # Reference: Raft section 5.3, 5.4 (election safety, log matching, state machine safety)
    rng = Random(seed)
    env = cluster(
        n=5 if seed % 3 == 0 else 3, leader=None, pre_vote=seed % 2 == 0, check_quorum=seed % 4 == 1
    )
    ids = sorted(env.nodes)
    leaders: dict[int, int] = {}
    commits = dict.fromkeys(ids, 0)
    for step in range(1500):
        nid = rng.choice(ids)
        roll = rng.random()
        if roll < 0.2:
            env.raw(nid).tick()
        elif roll < 0.3:
            with contextlib.suppress(ProposalDropped):
                env.raw(nid).propose(b"%d-%d" % (seed, step))
        elif roll < 0.5:
            env.process_ready(nid)
        elif env.queue:
            m = env.queue.pop(rng.randrange(len(env.queue)))  # reordered
            if rng.random() >= 0.15:  # and sometimes lost
                with contextlib.suppress(RaftError):
                    env.raw(m.to).step(m)
        for i in ids:
            r = env.raw(i).raft
            if r.role is StateType.LEADER:
                assert leaders.setdefault(r.term, i) == i, "two leaders in one term"
            assert r.raft_log.committed >= commits[i], "commit index went backwards"
            commits[i] = r.raft_log.committed
    applied = [env.nodes[i].applied for i in ids]
    for a in applied:
        for b in applied:
            n = min(len(a), len(b))
            assert a[:n] == b[:n], "nodes applied different entries at the same index"
    assert max(commits.values()) > 2, "the run should have committed something"


# -- 5.4: safety --


@pytest.mark.parametrize(
    ("cand_term", "cand_index", "granted"),
    [(1, 9, False), (2, 3, False), (2, 4, True), (2, 9, True), (3, 2, True)],
)
def test_vote_only_for_up_to_date_log(cand_term: int, cand_index: int, granted: bool) -> None:
    # Reference: Raft section 5.4.1 (election restriction)
    r = lone_raft(entries=(1, 2, 2))  # last entry: index 4, term 2
    r.step(msg(pb.MsgVote, 2, 1, term=5, index=cand_index, log_term=cand_term))
    [resp] = take(r)
    assert resp.reject is not granted


def test_leader_commits_previous_term_entries_only_with_a_current_term_entry() -> None:
    # Reference: Raft section 5.4.2 (figure 8: never commit an old-term entry by counting replicas)
    r = lone_raft(entries=(1,))  # index 2 of term 1, never committed
    r.become_candidate()
    r.become_leader()  # term 2; appends its empty entry at index 3
    r.step(msg(pb.MsgAppResp, 1, 1, term=2, index=3))  # its own ack, once persisted
    r.step(msg(pb.MsgAppResp, 2, 1, term=2, index=2))
    # Nodes 1 and 2 (a majority) hold index 2, but it is of an earlier term: not committed.
    assert r.trk.committed() == 2
    assert r.raft_log.committed == 1
    r.step(msg(pb.MsgAppResp, 2, 1, term=2, index=3))
    # The current-term entry commits, and the old one with it.
    assert r.raft_log.committed == 3


# -- 6: cluster membership changes --


def test_joint_consensus_needs_both_majorities() -> None:
    # Reference: Raft section 6 (joint consensus: agreement needs majorities of both configurations)
    env = cluster()
    env.add_nodes(1)
    env.raw(1).propose_conf_change(
        pb.ConfChangeV2(changes=_ccs("r3 v4"), transition=pb.ConfChangeTransitionJointExplicit)
    )
    env.stabilize([1, 2, 3])
    leader = env.raw(1).raft
    assert str(leader.trk.config) == "voters=(1 2 4)&&(1 2 3)"
    # 1 and 3 form a majority of the old config but not of the new one (1 2 4).
    env.cmd_cut(_cmd("1 2"))
    env.cmd_cut(_cmd("1 4"))
    committed = leader.raft_log.committed
    env.raw(1).propose(b"x")
    env.stabilize([1, 2, 3])
    assert leader.raft_log.committed == committed
    env.cmd_heal(_cmd(""))
    env.tick(1, leader.heartbeat_timeout)  # a heartbeat round re-sends what 2 missed
    env.stabilize([1, 2, 3])
    # 1 and 2 are a majority of both halves.
    assert leader.raft_log.committed > committed


def test_only_one_conf_change_may_be_pending() -> None:
    # Reference: Raft section 6 (thesis 4.1: one change at a time)
    env = cluster()
    env.raw(1).propose_conf_change(pb.ConfChange(type=pb.ConfChangeAddLearnerNode, node_id=4))
    env.raw(1).propose_conf_change(pb.ConfChange(type=pb.ConfChangeAddLearnerNode, node_id=5))
    ents = env.raw(1).raft.raft_log.unstable_entries()
    assert [e.type for e in ents] == [pb.EntryConfChange, pb.EntryNormal]
    env.stabilize()
    assert env.raw(1).status().conf_state.learners == [4]


def test_removed_leader_steps_down_and_others_continue() -> None:
    # Reference: Raft section 6 (a leader removed from the configuration steps down)
    env = cluster()
    env.raw(1).propose_conf_change(pb.ConfChange(type=pb.ConfChangeRemoveNode, node_id=1))
    env.stabilize()
    assert env.raw(1).raft.role is StateType.FOLLOWER
    with pytest.raises(ProposalDropped):
        env.raw(1).propose(b"x")  # no leader known any more
    env.tick(2, env.raw(2).raft.randomized_election_timeout)
    env.stabilize()
    assert env.raw(2).raft.role is StateType.LEADER
    env.raw(2).propose(b"after")
    env.stabilize()
    assert env.nodes[3].applied[-1][1] == b"after"


# -- 6.4 (thesis): ReadIndex --


def test_read_index_needs_a_heartbeat_quorum() -> None:
    # Reference: Raft section 6.4 (thesis: ReadIndex)
    env = cluster()
    env.raw(1).read_index(b"r")
    rd = env.raw(1).ready()
    assert rd.read_states == ()
    heartbeats = [m for m in rd.messages if m.type == pb.MsgHeartbeat]
    assert {m.to for m in heartbeats} == {2, 3} and all(m.context == b"r" for m in heartbeats)
    env.raw(1).advance(rd)
    env.raw(1).step(msg(pb.MsgHeartbeatResp, 2, 1, term=1, context=b"r"))
    rd = env.raw(1).ready()
    assert [(s.index, s.request_ctx) for s in rd.read_states] == [(2, b"r")]


def test_read_index_waits_for_a_commit_in_the_leaders_term() -> None:
    # Reference: Raft section 6.4 (thesis: a new leader's commit index may be stale)
    env = cluster(leader=None)
    env.raw(1).campaign()
    env.raw(1).campaign()  # term 2: the boot snapshot's entry (term 1) is not of the leader's term
    for _ in range(3):  # election done, the leader's empty entry not yet committed
        for i in (1, 2, 3):
            env.process_ready(i)
        for i in (1, 2, 3):
            env.deliver_msgs(i, only_type="MsgVote")
            env.deliver_msgs(i, only_type="MsgVoteResp")
    leader = env.raw(1).raft
    assert (leader.role, leader.term, leader.raft_log.committed) == (StateType.LEADER, 2, 1)
    env.raw(1).read_index(b"early")
    assert not any(m.type == pb.MsgHeartbeat for m in leader.msgs)
    env.stabilize()
    assert env.raw(1).raft.raft_log.committed == 2
    # Answered once the term's first entry (index 2) committed, at that index.
    assert env.nodes[1].read_states == [(2, b"early")]


def test_partitioned_leader_serves_no_reads() -> None:
    # Reference: Raft section 6.4 (a deposed leader must not answer reads)
    env = cluster()
    env.cmd_isolate(_cmd("1"))
    env.raw(1).read_index(b"r")
    env.stabilize()
    assert env.raw(1).raft.read_states == []
    assert env.raw(1).raft.read_only.queue == [b"r"]


# -- the Ready contract --


def test_ready_separates_messages_to_send_after_persisting() -> None:
    env = cluster()
    env.raw(1).propose(b"x")
    rd = env.raw(1).ready()
    assert {m.type for m in rd.messages} == {pb.MsgApp}
    assert rd.persisted_messages == ()
    assert rd.must_sync and [e.data for e in rd.entries] == [b"x"]
    env.raw(1).advance(rd)
    for m in rd.messages:
        env.raw(m.to).step(m)
    rd2 = env.raw(2).ready()
    assert rd2.messages == ()
    assert [(m.type, sender(m)) for m in rd2.persisted_messages] == [(pb.MsgAppResp, 2)]
    with pytest.raises(RuntimeError):
        env.raw(2).ready()  # advance() must come first


def _cmd(args: str):  # type: ignore[no-untyped-def]
    from .interaction import parse_command

    return parse_command("x " + args, [])


def _ccs(s: str) -> list[pb.ConfChangeSingle]:
    from etcdpy.raft import conf_changes_from_string

    return conf_changes_from_string(s)
