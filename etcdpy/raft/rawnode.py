"""RawNode: the application's handle on a raft node, and the Ready it hands out.

The application drives a node in a loop, single-threaded:

1. feed it: tick() on a timer, step() for each message from a peer, and
   propose()/read_index()/... for client requests;
2. when has_ready(), take rd = ready() and handle it in this order:
   persist (rd.snapshot, rd.entries, rd.hard_state; fsync if rd.must_sync),
   send rd.messages (these may also be sent before persisting) and then
   rd.persisted_messages (only after persisting), apply rd.committed_entries
   (calling apply_conf_change() for configuration entries), serve rd.read_states;
3. call advance(rd).

Inputs (step, tick, propose, ...) may also come between ready() and advance(),
while the application persists or applies rd: their output goes into the next
Ready, and they never invalidate what rd handed out. In particular a snapshot
from the leader is not restored while rd's committed entries are being applied
(it would reset the configuration under their conf changes): it is answered as a
stale one, and the leader sends it again after report_snapshot().
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft.confchange import AnyConfChange, as_v2, conf_change_entry
from etcdpy.raft.config import RaftConfig
from etcdpy.raft.errors import ErrStepLocalMsg, ErrStepPeerNotFound
from etcdpy.raft.messages import NONE, is_local_msg, is_response_msg, new_message, sender
from etcdpy.raft.raft import Raft
from etcdpy.raft.reconfig import apply_conf_change
from etcdpy.raft.status import ProgressStatus, ReadState, SoftState, StateType, Status

_EMPTY_HARD_STATE = pb.HardState()


class SnapshotStatus(enum.Enum):
    """SnapshotStatus is what the transport reports after sending a snapshot."""

    FINISH = "finish"
    FAILURE = "failure"


@dataclass(frozen=True)
class Ready:
    """Ready is a batch of work for the application; its fields are the contract.

    Handle the fields in this order, then call RawNode.advance(ready):

    - ``snapshot``: if not None, install it in storage before the entries
      (MemoryStorage.apply_snapshot) and restore the state machine from it.
    - ``entries``: append to stable storage. An entry may replace entries at
      the same index and later already in storage (a new leader overwrote them).
    - ``hard_state``: if not None, save it (term, vote, commit).
    - ``must_sync``: whether the writes above must be fsynced before the
      persisted messages go out (term, vote, entries or snapshot changed).
    - ``messages``: may be sent at once, even before (or while) the writes above
      are durable, e.g. the leader's MsgApp to followers, in parallel with its own
      write. Messages are independent: any may be lost or reordered by the network.
    - ``persisted_messages``: send only after the writes above are durable. They
      acknowledge state (entries, votes) that must not be lost if we crash.
    - ``committed_entries``: apply to the state machine, in order, after
      persisting. For EntryConfChange/EntryConfChangeV2 entries call
      RawNode.apply_conf_change(). They may include entries of this very Ready's
      ``entries`` (committed by a quorum of other nodes).
    - ``read_states``: reads confirmed by ReadIndex; serve each once the
      applied index reaches its ``index``.
    - ``soft_state``: if not None, the leader or role changed (informational).
    """

    soft_state: SoftState | None
    hard_state: pb.HardState | None
    read_states: tuple[ReadState, ...]
    entries: tuple[pb.Entry, ...]
    snapshot: pb.Snapshot | None
    committed_entries: tuple[pb.Entry, ...]
    messages: tuple[pb.Message, ...]
    persisted_messages: tuple[pb.Message, ...]
    must_sync: bool


class RawNode:
    """RawNode is a raft node without I/O: inputs are method calls, outputs are Readys.

    It is not thread-safe; call it from one thread (or one asyncio task).
    Methods that accept a request raise ProposalDropped when raft cannot take
    it; nothing is dropped silently.
    """

    def __init__(self, config: RaftConfig) -> None:
        self.raft = Raft(config)
        self._prev_soft_state = self.raft.soft_state()
        self._prev_hard_state = self.raft.hard_state()
        # Responses to ourselves that take effect once the outstanding Ready is persisted.
        self._steps_on_advance: list[pb.Message] = []
        self._outstanding: Ready | None = None

    # -- inputs --

    def tick(self) -> None:
        """Tick is one unit of time: tick_election runs (follower, candidate) or tick_heartbeat (leader)."""
        self.raft.tick_fn(self.raft)

    def campaign(self) -> None:
        """Campaign makes this node start an election now."""
        self.raft.step(pb.Message(type=pb.MsgHup))

    def propose(self, data: bytes) -> None:
        """Propose steps a MsgProp carrying one entry of ``data``; ProposalDropped if raft refuses it."""
        self.raft.step(new_message(pb.MsgProp, self.raft.id, entries=[pb.Entry(data=data)]))

    def propose_many(self, datas: Sequence[bytes]) -> None:
        """Propose_many proposes several entries at once: one append, one MsgApp per follower.

        All or none are accepted (ProposalDropped). Batching many client
        requests this way is much cheaper than proposing them one by one.
        """
        if not datas:
            return
        entries = [pb.Entry(data=d) for d in datas]
        self.raft.step(new_message(pb.MsgProp, self.raft.id, entries=entries))

    def propose_conf_change(self, cc: AnyConfChange) -> None:
        """Propose_conf_change proposes a ConfChange or ConfChangeV2 (raises ProposalDropped).

        Only one change may be pending: while one is not yet applied, the leader
        replaces a new one with an empty entry (which commits but changes nothing).
        """
        entry = conf_change_entry(cc)
        self.raft.step(new_message(pb.MsgProp, self.raft.id, entries=[entry]))

    def apply_conf_change(self, cc: AnyConfChange) -> pb.ConfState:
        """Apply_conf_change applies a committed conf change and returns the new ConfState."""
        return apply_conf_change(self.raft, as_v2(cc))

    def step(self, m: pb.Message) -> None:
        """Step delivers a message from a peer."""
        if is_local_msg(m.type):
            raise ErrStepLocalMsg()
        if is_response_msg(m.type) and sender(m) not in self.raft.trk.progress:
            raise ErrStepPeerNotFound()
        self.raft.step(m)

    def read_index(self, rctx: bytes) -> None:
        """Read_index asks for a linearizable read; the answer is a ReadState with request_ctx == rctx.

        rctx must be unique among pending reads. Raises ProposalDropped if no
        leader is known; a read may still go unanswered (leader change, lost
        messages): the application retries after a timeout.
        """
        self.raft.step(pb.Message(type=pb.MsgReadIndex, entries=[pb.Entry(data=rctx)]))

    def transfer_leader(self, transferee: int) -> None:
        """Transfer_leader steps a MsgTransferLeader naming transferee; the leader ignores a learner."""
        self.raft.step(new_message(pb.MsgTransferLeader, transferee))

    def report_unreachable(self, peer: int) -> None:
        """Report_unreachable tells the leader that a message to peer could not be delivered."""
        self.raft.step(new_message(pb.MsgUnreachable, peer))

    def report_snapshot(self, peer: int, status: SnapshotStatus) -> None:
        """Report_snapshot tells the leader whether sending a snapshot to peer succeeded.

        The transport must call it after sending a MsgSnap: until then (or until
        the peer acknowledges the snapshot) the leader sends peer nothing else.
        """
        reject = status is SnapshotStatus.FAILURE
        self.raft.step(new_message(pb.MsgSnapStatus, peer, reject=reject))

    # -- outputs --

    def has_ready(self) -> bool:
        """Has_ready says whether ready() would return any work.

        Meaningful only when no Ready is outstanding (between ready() and advance()
        the work handed out is still counted).
        """
        r = self.raft
        log = r.raft_log
        if r.soft_state() != self._prev_soft_state:
            return True
        hs = r.hard_state()
        if hs != _EMPTY_HARD_STATE and hs != self._prev_hard_state:
            return True
        return bool(
            log.unstable.snapshot is not None
            or r.msgs
            or r.msgs_after_append
            or log.unstable.entries
            or log.has_next_committed_ents()
            or r.read_states
        )

    def ready(self) -> Ready:
        """Ready returns the work accumulated since the last Ready; advance() must follow."""
        if self._outstanding is not None:
            raise RuntimeError("ready() called before advance() of the previous Ready")
        r = self.raft
        log = r.raft_log
        soft = r.soft_state()
        hard = r.hard_state()
        entries = tuple(log.unstable.entries)
        rd_snapshot = log.unstable.snapshot
        prev_hard = self._prev_hard_state
        hard_changed = hard != _EMPTY_HARD_STATE and hard != prev_hard
        after_append = r.msgs_after_append
        persisted = tuple(m for m in after_append if m.to != r.id)
        self._steps_on_advance = [m for m in after_append if m.to == r.id]
        must_sync = (
            bool(entries)
            or rd_snapshot is not None
            or hard.term != prev_hard.term
            or hard.vote != prev_hard.vote
        )
        committed = tuple(log.next_committed_ents())
        if committed:
            # Until advance() these are being applied: raft must not restore a
            # snapshot under them (see follower.restore_snapshot).
            log.accept_applying(committed[-1].index)
        rd = Ready(
            soft_state=soft if soft != self._prev_soft_state else None,
            hard_state=hard if hard_changed else None,
            read_states=tuple(r.read_states),
            entries=entries,
            snapshot=rd_snapshot,
            committed_entries=committed,
            messages=tuple(r.msgs),
            persisted_messages=persisted,
            must_sync=must_sync,
        )
        r.msgs = []
        r.msgs_after_append = []
        r.read_states = []
        self._prev_soft_state = soft
        if hard_changed:
            self._prev_hard_state = hard
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """Advance tells raft that rd was handled: persisted, sent and applied."""
        if rd is not self._outstanding:
            raise RuntimeError("advance() must be called with the Ready returned by the last ready()")
        self._outstanding = None
        r = self.raft
        log = r.raft_log
        if rd.snapshot is not None:
            log.stable_snap_to(rd.snapshot.metadata.index)
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last.index, last.term)
        if rd.committed_entries:
            r.applied_to(rd.committed_entries[-1].index)
            r.reduce_uncommitted_size(list(rd.committed_entries))
        elif rd.snapshot is not None:
            r.applied_to(rd.snapshot.metadata.index)
        steps, self._steps_on_advance = self._steps_on_advance, []
        for m in steps:
            r.step(m)

    # -- inspection --

    def status(self) -> Status:
        """Status describes the node's current state."""
        r = self.raft
        progress: dict[int, ProgressStatus] = {}
        if r.role is StateType.LEADER:
            for i in r.trk.sorted_ids():
                pr = r.trk.progress[i]
                progress[i] = ProgressStatus(
                    match=pr.match,
                    next=pr.next,
                    state=pr.state.value,
                    is_learner=pr.is_learner,
                    recent_active=pr.recent_active,
                    paused=pr.is_paused(),
                    inflight=pr.inflights.count(),
                )
        return Status(
            id=r.id,
            hard_state=r.hard_state(),
            soft_state=r.soft_state(),
            applied=r.raft_log.applied,
            config=str(r.trk.config),
            conf_state=r.trk.conf_state(),
            lead_transferee=r.lead_transferee,
            progress=progress,
        )

    @property
    def id(self) -> int:
        """Id is this node's ID."""
        return self.raft.id

    @property
    def lead(self) -> int:
        """Lead is the ID of the known leader, or NONE (0)."""
        return self.raft.lead

    def is_leader(self) -> bool:
        """Is_leader says whether this node currently believes it is the leader."""
        return self.raft.role is StateType.LEADER and self.raft.lead != NONE
