"""Raft: the consensus state machine of one node.

The role-specific behaviour lives in roles.py as plain functions; a role change
swaps `step_fn` and `tick_fn` (become_follower sets step_follower, and so on).
`step()` applies the term rules every role shares, then dispatches.
"""

from __future__ import annotations

from collections.abc import Callable
from random import Random

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft import roles
from etcdpy.raft.confchange import restore
from etcdpy.raft.config import RaftConfig
from etcdpy.raft.errors import ErrSnapshotTemporarilyUnavailable, ProposalDropped, StorageError
from etcdpy.raft.inflights import Inflights
from etcdpy.raft.log import RaftLog
from etcdpy.raft.messages import CAMPAIGN_TRANSFER, NONE, sender, vote_resp_msg_type
from etcdpy.raft.progress import Progress
from etcdpy.raft.quorum import VoteResult
from etcdpy.raft.read_only import ReadOnly
from etcdpy.raft.status import CampaignType, ReadState, SoftState, StateType
from etcdpy.raft.storage import NO_LIMIT
from etcdpy.raft.tracker import ProgressTracker

_REJECTED_VOTE_FMT = (
    "%d [logterm: %d, index: %d, vote: %d] rejected %s from %d [logterm: %d, index: %d] at term %d"
)
# Responses whose content depends on local state that must be durable first:
# they are held back until the Ready that carries that state has been persisted.
_AFTER_PERSIST = frozenset({pb.MsgAppResp, pb.MsgVoteResp, pb.MsgPreVoteResp})


def _normalized(cs: pb.ConfState) -> tuple[object, ...]:
    return (
        sorted(cs.voters),
        sorted(cs.voters_outgoing),
        sorted(cs.learners),
        sorted(cs.learners_next),
        cs.auto_leave,
    )


StepFn = Callable[["Raft", pb.Message], None]
TickFn = Callable[["Raft"], None]


