"""ReadyHandler: what a member does with each Ready of its RawNode, with no I/O of its own.

No asyncio, no threads, no clock: the handler calls its effects (the raft log on
disk, the host that sends messages and serves reads, the state machine) and its
driver decides where the one blocking step runs.  Two drivers run this same code:
the asyncio member (`node.RaftNode`: LevelDB writes on a worker thread, the peer
transport) and the simulator (`tests/sim/node.py`: a fake disk whose fsync takes
simulated steps and may be lost in a crash, a fake network).

A Ready is handled in three steps around its one durable write (see the Ready
docstring for the contract)::

    begin()   propose what is queued (one batch per turn: group commit); take the Ready
              (the only caller of RawNode.ready); send rd.messages at once, coalesced (the
              leader's MsgApps go out while it fsyncs); hand rd.read_states to the host (a
              confirmed read index needs nothing from this write); apply the committed entries
              already durable here (no need to wait for this Ready's fsync); prepare ONE write
              of snapshot point, entries and hard state
    write()   blocking, on whatever thread the driver picks: the state machine takes the
              snapshot's state, then the write is made durable
    finish()  term and commit index, soft state, rd.persisted_messages (votes and acks go
              out only now), the snapshot's bookkeeping, the other committed entries (conf
              changes through RawNode.apply_conf_change), advance, maybe a snapshot point

A Ready that writes nothing is finished within begin().  While a write is
outstanding, messages keep being stepped and proposals keep queueing for the
next Ready.  `flush` is the idle flush: a driver calls it right after stepping a
message, so a heartbeat's answer or a confirmed read goes out without waiting for
the driver's next turn.  `step` takes the proposals a follower forwards (MsgProp)
into the local queue, so they join this member's next batch.

Failpoints (`raftBeforeSave`, `raftBeforeApplySnap`, `raftAfterSave`,
`raftAfterApplySnap`) are hit here, around the write.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft import (
    NONE,
    ErrStepLocalMsg,
    ErrStepPeerNotFound,
    ProposalDropped,
    RaftConfig,
    RawNode,
    ReadState,
    Ready,
    SnapshotStatus,
    StateType,
    Status,
    Storage,
    coalesce,
    decode_conf_change,
)
from etcdpy.server import failpoints

log = logging.getLogger("etcdpy.server.raft")

W = TypeVar("W")  # a driver's prepared write (the server's: a LevelDB write batch)
W_contra = TypeVar("W_contra", contravariant=True)


@dataclass(frozen=True)
class RaftSettings:
    """The raft parameters of a member (times in ticks of `tick_seconds`)."""

    tick_seconds: float
    election_tick: int
    heartbeat_tick: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    snapshot_count: int = 100_000  # applied entries between snapshots
    catchup_entries: int = 5_000  # entries kept below a snapshot for slow followers
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 512
    # Also take a snapshot right after a membership change.  Only for a state machine that sends
    # the snapshot point's own configuration (the simulator's toy store): a member just added
    # ignores a snapshot whose configuration does not name it.  The server relabels what it sends
    # with its current configuration, so it leaves this off.
    snapshot_on_conf_change: bool = False


class RaftDisk(Protocol[W]):
    """RaftDisk is the member's durable raft log as the handler writes it (raft reads it as its Storage)."""

    def first_index(self) -> int:
        """First_index is the first entry the log holds."""
        ...

    def last_index(self) -> int:
        """Last_index is the last entry durable on the disk (what this Ready writes is not counted)."""
        ...

    def prepare(
        self,
        *,
        entries: tuple[pb.Entry, ...],
        hard_state: pb.HardState | None,
        snapshot: pb.Snapshot | None,
        sync: bool,
    ) -> W:
        """Prepare encodes one Ready's writes as one atomic write (`sync` False: only the commit moved)."""
        ...

    def write(self, prepared: W) -> None:
        """Write makes a prepared write durable; blocking, possibly on another thread."""
        ...

    def written(self, prepared: W) -> None:
        """Written tells the disk that `prepared` is durable (back on the driver's thread)."""
        ...

    def create_snapshot(self, index: int, conf_state: pb.ConfState) -> None:
        """Create_snapshot records a snapshot point at `index` (applied), with the configuration there."""
        ...

    def compact(self, index: int) -> None:
        """Compact drops the log up to `index`."""
        ...


