"""A simulated member: a RawNode, its fake disk, and the application it applies committed entries to.

The Ready loop follows the contract in two phases, so a crash can fall between
a write and its fsync:

* phase 1 (`ready()` taken): write snapshot, entries and hard state to the
  page cache, send `messages` (allowed before the write is durable);
* phase 2 (the fsync completes, `sync_delay` steps later): sync, send
  `persisted_messages`, apply `committed_entries`, serve ReadIndex reads,
  maybe snapshot and compact, `advance()`.

Committed entries reach the application in runs, one `apply` call each, cut
before every conf change (which raft applies first), as the server's
RaftNode hands them to its Applier.
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.checker import KvOutput
from etcdpy.raft import (
    Config,
    ErrStepPeerNotFound,
    MemoryStorage,
    ProposalDropped,
    RawNode,
    Ready,
    SnapshotStatus,
    StateType,
    StorageError,
    conf_change_entry,
    decode_conf_change,
)

from .application import Application
from .disk import FakeDisk
from .invariants import SafetyMonitor
from .journal import PowerLoss
from .statemachine import Command


@dataclass(frozen=True)
class NodeSettings:
    """NodeSettings are the raft and application parameters shared by the nodes of a run."""

    election_tick: int = 10
    heartbeat_tick: int = 2
    pre_vote: bool = True
    check_quorum: bool = True
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    snapshot_every: int = 0  # snapshot after this many applied entries (0: never)
    keep_entries: int = 0  # log entries kept behind a snapshot for slow followers
    max_sync_delay: int = 0  # an fsync takes 0..max_sync_delay steps
    batch_proposals: bool = False  # writes wait for the next Ready phase and go to raft together


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer is a node's reply to a client request."""

    request_id: int
    attempt: int | None  # the ReadIndex attempt answered; None for requests that went through the log
    output: KvOutput
    index: int  # the log index that decided the answer (entry applied, or read index)
    term: int  # that entry's term (0 for reads)
    node_term: int  # the node's term when it answered


def _term_lookup(lookup: Callable[[int], int]) -> Callable[[int], int | None]:
    def term_of(index: int) -> int | None:
        try:
            return lookup(index)
        except (StorageError, IndexError):
            return None

    return term_of


