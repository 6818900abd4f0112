"""The role-specific step and tick functions, swapped in by Raft.become_*."""

from __future__ import annotations

from typing import TYPE_CHECKING

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft.errors import ProposalDropped
from etcdpy.raft.follower import handle_append_entries, handle_heartbeat, handle_snapshot
from etcdpy.raft.messages import NONE, new_message, sender
from etcdpy.raft.progress import ProgressState
from etcdpy.raft.quorum import VoteResult
from etcdpy.raft.reconfig import check_conf_change_proposal
from etcdpy.raft.status import CampaignType, ReadState, StateType

if TYPE_CHECKING:
    from etcdpy.raft.raft import Raft

__all__ = ["step_candidate", "step_follower", "step_leader", "tick_election", "tick_heartbeat"]


# -- ticks --


def tick_election(r: Raft) -> None:
    """Tick_election (followers, candidates) starts an election when the timeout passes."""
    r.election_elapsed += 1
    if r.promotable() and r.past_election_timeout():
        r.election_elapsed = 0
        r.step(new_message(pb.MsgHup, r.id))


def tick_heartbeat(r: Raft) -> None:
    """Tick_heartbeat (leaders) sends heartbeats and runs the check-quorum round."""
    r.heartbeat_elapsed += 1
    r.election_elapsed += 1
    if r.election_elapsed >= r.election_timeout:
        r.election_elapsed = 0
        if r.check_quorum:
            r.step(new_message(pb.MsgCheckQuorum, r.id))
        # A transfer that did not finish within an election timeout is abandoned.
        if r.role is StateType.LEADER and r.lead_transferee != NONE:
            r.abort_leader_transfer()
    if r.role is not StateType.LEADER:
        return
    if r.heartbeat_elapsed >= r.heartbeat_timeout:
        r.heartbeat_elapsed = 0
        r.step(new_message(pb.MsgBeat, r.id))


# -- leader --


def step_leader(r: Raft, m: pb.Message) -> None:
    """Step_leader handles a message as leader (terms already checked)."""
    t = m.type
    if t == pb.MsgBeat:
        r.bcast_heartbeat()
        return
    if t == pb.MsgCheckQuorum:
        if not r.trk.quorum_active():
            r.logger.warning("%d stepped down to follower since quorum is not active", r.id)
            r.become_follower(r.term, NONE)
        # Start the next round: everyone must be heard from again.
        for i, peer in r.trk.progress.items():
            if i != r.id:
                peer.recent_active = False
        return
    if t == pb.MsgProp:
        _leader_propose(r, m)
        return
    if t == pb.MsgReadIndex:
        _leader_read_index(r, m)
        return

    frm = sender(m)
    pr = r.trk.progress.get(frm)
    if pr is None:
        r.logger.debug("%d no progress available for %d", r.id, frm)
        return
    if t == pb.MsgAppResp:
        _leader_append_response(r, m, frm)
    elif t == pb.MsgHeartbeatResp:
        pr.recent_active = True
        pr.msg_app_flow_paused = False
        if pr.state is ProgressState.REPLICATE and pr.inflights.full():
            # The follower is alive but acknowledged nothing: a MsgApp may have been
            # lost. Free a slot so replication cannot stall for good.
            pr.inflights.free_first_one()
        if pr.match < r.raft_log.last_index() or pr.state is ProgressState.PROBE:
            r.send_append(frm)
        if not m.context:
            return
        acks = r.read_only.recv_ack(frm, m.context)
        if acks is None or r.trk.config.voters.vote_result(acks) is not VoteResult.WON:
            return
        for rs in r.read_only.advance(m.context):
            r.response_to_read_index_req(rs.req, rs.index)
    elif t == pb.MsgSnapStatus:
        if pr.state is not ProgressState.SNAPSHOT:
            return
        if m.reject:
            # The snapshot failed to arrive: probe again from match (may resend a snapshot).
            pr.pending_snapshot = 0
            r.logger.debug(
                "%d snapshot failed, resumed sending replication messages to %d [%s]", r.id, frm, pr
            )
        else:
            r.logger.debug(
                "%d snapshot succeeded, resumed sending replication messages to %d [%s]", r.id, frm, pr
            )
        pr.become_probe()
        # Wait for the follower's MsgAppResp (or a heartbeat response) before probing.
        pr.msg_app_flow_paused = True
    elif t == pb.MsgUnreachable:
        # The transport failed to deliver a MsgApp: the follower may have missed it.
        if pr.state is ProgressState.REPLICATE:
            pr.become_probe()
        r.logger.debug("%d failed to send message to %d because it is unreachable [%s]", r.id, frm, pr)
    elif t == pb.MsgTransferLeader:
        _leader_transfer(r, frm)