class StateMachine(Protocol[W_contra]):
    """StateMachine is what committed entries and snapshots are applied to (the member's Applier)."""

    def applied_index(self) -> int:
        """Applied_index is the last index the state holds."""
        ...

    def apply_entries(self, entries: list[pb.Entry]) -> None:
        """Apply_entries applies a run of committed entries, in order; a run ends after a conf change.

        Conf change entries come already applied to raft (see `conf_change_applied`) so the
        applied index moves past them.  Entries the state already holds (a replay after a
        restart) come too: the state skips them.
        """
        ...

    def conf_change_applied(self, entry: pb.Entry, change: pb.ConfChangeV2, conf_state: pb.ConfState) -> None:
        """Conf_change_applied: raft applied a committed conf change (apply_entries gets the entry next)."""
        ...

    def install_state(self, snapshot: pb.Snapshot, write: W_contra) -> None:
        """Install_state replaces the state by a received snapshot's, just before the Ready's write.

        It runs where the write runs (the server: its worker thread).  It may write on its
        own first; `write` records the snapshot point and log and completes the install,
        so a crash before it is durable leaves an install the next start finishes, never
        the new state over the old log unrecorded.
        """
        ...

    def state_installed(self, snapshot: pb.Snapshot) -> None:
        """State_installed: the snapshot's Ready is durable; reload what was read from the old state."""
        ...


class Host(Protocol):
    """Host is the handler's driver as the handler reports to it: the network, reads, leadership."""

    def send(self, messages: list[pb.Message]) -> None:
        """Send puts messages on the wire (any may be lost)."""
        ...

    def reads_confirmed(self, read_states: Sequence[ReadState]) -> None:
        """Reads_confirmed: ReadIndex answers; each read is served once the state applied its index."""
        ...

    def leader_changed(self, lead: int, term: int) -> None:
        """Leader_changed: the leader this member knows is now `lead` (NONE: none)."""
        ...


@dataclass(frozen=True)
class ReadyWrite(Generic[W]):
    """ReadyWrite is a Ready between begin() and finish(): its prepared write, waiting for the driver."""

    ready: Ready
    prepared: W
    committed: tuple[pb.Entry, ...]  # the committed entries left to apply once the write is durable
    saved: int  # the index the write saves up to (failpoints' argument)

    @property
    def quick(self) -> bool:
        """Quick: only the commit index changed, an unsynced write of microseconds (no thread hop)."""
        return self.ready.snapshot is None and not self.ready.must_sync