class SimNode:
    """SimNode is one member of the simulated cluster."""

    def __init__(
        self,
        node_id: int,
        disk: FakeDisk,
        app: Application,
        settings: NodeSettings,
        rng: random.Random,
        monitor: SafetyMonitor,
        stats: Counter[str],
    ) -> None:
        self.id = node_id
        self._stats = stats
        self.disk = disk
        self.settings = settings
        self._rng = rng
        self._monitor = monitor
        self.raw: RawNode | None = None  # None while crashed or stopped
        self.app = app
        self.conf_state = pb.ConfState()
        self._snapshot_index = 0
        # the last index raft handed over (entry or snapshot) in this life; below applied while replaying
        self._delivered = 0
        self._conf_changed_since_snapshot = False
        self._ready: Ready | None = None
        self._sync_at = 0
        self._writes_waiting: set[int] = set()  # request ids proposed here, answered when applied
        self._batch: list[Command] = []  # writes waiting to be proposed together (batch_proposals)
        self._reads_waiting: dict[bytes, tuple[int, Command]] = {}  # ctx -> (attempt, read command)
        self._reads_confirmed: list[tuple[int, bytes]] = []  # (read index, ctx) awaiting applied >= index
        self.outgoing: list[pb.Message] = []
        self._snapshots_not_sent: list[int] = []  # peers to tell raft about after advance (FAILURE)
        self.answers: list[Answer] = []
        self.events: list[str] = []  # what the trace should tell (the cluster takes them each step)
        self.conf_changes_applied: list[tuple[pb.ConfState, pb.ConfState]] = []  # (before, after)

    # -- life cycle ------------------------------------------------------------------------------

    @property
    def applied(self) -> int:
        """Applied is the index of the last entry the node's store holds."""
        return self.app.applied

    @property
    def alive(self) -> bool:
        """Alive tells whether the node runs (not crashed, not stopped)."""
        return self.raw is not None

    def start(self) -> None:
        """Start boots the node from its disk: durable log, hard state, snapshot and applied state."""
        finished = self.app.restart(self.disk)  # may finish an install a crash interrupted, on the disk too
        storage = self.disk.working
        snapshot = storage.snapshot()
        # Raft starts from the snapshot's configuration and replays the changes after it.
        self.conf_state = snapshot.metadata.conf_state
        self._snapshot_index = self._delivered = snapshot.metadata.index
        config = Config(
            id=self.id,
            election_tick=self.settings.election_tick,
            heartbeat_tick=self.settings.heartbeat_tick,
            storage=storage,
            # Like etcd: raft replays every committed entry after the snapshot, so conf changes reach
            # its tracker again; the store skips what it already holds.
            applied=snapshot.metadata.index,
            max_size_per_msg=self.settings.max_size_per_msg,
            max_inflight_msgs=self.settings.max_inflight_msgs,
            check_quorum=self.settings.check_quorum,
            pre_vote=self.settings.pre_vote,
            rand=random.Random(self._rng.getrandbits(64)),
        )
        self.raw = RawNode(config)
        self._monitor.observe_restart(self.id, self.applied, storage.hard_state.commit)
        if finished is not None:
            self.events.append(f"node {self.id} finishes installing snapshot {finished.index} at its start")
            self._observe_restore(finished)

    def crash(self) -> None:
        """Crash stops the node at once: unsynced writes, pending replies and in-flight work are lost."""
        self.raw = None
        self._ready = None
        self.disk.crash()
        self.app.crash()
        self._writes_waiting.clear()
        self._reads_waiting.clear()
        self._reads_confirmed.clear()
        self._batch.clear()
        self.outgoing.clear()
        self._snapshots_not_sent.clear()

    def stop(self) -> None:
        """Stop shuts a removed member down for good."""
        self.raw = None
        self._ready = None
        self.app.close()

    # -- inputs ----------------------------------------------------------------------------------

    def tick(self) -> None:
        """Tick advances the node's logical clock."""
        assert self.raw is not None
        self.raw.tick()

    def receive(self, message: pb.Message) -> None:
        """Receive steps a message from a peer; responses from peers it does not know are dropped."""
        assert self.raw is not None
        with contextlib.suppress(ErrStepPeerNotFound, ProposalDropped):
            self.raw.step(self.app.receiving(message))

    def submit(self, attempt: int, command: Command, via_log: bool) -> bool:
        """Submit hands a client request to raft; False if raft refused it (e.g. no leader known)."""
        assert self.raw is not None
        request = command.request
        try:
            if request.op.value == "get" and not via_log:
                ctx = f"{command.request_id}:{attempt}".encode()
                self.raw.read_index(ctx)
                self._reads_waiting[ctx] = (attempt, command)
            elif self.settings.batch_proposals:
                self._batch.append(command)
            else:
                self.raw.propose(self.app.encode(command))
                self._writes_waiting.add(command.request_id)
        except ProposalDropped:
            return False
        return True

    def _propose_batch(self, raw: RawNode) -> None:
        batch, self._batch = self._batch, []
        try:
            raw.propose_many([self.app.encode(command) for command in batch])
        except ProposalDropped:
            return  # all or none: the clients re-send when no answer comes
        self._writes_waiting.update(command.request_id for command in batch)

    # -- the Ready loop --------------------------------------------------------------------------

    def process(self, now: int) -> None:
        """Process advances the Ready loop by one phase if there is work."""
        raw = self.raw
        assert raw is not None
        if self._batch:
            self._propose_batch(raw)
        self.app.step()
        if self._ready is not None:
            if now >= self._sync_at:
                self._finish_ready(raw, self._ready)
            return
        if not raw.has_ready():
            self._serve_reads()
            return
        rd = raw.ready()
        self._ready = rd
        try:
            self._write(rd)
        except PowerLoss as loss:  # the application's writes for the Ready were cut short
            self.events.append(f"node {self.id} crashes: {loss}")
            self.crash()
            return
        self._sync_at = now + self._rng.randint(0, self.settings.max_sync_delay)
        if self._sync_at <= now:
            self._finish_ready(raw, rd)

    def _write(self, rd: Ready) -> None:
        disk = self.disk
        if rd.snapshot is not None:
            self.app.claim(rd.snapshot)
            disk.apply_snapshot(rd.snapshot)
        if rd.entries:
            disk.append(list(rd.entries))
            self._monitor.observe_append(self.id, list(rd.entries), _term_lookup(disk.working.term))
        if rd.hard_state is not None:
            disk.set_hard_state(rd.hard_state)
            self._monitor.observe_commit(self.id, rd.hard_state.commit)
        self._send(rd.messages)
        self._reads_confirmed.extend((rs.index, rs.request_ctx) for rs in rd.read_states)

    def _finish_ready(self, raw: RawNode, rd: Ready) -> None:
        self._ready = None
        self.disk.sync()
        self.app.sync()
        self._monitor.observe_durable(self.id, self.applied)
        self._send_persisted(rd)
        if rd.snapshot is not None:
            self._install_snapshot(rd.snapshot)
        self._apply_committed(raw, list(rd.committed_entries))
        raw.advance(rd)
        for peer in self._snapshots_not_sent:
            raw.report_snapshot(peer, SnapshotStatus.FAILURE)
        self._snapshots_not_sent.clear()
        self._maybe_snapshot()
        self._serve_reads()

    def _send_persisted(self, rd: Ready) -> None:
        # Only now that the writes are durable may what acknowledges them go out.
        self._send(rd.persisted_messages)

    def _send(self, messages: Sequence[pb.Message]) -> None:
        """Queue messages as the application puts them on the wire.

        A MsgSnap whose attached state is newer than raft's snapshot point is relabelled
        with the index, term and configuration of that state, as the server's
        replication does; while the node replays after a restart (its configuration is
        not the one at the store's applied index) the snapshot is not sent and raft hears
        it failed.
        """
        for message in messages:
            sent = self.app.sending(message)
            if sent.type == pb.MsgSnap and sent.snapshot.metadata.index != message.snapshot.metadata.index:
                meta = sent.snapshot.metadata
                if meta.index != self._delivered:
                    self._snapshots_not_sent.append(message.to)
                    continue
                meta.term = self.disk.working.term(meta.index)
                meta.conf_state.CopyFrom(self.conf_state)
                self._stats["snapshots_relabelled"] += 1
            self.outgoing.append(sent)

    def _install_snapshot(self, snapshot: pb.Snapshot) -> None:
        meta = snapshot.metadata
        self.app.install(snapshot)
        self.conf_state = meta.conf_state
        self._snapshot_index = self._delivered = meta.index
        self._stats["snapshots_installed"] += 1
        self.events.append(
            f"node {self.id} installs snapshot {meta.index} (its store applied {self.applied})"
        )
        self._observe_restore(meta)

    def _observe_restore(self, meta: pb.SnapshotMetadata) -> None:
        # The installed state may be newer than the snapshot (the server sends its current state):
        # its term is known only when it is exactly the snapshot's.
        term = meta.term if self.applied == meta.index else None
        self._monitor.observe_snapshot_restore(self.id, self.applied, term, self.app.digest())

    def _apply_committed(self, raw: RawNode, entries: list[pb.Entry]) -> None:
        run: list[pb.Entry] = []
        for entry in entries:
            self._delivered = entry.index
            change = decode_conf_change(entry)
            if change is not None:
                self._apply_run(raw, run)
                run = []
                # Raft's tracker must see every change again after a restart, even those the store holds.
                before, self.conf_state = self.conf_state, raw.apply_conf_change(change)
                if entry.index > self.applied:
                    self.conf_changes_applied.append((before, self.conf_state))
                    self._conf_changed_since_snapshot = True
            run.append(entry)
        self._apply_run(raw, run)

    def _apply_run(self, raw: RawNode, run: list[pb.Entry]) -> None:
        if not run:
            return
        for done in self.app.apply(run):
            entry = done.entry
            if done.request_id in self._writes_waiting:
                assert done.request_id is not None and done.output is not None
                self._writes_waiting.discard(done.request_id)
                self.answers.append(
                    Answer(done.request_id, None, done.output, entry.index, entry.term, raw.raft.term)
                )
            self._monitor.observe_apply(self.id, entry, raw.raft.term, done.digest)

    def _maybe_snapshot(self) -> None:
        every = self.settings.snapshot_every
        if not every or self.applied == self._snapshot_index:
            return
        # Right after a membership change too: a member it adds may need a snapshot, and raft ignores
        # one whose configuration does not name the receiver.
        if self.applied - self._snapshot_index < every and not self._conf_changed_since_snapshot:
            return
        if self._delivered < self.applied:
            return  # still replaying after a restart: conf_state is not yet the one at `applied`
        working = self.disk.working
        if self.applied > working.last_index():
            return
        self.disk.create_snapshot(self.applied, self.conf_state, self.app.snapshot_data())
        self._snapshot_index = self.applied
        self._conf_changed_since_snapshot = False
        compact_to = self.applied - self.settings.keep_entries
        if compact_to >= working.first_index():
            self.disk.compact(compact_to)

    def _serve_reads(self) -> None:
        if not self._reads_confirmed or self.raw is None:
            return
        still_waiting: list[tuple[int, bytes]] = []
        for index, ctx in self._reads_confirmed:
            if index > self.applied:
                still_waiting.append((index, ctx))
                continue
            waiting = self._reads_waiting.pop(ctx, None)
            if waiting is not None:
                attempt, command = waiting
                output = self.app.read(command)
                self.answers.append(Answer(command.request_id, attempt, output, index, 0, self.raw.raft.term))
        self._reads_confirmed = still_waiting

    # -- inspection ------------------------------------------------------------------------------

    def leader_term(self) -> int | None:
        """Leader_term is the node's term if it believes it is the leader, else None."""
        raw = self.raw
        if raw is None or raw.raft.role is not StateType.LEADER:
            return None
        return raw.raft.term

    def log_term_lookup(self) -> Callable[[int], int | None]:
        """Log_term_lookup reads terms from the node's whole log (stable and unstable)."""
        assert self.raw is not None
        return _term_lookup(self.raw.raft.raft_log.term)


def bootstrap_storage(voters: list[int]) -> MemoryStorage:
    """Bootstrap_storage is the disk of an initial member: committed entries adding each voter.

    As etcd bootstraps, the initial configuration is in the log (not in a
    snapshot), so a member added later can replay it from index 1.
    """
    storage = MemoryStorage()
    entries = []
    for index, voter in enumerate(voters, start=1):
        entry = conf_change_entry(pb.ConfChange(type=pb.ConfChangeAddNode, node_id=voter))
        entry.index, entry.term = index, 1
        entries.append(entry)
    storage.append(entries)
    storage.set_hard_state(pb.HardState(term=1, commit=len(voters)))
    return storage