def _leader_propose(r: Raft, m: pb.Message) -> None:
    if not m.entries:
        raise AssertionError(f"{r.id} stepped empty MsgProp")
    if r.id not in r.trk.progress:
        # This leader is no longer in the configuration it leads (a conf change removed it).
        raise ProposalDropped("leader is not a member of the configuration")
    if r.lead_transferee != NONE:
        r.logger.debug(
            "%d [term %d] transfer leadership to %d is in progress; dropping proposal",
            r.id,
            r.term,
            r.lead_transferee,
        )
        raise ProposalDropped("leadership transfer in progress")
    check_conf_change_proposal(r, m)
    r.append_entry(list(m.entries))
    r.bcast_append()


def _leader_read_index(r: Raft, m: pb.Message) -> None:
    if r.trk.is_singleton():
        # Nobody else can be leader: the commit index is current.
        r.response_to_read_index_req(m, r.raft_log.committed)
        return
    if not r.committed_entry_in_current_term():
        # Until this leader commits an entry of its term its commit index may lag
        # the previous leader's; answer once it has (see Raft thesis 6.4).
        r.pending_read_index_messages.append(m)
        return
    send_read_index_confirmation(r, m)


def send_read_index_confirmation(r: Raft, m: pb.Message) -> None:
    """Send_read_index_confirmation queues the read at the commit index and starts a heartbeat round.

    A read forwarded by a voter that, with the leader, forms a quorum (any voter of a
    3-member cluster) is answered at once, without the round.  The forward itself
    confirms the leader: the voter sent it after the read began, while it followed
    this leader, so it had joined no newer term's quorum then; the leader has not
    either; and a newer leader, or anything it committed, needs a quorum that
    meets theirs.  The forward vouches for its own read only: requests queued
    before it may have begun after it was sent, so they keep their heartbeat round.
    """
    ctx = m.entries[0].data
    frm = sender(m)
    if frm not in (NONE, r.id) and r.trk.config.voters.vote_result({r.id: True, frm: True}) is VoteResult.WON:
        r.response_to_read_index_req(m, r.raft_log.committed)
        return
    r.read_only.add_request(r.raft_log.committed, m)
    r.read_only.recv_ack(r.id, ctx)
    r.bcast_heartbeat_with_ctx(ctx)


def release_pending_read_index_messages(r: Raft) -> None:
    """Release_pending_read_index_messages serves reads that waited for a commit in this term."""
    if not r.pending_read_index_messages:
        return
    if not r.committed_entry_in_current_term():
        r.logger.error("pending MsgReadIndex should be released only after first commit in current term")
        return
    pending, r.pending_read_index_messages = r.pending_read_index_messages, []
    for m in pending:
        send_read_index_confirmation(r, m)


def _leader_append_response(r: Raft, m: pb.Message, frm: int) -> None:
    pr = r.trk.progress[frm]
    pr.recent_active = True
    if m.reject:
        r.logger.debug(
            "%d received MsgAppResp(rejected, hint: (index %d, term %d)) from %d for index %d",
            r.id,
            m.reject_hint,
            m.log_term,
            frm,
            m.index,
        )
        next_probe = m.reject_hint
        if m.log_term > 0:
            # The follower told us its term at reject_hint: skip our entries of
            # larger terms too, which cannot match either.
            next_probe, _ = r.raft_log.find_conflict_by_term(m.reject_hint, m.log_term)
        if pr.maybe_decr_to(m.index, next_probe):
            r.logger.debug("%d decreased progress of %d to [%s]", r.id, frm, pr)
            if pr.state is ProgressState.REPLICATE:
                pr.become_probe()
            r.send_append(frm)
        return
    old_paused = pr.is_paused()
    if not pr.maybe_update(m.index):
        return
    if pr.state is ProgressState.PROBE:
        pr.become_replicate()
    elif pr.state is ProgressState.SNAPSHOT and pr.match + 1 >= r.raft_log.first_index():
        # The follower caught up through the snapshot and what followed it: the
        # log from here on is available, so replicate normally.
        r.logger.debug(
            "%d recovered from needing snapshot, resumed sending replication messages to %d [%s]",
            r.id,
            frm,
            pr,
        )
        pr.become_probe()
        pr.become_replicate()
    elif pr.state is ProgressState.REPLICATE:
        pr.inflights.free_le(m.index)
    if r.maybe_commit():
        release_pending_read_index_messages(r)
        r.bcast_append()
    elif frm != r.id and old_paused:
        # The follower was paused; now that it acknowledged, send what it lacks
        # (an empty MsgApp at least updates its commit index).
        r.send_append(frm)
    if frm != r.id:
        # Flow control freed room: fill the window with as many messages as allowed.
        while r.maybe_send_append(frm, False):
            pass
        if frm == r.lead_transferee and pr.match == r.raft_log.last_index():
            r.logger.info("%d sent MsgTimeoutNow to %d after received MsgAppResp", r.id, frm)
            r.send_timeout_now(frm)