class Raft:
    """Raft is the protocol state of one node. Use it through RawNode."""

    def __init__(self, c: RaftConfig) -> None:
        c.validate()
        assert c.rand is not None  # filled in by validate()
        self.id = c.id
        self.logger = c.logger
        self.rand: Random = c.rand
        self.raft_log = RaftLog(c.storage, c.max_committed_size_per_ready)
        hs, cs = c.storage.initial_state()
        self.max_msg_size = c.max_size_per_msg
        self.max_uncommitted_size = c.max_uncommitted_entries_size
        self.trk = ProgressTracker(c.max_inflight_msgs, c.max_inflight_bytes)
        self.election_timeout = c.election_tick
        self.heartbeat_timeout = c.heartbeat_tick
        self.check_quorum = c.check_quorum
        self.pre_vote = c.pre_vote
        self.disable_proposal_forwarding = c.disable_proposal_forwarding

        self.term = 0
        self.vote = NONE  # the candidate voted for in `term`, or NONE
        self.lead = NONE
        self.role = StateType.FOLLOWER
        self.is_learner = False
        # msgs may be sent at once; msgs_after_append only once the state they
        # report (entries, term, vote) is durable. See Ready.
        self.msgs: list[pb.Message] = []
        self.msgs_after_append: list[pb.Message] = []
        self.read_states: list[ReadState] = []
        self.read_only = ReadOnly()
        # ReadIndex requests that arrived before this leader committed an entry of its term.
        self.pending_read_index_messages: list[pb.Message] = []
        self.lead_transferee = NONE
        # pending_conf_index: a conf change at an index above applied may still be
        # in the log; no new one is accepted until it is applied.
        self.pending_conf_index = 0
        # uncommitted_size: payload bytes of the leader's uncommitted entries.
        self.uncommitted_size = 0
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = 0
        self.step_fn: StepFn = roles.step_follower
        self.tick_fn: TickFn = roles.tick_election

        restore(self.trk, self.raft_log.last_index(), cs)
        pr = self.trk.progress.get(self.id)
        self.is_learner = pr is not None and pr.is_learner
        cs_now = self.trk.conf_state()
        if _normalized(cs_now) != _normalized(cs):
            raise AssertionError(f"conf state {cs} restored as {cs_now}")
        if hs != pb.HardState():
            self.load_state(hs)
        if c.applied > 0:
            self.raft_log.applied_to(c.applied)
        self.become_follower(self.term, NONE)
        self.logger.info(
            "newRaft %d [peers: [%s], term: %d, commit: %d, applied: %d, lastindex: %d, lastterm: %d]",
            self.id,
            ",".join(str(i) for i in self.trk.voter_nodes()),
            self.term,
            self.raft_log.committed,
            self.raft_log.applied,
            self.raft_log.last_index(),
            self.raft_log.last_term(),
        )

    # -- state snapshots for Ready / Status --

    def soft_state(self) -> SoftState:
        """Soft_state is the volatile state: leader and role."""
        return SoftState(self.lead, self.role)

    def hard_state(self) -> pb.HardState:
        """Hard_state is the state that must be persisted: term, vote, commit."""
        return pb.HardState(term=self.term, vote=self.vote, commit=self.raft_log.committed)

    def load_state(self, hs: pb.HardState) -> None:
        """Load_state restores a persisted HardState."""
        if hs.commit > self.raft_log.last_index():
            raise AssertionError(
                f"{self.id} state.commit {hs.commit} is out of range "
                f"[{self.raft_log.committed}, {self.raft_log.last_index()}]"
            )
        # A snapshot newer than the saved commit index is itself committed: keep the larger.
        self.raft_log.committed = max(hs.commit, self.raft_log.committed)
        self.term = hs.term
        self.vote = hs.vote

    # -- sending --

    def send(self, m: pb.Message) -> None:
        """Send queues m for delivery, stamping the sender and (for most types) the term."""
        if sender(m) == NONE:
            # A forwarded MsgTransferLeader keeps its sender: it names the transferee.
            setattr(m, "from", self.id)  # `from` is a Python keyword
        t = m.type
        if t in (pb.MsgVote, pb.MsgVoteResp, pb.MsgPreVote, pb.MsgPreVoteResp):
            # Vote messages carry the term being campaigned for, set by the caller.
            if m.term == 0:
                raise AssertionError(f"term should be set when sending {pb.MessageType.Name(t)}")
        else:
            if m.term != 0:
                raise AssertionError(f"term should not be set when sending {pb.MessageType.Name(t)}")
            # Proposals and read requests forwarded to the leader stay term-less
            # (local messages), so a leader accepts them whatever its term.
            if t != pb.MsgProp and t != pb.MsgReadIndex:
                m.term = self.term
        if t in _AFTER_PERSIST:
            self.msgs_after_append.append(m)
        else:
            if m.to == self.id:
                raise AssertionError(
                    f"message should not be self-addressed when sending {pb.MessageType.Name(t)}"
                )
            self.msgs.append(m)

    def send_append(self, to: int) -> None:
        """Send_append sends the entries (or a snapshot) `to` lacks, or an empty MsgApp."""
        self.maybe_send_append(to, True)

    def maybe_send_append(self, to: int, send_if_empty: bool) -> bool:
        """Maybe_send_append sends one MsgApp (or MsgSnap) to `to` if flow control allows.

        Returns whether a message was sent. With send_if_empty False, nothing is
        sent when there are no new entries (used to fill the inflight window).
        """
        pr = self.trk.progress[to]
        if pr.is_paused():
            return False
        log = self.raft_log
        prev_index = pr.next - 1
        try:
            prev_term = log.term(prev_index)
            ents = log.entries(pr.next, self.max_msg_size)
        except StorageError:
            return self._maybe_send_snapshot(to, pr)
        if not ents and not send_if_empty:
            return False
        if ents:
            last = ents[-1].index
            # Byte accounting only matters when the inflight window is limited in bytes.
            nbytes = sum([len(e.data) for e in ents]) if self.trk.max_inflight_bytes else 0
            pr.sent_entries(last, nbytes)
        self.send(
            pb.Message(
                type=pb.MsgApp,
                to=to,
                index=prev_index,
                log_term=prev_term,
                entries=ents,
                commit=log.committed,
            )
        )
        return True

    def _maybe_send_snapshot(self, to: int, pr: Progress) -> bool:
        # The entries `to` needs are compacted: only a snapshot can catch it up.
        if not pr.recent_active:
            self.logger.debug("ignore sending snapshot to %d since it is not recently active", to)
            return False
        try:
            snapshot = self.raft_log.snapshot()
        except ErrSnapshotTemporarilyUnavailable:
            self.logger.debug(
                "%d failed to send snapshot to %d because snapshot is temporarily unavailable", self.id, to
            )
            return False
        if snapshot.metadata.index == 0:
            raise AssertionError("need non-empty snapshot")
        sindex, sterm = snapshot.metadata.index, snapshot.metadata.term
        self.logger.debug(
            "%d [firstindex: %d, commit: %d] sent snapshot[index: %d, term: %d] to %d [%s]",
            self.id,
            self.raft_log.first_index(),
            self.raft_log.committed,
            sindex,
            sterm,
            to,
            pr,
        )
        pr.become_snapshot(sindex)
        self.logger.debug("%d paused sending replication messages to %d [%s]", self.id, to, pr)
        self.send(pb.Message(type=pb.MsgSnap, to=to, snapshot=snapshot))
        return True

    def send_heartbeat(self, to: int, ctx: bytes) -> None:
        """Send_heartbeat sends a heartbeat carrying a commit index `to` is known to hold."""
        # A follower may not have the leader's committed entries yet; sending the
        # leader's commit could make it commit an index past the end of its log.
        commit = min(self.trk.progress[to].match, self.raft_log.committed)
        self.send(pb.Message(type=pb.MsgHeartbeat, to=to, commit=commit, context=ctx))

    def bcast_append(self) -> None:
        """Bcast_append sends MsgApp (possibly empty) to every peer."""
        for i in self.trk.sorted_ids():
            if i != self.id:
                self.send_append(i)

    def bcast_heartbeat(self) -> None:
        """Bcast_heartbeat sends heartbeats carrying the newest pending read context."""
        self.bcast_heartbeat_with_ctx(self.read_only.last_pending_request_ctx())

    def bcast_heartbeat_with_ctx(self, ctx: bytes) -> None:
        """Bcast_heartbeat_with_ctx sends a heartbeat with ctx to every peer."""
        for i in self.trk.sorted_ids():
            if i != self.id:
                self.send_heartbeat(i, ctx)

    def send_timeout_now(self, to: int) -> None:
        """Send_timeout_now tells `to` to campaign at once (leadership transfer)."""
        self.send(pb.Message(type=pb.MsgTimeoutNow, to=to))

    # -- commit, append, apply --

    def maybe_commit(self) -> bool:
        """Maybe_commit advances the commit index to what a quorum holds, if of the current term."""
        return self.raft_log.maybe_commit(self.trk.committed(), self.term)

    def append_entry(self, ents: list[pb.Entry]) -> None:
        """Append_entry appends new entries to the leader's log (raises ProposalDropped if too big)."""
        li = self.raft_log.last_index()
        for i, e in enumerate(ents, 1):
            e.term = self.term
            e.index = li + i
        if not self.increase_uncommitted_size(ents):
            self.logger.warning(
                "%d appending new entries to log would exceed uncommitted entry size limit; "
                "dropping proposal",
                self.id,
            )
            raise ProposalDropped("uncommitted entry size limit exceeded")
        li = self.raft_log.append(ents)
        # The leader acknowledges its own entries like a follower does: only once
        # they are durable (this response is stepped back in after persisting).
        self.send(pb.Message(type=pb.MsgAppResp, to=self.id, index=li))

    def increase_uncommitted_size(self, ents: list[pb.Entry]) -> bool:
        """Increase_uncommitted_size accounts for new entries; False if over the limit.

        An empty entry (like the leader's first entry of a term) is always accepted,
        as is anything when nothing is uncommitted, so progress is always possible.
        """
        if self.max_uncommitted_size >= NO_LIMIT:
            return True  # no limit: nothing to account
        s = sum([len(e.data) for e in ents])
        if self.uncommitted_size > 0 and s > 0 and self.uncommitted_size + s > self.max_uncommitted_size:
            return False
        self.uncommitted_size += s
        return True

    def reduce_uncommitted_size(self, ents: list[pb.Entry]) -> None:
        """Reduce_uncommitted_size accounts for entries that were committed (and applied)."""
        if self.uncommitted_size == 0:
            return  # fast path for followers, which do not track it
        s = sum([len(e.data) for e in ents])
        self.uncommitted_size = max(0, self.uncommitted_size - s)

    def applied_to(self, index: int) -> None:
        """Applied_to records application progress; a leader may then leave a joint config."""
        new_applied = max(index, self.raft_log.applied)
        self.raft_log.applied_to(new_applied)
        if (
            self.trk.config.auto_leave
            and new_applied >= self.pending_conf_index
            and self.role is StateType.LEADER
        ):
            # An empty ConfChangeV2 leaves the joint configuration. It is never
            # refused for its size, but is dropped during a leadership transfer;
            # then it is retried after the next application of entries.
            m = pb.Message(type=pb.MsgProp, entries=[pb.Entry(type=pb.EntryConfChangeV2)])
            try:
                self.step(m)
            except ProposalDropped as err:
                self.logger.debug(
                    "not initiating automatic transition out of joint configuration %s: %s",
                    self.trk.config,
                    err,
                )
            else:
                self.logger.info(
                    "initiating automatic transition out of joint configuration %s", self.trk.config
                )

    # -- role transitions --

    def reset(self, term: int) -> None:
        """Reset clears the per-term state for a role change into `term`."""
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.reset_randomized_election_timeout()
        self.abort_leader_transfer()
        self.trk.reset_votes()
        last = self.raft_log.last_index()
        t = self.trk
        for i, pr in t.progress.items():
            t.progress[i] = Progress(
                last + 1,
                Inflights(t.max_inflight, t.max_inflight_bytes),
                match=last if i == self.id else 0,
                is_learner=pr.is_learner,
            )
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly()

    def become_follower(self, term: int, lead: int) -> None:
        """Become_follower follows `lead` (NONE if unknown) in `term`."""
        self.step_fn = roles.step_follower
        self.reset(term)
        self.tick_fn = roles.tick_election
        self.lead = lead
        self.role = StateType.FOLLOWER
        self.logger.info("%d became follower at term %d", self.id, self.term)

    def become_candidate(self) -> None:
        """Become_candidate starts an election in the next term, voting for itself."""
        if self.role is StateType.LEADER:
            raise AssertionError("invalid transition [leader -> candidate]")
        self.step_fn = roles.step_candidate
        self.reset(self.term + 1)
        self.tick_fn = roles.tick_election
        self.vote = self.id
        self.role = StateType.CANDIDATE
        self.logger.info("%d became candidate at term %d", self.id, self.term)

    def become_pre_candidate(self) -> None:
        """Become_pre_candidate polls the voters without changing term or vote."""
        if self.role is StateType.LEADER:
            raise AssertionError("invalid transition [leader -> pre-candidate]")
        # The term and vote stay: a pre-election must not disturb anyone.
        self.step_fn = roles.step_candidate
        self.trk.reset_votes()
        self.tick_fn = roles.tick_election
        self.lead = NONE
        self.role = StateType.PRE_CANDIDATE
        self.logger.info("%d became pre-candidate at term %d", self.id, self.term)

    def become_leader(self) -> None:
        """Become_leader takes over, appending an empty entry to commit earlier terms' entries."""
        if self.role is StateType.FOLLOWER:
            raise AssertionError("invalid transition [follower -> leader]")
        self.step_fn = roles.step_leader
        self.reset(self.term)
        self.tick_fn = roles.tick_heartbeat
        self.lead = self.id
        self.role = StateType.LEADER
        self.trk.progress[self.id].become_replicate()
        self.trk.progress[self.id].recent_active = True
        # Conservatively assume the log may hold an unapplied conf change.
        self.pending_conf_index = self.raft_log.last_index()
        self.append_entry([pb.Entry()])
        self.logger.info("%d became leader at term %d", self.id, self.term)

    def abort_leader_transfer(self) -> None:
        """Abort_leader_transfer forgets an ongoing leadership transfer."""
        self.lead_transferee = NONE

    # -- elections --

    def promotable(self) -> bool:
        """Promotable says whether this node may become leader (a voter, no snapshot pending)."""
        pr = self.trk.progress.get(self.id)
        return pr is not None and not pr.is_learner and not self.raft_log.has_pending_snapshot()

    def has_unapplied_conf_changes(self) -> bool:
        """Has_unapplied_conf_changes says whether a committed conf change awaits application."""
        log = self.raft_log
        if log.applied >= log.committed:
            return False
        ents = log.slice(log.applied + 1, log.committed + 1, NO_LIMIT)
        return any(e.type != pb.EntryNormal for e in ents)

    def hup(self, t: CampaignType) -> None:
        """Hup starts an election of kind t, if this node may."""
        if self.role is StateType.LEADER:
            self.logger.debug("%d ignoring MsgHup because already leader", self.id)
            return
        if not self.promotable():
            self.logger.warning("%d is unpromotable and can not campaign", self.id)
            return
        if self.has_unapplied_conf_changes():
            # The election outcome might depend on a configuration not yet in force.
            self.logger.warning(
                "%d cannot campaign at term %d since there are still pending configuration changes to apply",
                self.id,
                self.term,
            )
            return
        self.logger.info("%d is starting a new election at term %d", self.id, self.term)
        self.campaign(t)

    def campaign(self, t: CampaignType) -> None:
        """Campaign becomes (pre-)candidate and asks every voter for its vote."""
        if t is CampaignType.PRE_ELECTION:
            self.become_pre_candidate()
            vote_msg = pb.MsgPreVote
            term = self.term + 1  # the term it would campaign in
        else:
            self.become_candidate()
            vote_msg = pb.MsgVote
            term = self.term
        resp_type = vote_resp_msg_type(vote_msg)
        last_index, last_term = self.raft_log.last_index(), self.raft_log.last_term()
        for i in self.trk.voter_nodes():
            if i == self.id:
                # Our own vote counts once our term and vote are durable.
                self.send(pb.Message(type=resp_type, to=i, term=term))
                continue
            self.logger.info(
                "%d [logterm: %d, index: %d] sent %s request to %d at term %d",
                self.id,
                last_term,
                last_index,
                pb.MessageType.Name(vote_msg),
                i,
                self.term,
            )
            ctx = CAMPAIGN_TRANSFER if t is CampaignType.TRANSFER else b""
            self.send(
                pb.Message(type=vote_msg, to=i, term=term, index=last_index, log_term=last_term, context=ctx)
            )

    def poll(self, i: int, t: pb.MessageType, granted: bool) -> tuple[int, int, VoteResult]:
        """Poll records i's vote and returns (granted, rejected, result)."""
        if granted:
            self.logger.info(
                "%d received %s from %d at term %d", self.id, pb.MessageType.Name(t), i, self.term
            )
        else:
            self.logger.info(
                "%d received %s rejection from %d at term %d", self.id, pb.MessageType.Name(t), i, self.term
            )
        self.trk.record_vote(i, granted)
        return self.trk.tally_votes()

    # -- the entry point --

    def step(self, m: pb.Message) -> None:
        """Step applies the term rules to m, handles MsgHup and vote requests, passes the rest to step_fn.

        Raises ProposalDropped for a proposal or read request raft will not take.
        """
        frm = sender(m)
        if m.term == 0:
            pass  # local message
        elif m.term > self.term:
            if m.type in (pb.MsgVote, pb.MsgPreVote):
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.check_quorum and self.lead != NONE and self.election_elapsed < self.election_timeout
                )
                if not force and in_lease:
                    # We heard from a leader within the minimum election timeout:
                    # do not let a (possibly partitioned) node depose it.
                    self.logger.info(
                        "%d [logterm: %d, index: %d, vote: %d] ignored %s from %d [logterm: %d, index: %d] "
                        "at term %d: lease is not expired (remaining ticks: %d)",
                        self.id,
                        self.raft_log.last_term(),
                        self.raft_log.last_index(),
                        self.vote,
                        pb.MessageType.Name(m.type),
                        frm,
                        m.log_term,
                        m.index,
                        self.term,
                        self.election_timeout - self.election_elapsed,
                    )
                    return
            if m.type == pb.MsgPreVote:
                pass  # a pre-vote asks about a term nobody is in yet: ours stays
            elif m.type == pb.MsgPreVoteResp and not m.reject:
                pass  # the term is bumped when (if) the pre-election is won
            else:
                self.logger.info(
                    "%d [term: %d] received a %s message with higher term from %d [term: %d]",
                    self.id,
                    self.term,
                    pb.MessageType.Name(m.type),
                    frm,
                    m.term,
                )
                leader = frm if m.type in (pb.MsgApp, pb.MsgHeartbeat, pb.MsgSnap) else NONE
                self.become_follower(m.term, leader)
        elif m.term < self.term:
            if m.type in (pb.MsgHeartbeat, pb.MsgApp):
                # Tell the leader of the newer term: it steps down and the next
                # election brings us back in. Otherwise we could be stuck for good:
                # with check-quorum or pre-vote the others ignore our votes, and
                # without them our votes may never reach them either (after a
                # restart our configuration may still name only members long gone).
                # etcd-io/raft answers only with check-quorum or pre-vote.
                self.send(pb.Message(type=pb.MsgAppResp, to=frm))
            elif m.type == pb.MsgPreVote:
                # Reject with our term so the pre-candidate learns it is stale.
                self._log_rejected_vote(m, frm)
                self.send(pb.Message(type=pb.MsgPreVoteResp, to=frm, term=self.term, reject=True))
            else:
                self.logger.info(
                    "%d [term: %d] ignored a %s message with lower term from %d [term: %d]",
                    self.id,
                    self.term,
                    pb.MessageType.Name(m.type),
                    frm,
                    m.term,
                )
            return

        if m.type == pb.MsgHup:
            self.hup(CampaignType.PRE_ELECTION if self.pre_vote else CampaignType.ELECTION)
        elif m.type in (pb.MsgVote, pb.MsgPreVote):
            self._handle_vote_request(m, frm)
        else:
            self.step_fn(self, m)

    def _log_rejected_vote(self, m: pb.Message, frm: int) -> None:
        self.logger.info(
            _REJECTED_VOTE_FMT,
            self.id,
            self.raft_log.last_term(),
            self.raft_log.last_index(),
            self.vote,
            pb.MessageType.Name(m.type),
            frm,
            m.log_term,
            m.index,
            self.term,
        )

    def _handle_vote_request(self, m: pb.Message, frm: int) -> None:
        # A vote goes to the candidate already voted for in this term, or to any candidate while
        # this node has neither voted nor heard of a leader; a pre-vote for a later term binds nothing.
        can_vote = (
            self.vote == frm
            or (self.vote == NONE and self.lead == NONE)
            or (m.type == pb.MsgPreVote and m.term > self.term)
        )
        resp_type = vote_resp_msg_type(m.type)
        if can_vote and self.raft_log.is_up_to_date(m.index, m.log_term):
            self.logger.info(
                "%d [logterm: %d, index: %d, vote: %d] cast %s for %d [logterm: %d, index: %d] at term %d",
                self.id,
                self.raft_log.last_term(),
                self.raft_log.last_index(),
                self.vote,
                pb.MessageType.Name(m.type),
                frm,
                m.log_term,
                m.index,
                self.term,
            )
            # Reply with the message's term: for a pre-vote our own term may be
            # lower, and the pre-candidate counts only answers for the term it asked about.
            self.send(pb.Message(type=resp_type, to=frm, term=m.term))
            if m.type == pb.MsgVote:
                self.election_elapsed = 0
                self.vote = frm
        else:
            self._log_rejected_vote(m, frm)
            self.send(pb.Message(type=resp_type, to=frm, term=self.term, reject=True))

    # -- time --

    def reset_randomized_election_timeout(self) -> None:
        """Reset_randomized_election_timeout draws the next timeout from [et, 2*et)."""
        self.randomized_election_timeout = self.election_timeout + self.rand.randrange(self.election_timeout)

    def past_election_timeout(self) -> bool:
        """Past_election_timeout says whether the randomized election timeout has elapsed."""
        return self.election_elapsed >= self.randomized_election_timeout

    def response_to_read_index_req(self, req: pb.Message, read_index: int) -> None:
        """Response_to_read_index_req answers a confirmed read: locally or to the follower that asked."""
        frm = sender(req)
        if frm in (NONE, self.id):
            self.read_states.append(ReadState(read_index, req.entries[0].data))
            return
        self.send(pb.Message(type=pb.MsgReadIndexResp, to=frm, index=read_index, entries=req.entries))

    def committed_entry_in_current_term(self) -> bool:
        """Committed_entry_in_current_term: the entry at the commit index carries this node's term."""
        return self.raft_log.term_or_zero(self.raft_log.committed) == self.term