class ReadyHandler(Generic[W]):
    """ReadyHandler holds a member's RawNode and turns each of its Readies into effects, in order."""

    def __init__(
        self,
        *,
        node_id: int,
        storage: Storage,
        disk: RaftDisk[W],
        state: StateMachine[W],
        host: Host,
        settings: RaftSettings,
        rand: random.Random,
    ) -> None:
        hard_state, _ = storage.initial_state()
        snap = storage.snapshot().metadata
        self.id = node_id
        self.disk = disk
        self.state = state
        self.host = host
        self.settings = settings
        # Public for inspection by tests (the simulator's invariant checks); drivers use the methods.
        self.raw = RawNode(
            RaftConfig(
                id=node_id,
                election_tick=settings.election_tick,
                heartbeat_tick=settings.heartbeat_tick,
                storage=storage,
                # Raft replays every committed entry after the snapshot point, so conf changes reach
                # its tracker again; the state machine skips what it already holds.
                applied=snap.index,
                max_size_per_msg=settings.max_size_per_msg,
                max_inflight_msgs=settings.max_inflight_msgs,
                check_quorum=settings.check_quorum,
                pre_vote=settings.pre_vote,
                rand=rand,
            )
        )
        self.conf_state = pb.ConfState()  # the configuration at delivered_index
        self.conf_state.CopyFrom(snap.conf_state)
        self.delivered_index = snap.index  # last index raft handed over in this life (entry or snapshot)
        self._snapshot_index = snap.index
        self._conf_changed = False  # a membership change was applied since the last snapshot point
        self.term = hard_state.term  # as persisted
        self.commit_index = hard_state.commit
        self.leader_id = NONE
        self.role = StateType.FOLLOWER
        self.leader_changes = 0  # incremented whenever the known leader changes (ErrLeaderChanged)
        self.campaign_when_alone = True  # a one-voter cluster elects itself at once (as etcd's fast path)
        self.writing: ReadyWrite[W] | None = None  # the Ready begun, its write not yet durable
        self._proposals: list[bytes] = []

    # ---- inputs ----

    def propose(self, data: bytes) -> None:
        """Propose queues one entry for the next Ready's batch."""
        self._proposals.append(data)

    def propose_conf_change(self, cc: pb.ConfChange | pb.ConfChangeV2) -> None:
        """Propose_conf_change proposes a membership change now (raises ProposalDropped: no leader known)."""
        self.raw.propose_conf_change(cc)

    def step(self, message: pb.Message) -> bool:
        """Step delivers a peer's message; responses from peers raft does not know are dropped.

        Returns True when the message was a follower's forwarded proposals, queued for the
        next Ready's batch (nothing to flush).
        """
        if message.type == pb.MsgProp and all(e.type == pb.EntryNormal for e in message.entries):
            self._queue_forwarded(message)
            return True
        with contextlib.suppress(ErrStepPeerNotFound, ErrStepLocalMsg, ProposalDropped):
            self.raw.step(message)
        return False

    def _queue_forwarded(self, message: pb.Message) -> None:
        # A follower's forwarded proposals join ours: one append and one MsgApp per follower per
        # Ready, however many followers forwarded meanwhile.
        self._proposals.extend(e.data for e in message.entries)

    def tick(self) -> None:
        """Tick advances raft's logical clock by one tick."""
        self.raw.tick()

    def read_index(self, ctx: bytes) -> None:
        """Read_index asks for a read point (raises ProposalDropped: no leader known)."""
        self.raw.read_index(ctx)

    def transfer_leader(self, transferee: int) -> None:
        self.raw.transfer_leader(transferee)

    def report_unreachable(self, peer_id: int) -> None:
        self.raw.report_unreachable(peer_id)

    def report_snapshot(self, peer_id: int, ok: bool) -> None:
        self.raw.report_snapshot(peer_id, SnapshotStatus.FINISH if ok else SnapshotStatus.FAILURE)

    # ---- inspection ----

    def is_leader(self) -> bool:
        """Is_leader says whether raft believes this member leads right now."""
        return self.raw.is_leader()

    def status(self) -> Status:
        """Status describes raft's state now (on the leader: every peer's progress)."""
        return self.raw.status()

    def has_proposals(self) -> bool:
        """Has_proposals says whether proposals wait for a leader to take them."""
        return bool(self._proposals)

    # ---- the Ready ----

    def flush(self) -> bool:
        """Flush is the idle flush: begin the next Ready now unless a write is outstanding.

        A driver calls it right after stepping a message or queueing a read, so what needs no
        write (a heartbeat's answer, a confirmed read) goes out without waiting for its next
        turn.  Returns whether it took a Ready.
        """
        return self.writing is None and self.begin()

    def begin(self) -> bool:
        """Begin proposes what is queued, takes the next Ready and does what needs no write.

        Returns False when raft has no Ready.  If the Ready writes, `writing` holds it until
        the driver has run `write` and called `finish`; otherwise it is finished here.
        """
        if self.writing is not None:
            raise RuntimeError("begin() while a Ready's write is outstanding")
        if self._proposals:
            try:
                self.raw.propose_many(self._proposals)
                self._proposals = []
            except ProposalDropped:
                pass  # no leader yet: keep them; a later turn (tick, leader change) retries
        if not self.raw.has_ready():
            return False
        rd = self.raw.ready()
        if rd.messages:
            self.host.send(coalesce(rd.messages, self.settings.max_size_per_msg))
        if rd.read_states:
            self.host.reads_confirmed(rd.read_states)
        committed = rd.committed_entries
        if committed and rd.snapshot is None:
            committed = self._apply_durable_prefix(rd)
        if rd.entries or rd.hard_state is not None or rd.snapshot is not None:
            prepared = self.disk.prepare(
                entries=rd.entries, hard_state=rd.hard_state, snapshot=rd.snapshot, sync=rd.must_sync
            )
            saved = rd.entries[-1].index if rd.entries else self.commit_index
            failpoints.hit("raftBeforeSave", saved)
            if rd.snapshot is not None:
                failpoints.hit("raftBeforeApplySnap", rd.snapshot.metadata.index)
            self.writing = ReadyWrite(rd, prepared, committed, saved)
        else:
            self._complete(rd, committed)
        return True

    def _apply_durable_prefix(self, rd: Ready) -> tuple[pb.Entry, ...]:
        """Apply the committed entries already durable here; return the rest (they wait for the write).

        Entries this Ready writes or overwrites are not durable yet.
        """
        committed = rd.committed_entries
        durable = self.disk.last_index()
        if rd.entries:
            durable = min(durable, rd.entries[0].index - 1)
        early = max(0, min(len(committed), durable - committed[0].index + 1))
        if early:
            self._apply(committed[:early])
        return committed[early:]

    def write(self, pending: ReadyWrite[W]) -> None:
        """Write installs the snapshot's state (if any) and makes the Ready's write durable; blocking.

        The driver runs it on any one thread, between begin() and finish(), and nothing else
        of the handler's runs meanwhile but inputs and `flush` (which then does nothing).
        """
        snap = pending.ready.snapshot
        if snap is not None:
            self.state.install_state(snap, pending.prepared)
        self.disk.write(pending.prepared)

    def finish(self) -> None:
        """Finish completes the Ready once its write is durable (back on the driver's thread)."""
        pending = self.writing
        if pending is None:
            raise RuntimeError("finish() without a Ready begun")
        self.writing = None
        rd = pending.ready
        self.disk.written(pending.prepared)
        failpoints.hit("raftAfterSave", pending.saved)
        if rd.snapshot is not None:
            self.state.state_installed(rd.snapshot)
            failpoints.hit("raftAfterApplySnap", rd.snapshot.metadata.index)
        self._complete(rd, pending.committed)

    def _complete(self, rd: Ready, committed: tuple[pb.Entry, ...]) -> None:
        if rd.hard_state is not None:
            self.term = rd.hard_state.term
            self.commit_index = max(self.commit_index, rd.hard_state.commit)
        if rd.soft_state is not None:
            self._soft_state(rd.soft_state.lead, rd.soft_state.role)
        if rd.persisted_messages:
            self.host.send(coalesce(rd.persisted_messages, self.settings.max_size_per_msg))
        if rd.snapshot is not None:
            meta = rd.snapshot.metadata
            self.conf_state = pb.ConfState()  # a new object: callers may hold the previous one
            self.conf_state.CopyFrom(meta.conf_state)
            self._snapshot_index = self.delivered_index = meta.index
            self.commit_index = max(self.commit_index, meta.index)
        if committed:
            self._apply(committed)
        self.raw.advance(rd)
        self._maybe_snapshot()
        self._maybe_campaign_alone()

    def _soft_state(self, lead: int, role: StateType) -> None:
        self.role = role
        if lead == self.leader_id:
            return
        if self.leader_id != NONE or lead == NONE:
            self.leader_changes += 1
        self.leader_id = lead
        self.host.leader_changed(lead, self.raw.raft.term)

    def _apply(self, entries: Sequence[pb.Entry]) -> None:
        run: list[pb.Entry] = []
        for entry in entries:
            assert entry.index == self.delivered_index + 1, f"{entry.index} after {self.delivered_index}"
            self.delivered_index = entry.index
            change = decode_conf_change(entry)
            if change is not None:
                if run:
                    self.state.apply_entries(run)
                    run = []
                self._conf_changed |= entry.index > self.state.applied_index()
                self.conf_state = self.raw.apply_conf_change(change)
                self.state.conf_change_applied(entry, change, self.conf_state)
            run.append(entry)
        if run:
            self.state.apply_entries(run)

    def _maybe_snapshot(self) -> None:
        """Every snapshot_count applied entries: record a snapshot point and drop the log below the tail."""
        applied = self.state.applied_index()
        since = applied - self._snapshot_index
        if since < self.settings.snapshot_count and not (
            self.settings.snapshot_on_conf_change and self._conf_changed and since > 0
        ):
            return
        if self.delivered_index < applied or applied > self.disk.last_index():
            return  # replaying after a restart: conf_state is not yet the one at `applied`
        self.disk.create_snapshot(applied, self.conf_state)
        self._snapshot_index = applied
        self._conf_changed = False
        compact_to = applied - self.settings.catchup_entries
        if compact_to >= self.disk.first_index():
            self.disk.compact(compact_to)
        log.info("member %x: snapshot at %d, log from %d", self.id, applied, self.disk.first_index())

    def _maybe_campaign_alone(self) -> None:
        voters = self.conf_state.voters
        if (
            self.campaign_when_alone
            and len(voters) == 1
            and voters[0] == self.id
            and not self.conf_state.voters_outgoing
            and self.role is not StateType.LEADER
        ):
            self.campaign_when_alone = False
            self.raw.campaign()