def _leader_transfer(r: Raft, transferee: int) -> None:
    pr = r.trk.progress[transferee]
    if pr.is_learner:
        r.logger.debug("%d is learner. Ignored transferring leadership", transferee)
        return
    if r.lead_transferee != NONE:
        if r.lead_transferee == transferee:
            r.logger.info(
                "%d [term %d] transfer leadership to %d is in progress, ignores request to same node %d",
                r.id,
                r.term,
                transferee,
                transferee,
            )
            return
        r.abort_leader_transfer()
        r.logger.info("%d [term %d] abort previous transferring leadership to %d", r.id, r.term, transferee)
    if transferee == r.id:
        r.logger.debug("%d is already leader. Ignored transferring leadership to self", r.id)
        return
    r.logger.info("%d [term %d] starts to transfer leadership to %d", r.id, r.term, transferee)
    # The transfer must finish within one election timeout (see tick_heartbeat).
    r.election_elapsed = 0
    r.lead_transferee = transferee
    if pr.match == r.raft_log.last_index():
        r.send_timeout_now(transferee)
        r.logger.info(
            "%d sends MsgTimeoutNow to %d immediately as %d already has up-to-date log",
            r.id,
            transferee,
            transferee,
        )
    else:
        # Catch the transferee up first; MsgTimeoutNow follows its MsgAppResp.
        r.send_append(transferee)


# -- candidate and pre-candidate --


def step_candidate(r: Raft, m: pb.Message) -> None:
    """Step_candidate handles a message as (pre-)candidate."""
    # A pre-candidate counts pre-votes, a candidate votes; the other kind of
    # response is a stale answer from an earlier election.
    my_vote_resp = pb.MsgPreVoteResp if r.role is StateType.PRE_CANDIDATE else pb.MsgVoteResp
    t = m.type
    if t == pb.MsgProp:
        r.logger.info("%d no leader at term %d; dropping proposal", r.id, r.term)
        raise ProposalDropped("no leader")
    if t in (pb.MsgApp, pb.MsgHeartbeat, pb.MsgSnap):
        # Someone else won this term (m.term == r.term here).
        r.become_follower(m.term, sender(m))
        if t == pb.MsgApp:
            handle_append_entries(r, m)
        elif t == pb.MsgHeartbeat:
            handle_heartbeat(r, m)
        else:
            handle_snapshot(r, m)
    elif t == my_vote_resp:
        granted, rejected, res = r.poll(sender(m), t, not m.reject)
        r.logger.info(
            "%d has received %d %s votes and %d vote rejections",
            r.id,
            granted,
            pb.MessageType.Name(t),
            rejected,
        )
        if res is VoteResult.WON:
            if r.role is StateType.PRE_CANDIDATE:
                r.campaign(CampaignType.ELECTION)
            else:
                r.become_leader()
                r.bcast_append()
        elif res is VoteResult.LOST:
            # pb.MsgPreVoteResp carries a higher term on rejection: step() already
            # moved us to it; otherwise we stay in our term, as a follower.
            r.become_follower(r.term, NONE)
    elif t == pb.MsgTimeoutNow:
        r.logger.debug("%d [term %d state %s] ignored MsgTimeoutNow from %d", r.id, r.term, r.role, sender(m))


# -- follower --


def step_follower(r: Raft, m: pb.Message) -> None:
    """Step_follower handles a message as follower."""
    t = m.type
    if t == pb.MsgProp:
        if r.lead == NONE:
            r.logger.info("%d no leader at term %d; dropping proposal", r.id, r.term)
            raise ProposalDropped("no leader")
        if r.disable_proposal_forwarding:
            r.logger.info(
                "%d not forwarding to leader %d at term %d; dropping proposal", r.id, r.lead, r.term
            )
            raise ProposalDropped("proposal forwarding disabled")
        m.to = r.lead
        r.send(m)
    elif t == pb.MsgApp:
        r.election_elapsed = 0
        r.lead = sender(m)
        handle_append_entries(r, m)
    elif t == pb.MsgHeartbeat:
        r.election_elapsed = 0
        r.lead = sender(m)
        handle_heartbeat(r, m)
    elif t == pb.MsgSnap:
        r.election_elapsed = 0
        r.lead = sender(m)
        handle_snapshot(r, m)
    elif t == pb.MsgTransferLeader:
        if r.lead == NONE:
            r.logger.info("%d no leader at term %d; dropping leader transfer msg", r.id, r.term)
            return
        m.to = r.lead
        r.send(m)
    elif t == pb.MsgTimeoutNow:
        r.logger.info(
            "%d [term %d] received MsgTimeoutNow from %d and starts an election to get leadership",
            r.id,
            r.term,
            sender(m),
        )
        # A transfer never uses pre-vote: the leader asked for it, so it cannot be disruptive.
        r.hup(CampaignType.TRANSFER)
    elif t == pb.MsgReadIndex:
        if r.lead == NONE:
            r.logger.info("%d no leader at term %d; dropping index reading msg", r.id, r.term)
            raise ProposalDropped("no leader to serve the read index request")
        m.to = r.lead
        r.send(m)
    elif t == pb.MsgReadIndexResp:
        if len(m.entries) != 1:
            r.logger.error(
                "%d invalid format of MsgReadIndexResp from %d, entries count: %d",
                r.id,
                sender(m),
                len(m.entries),
            )
            return
        r.read_states.append(ReadState(m.index, m.entries[0].data))
