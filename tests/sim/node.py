"""A simulated member: the server's own `ReadyHandler` over a fake disk, a fake network and an application.

Everything a member does with a Ready is the shipped code
(`etcdpy/server/consensus/ready.py`): proposals batched per Ready, forwarded
proposals joining the leader's batch, messages coalesced, committed entries
already durable applied before the write, conf changes, snapshot points and
compaction.  This module keeps only what the simulation fakes, and drives the
handler as the server's RaftNode does, with the fsync taking simulated steps:

* `process` (one driver turn per step): if no write is outstanding, `begin` the
  next Ready and run its `write` at once (to the page cache: a crash still loses
  it); the fsync completes `sync_delay` steps later (0..max_sync_delay), then
  `finish` (the disk's `written` is the fsync);
* `receive` steps a message; once the messages arriving at a step are in, `flush`
  (the server's idle flush after a stepped message): what needs no write goes out
  at once.

The seams the simulator observes (`SafetyMonitor`) are the effects: the disk
(appends, commits, fsyncs), the state machine (applies, snapshot restores) and
the start (restart checks).
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.checker import KvOutput
from etcdpy.raft import MemoryStorage, ProposalDropped, ReadState, StateType, StorageError, conf_change_entry
from etcdpy.server.consensus.ready import RaftSettings, ReadyHandler

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

    def raft(self) -> RaftSettings:
        """Raft is the handler's settings (a tick is a simulated step)."""
        return RaftSettings(
            tick_seconds=1.0,
            election_tick=self.election_tick,
            heartbeat_tick=self.heartbeat_tick,
            pre_vote=self.pre_vote,
            check_quorum=self.check_quorum,
            snapshot_count=self.snapshot_every or sys.maxsize,
            catchup_entries=self.keep_entries,
            max_size_per_msg=self.max_size_per_msg,
            max_inflight_msgs=self.max_inflight_msgs,
            # The toy store sends the snapshot point's own configuration (see RaftSettings).
            snapshot_on_conf_change=self.snapshot_every > 0,
        )


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


@dataclass(frozen=True, slots=True)
class SimWrite:
    """SimWrite is one Ready's writes, as the simulated disk takes them."""

    entries: tuple[pb.Entry, ...]
    hard_state: pb.HardState | None
    snapshot: pb.Snapshot | None


class SimDisk:
    """SimDisk is a node's FakeDisk (and its application's share) as the handler's `RaftDisk`.

    `write` goes to the page cache (raft reads it at once; a crash loses it); `written` is the
    fsync that makes it, and the application's writes so far, durable.
    """

    def __init__(self, node_id: int, disk: FakeDisk, app: Application, monitor: SafetyMonitor) -> None:
        self._id = node_id
        self._disk = disk
        self._app = app
        self._monitor = monitor

    def first_index(self) -> int:
        return self._disk.working.first_index()

    def last_index(self) -> int:
        # The page cache: every Ready's write was synced before the next begins.
        return self._disk.working.last_index()

    def prepare(
        self,
        *,
        entries: tuple[pb.Entry, ...],
        hard_state: pb.HardState | None,
        snapshot: pb.Snapshot | None,
        sync: bool,
    ) -> SimWrite:
        return SimWrite(entries, hard_state, snapshot)

    def write(self, prepared: SimWrite) -> None:
        disk = self._disk
        if prepared.snapshot is not None:
            disk.apply_snapshot(prepared.snapshot)
        if prepared.entries:
            disk.append(list(prepared.entries))
            self._monitor.observe_append(self._id, list(prepared.entries), _term_lookup(disk.working.term))
        if prepared.hard_state is not None:
            disk.set_hard_state(prepared.hard_state)
            self._monitor.observe_commit(self._id, prepared.hard_state.commit)

    def written(self, prepared: SimWrite) -> None:
        self._disk.sync()
        self._app.sync()
        self._monitor.observe_durable(self._id, self._app.applied)

    def create_snapshot(self, index: int, conf_state: pb.ConfState) -> None:
        self._disk.create_snapshot(index, conf_state, self._app.snapshot_data())

    def compact(self, index: int) -> None:
        self._disk.compact(index)


class SimNode:
    """SimNode is one member of the simulated cluster: the host and state machine of its ReadyHandler."""

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
        self._raft_settings = settings.raft()
        self._rng = rng
        self._monitor = monitor
        self.core: ReadyHandler[SimWrite] | None = None  # None while crashed or stopped
        self.app = app
        self._conf_state = pb.ConfState()  # the configuration at the last conf change or snapshot
        self._sync_at = 0  # the step the outstanding write's fsync completes
        self._to_flush = False  # a message was stepped since the last flush
        self._writes_waiting: set[int] = set()  # request ids proposed here, answered when applied
        self._reads_waiting: dict[bytes, tuple[int, Command]] = {}  # ctx -> (attempt, read command)
        self._reads_confirmed: list[tuple[int, bytes]] = []  # (read index, ctx) awaiting applied >= index
        self.outgoing: list[pb.Message] = []
        self._snapshots_not_sent: list[int] = []  # peers to tell raft about at the next turn (FAILURE)
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
        return self.core is not None

    @property
    def conf_state(self) -> pb.ConfState:
        """Conf_state is the configuration raft handed over last (the running node's)."""
        assert self.core is not None
        return self.core.conf_state

    def start(self) -> None:
        """Start boots the node from its disk: durable log, hard state, snapshot and applied state."""
        finished = self.app.restart(self.disk)  # may finish an install a crash interrupted, on the disk too
        storage = self.disk.working
        self._conf_state = _copy(storage.snapshot().metadata.conf_state)
        self.core = ReadyHandler(
            node_id=self.id,
            storage=storage,
            disk=SimDisk(self.id, self.disk, self.app, self._monitor),
            state=self,
            host=self,
            settings=self._raft_settings,
            rand=random.Random(self._rng.getrandbits(64)),
        )
        self._monitor.observe_restart(self.id, self.applied, storage.hard_state.commit)
        if finished is not None:
            self.events.append(f"node {self.id} finishes installing snapshot {finished.index} at its start")
            self._observe_restore(finished)

    def crash(self) -> None:
        """Crash stops the node at once: unsynced writes, pending replies and in-flight work are lost."""
        self.core = None
        self.disk.crash()
        self.app.crash()
        self._writes_waiting.clear()
        self._reads_waiting.clear()
        self._reads_confirmed.clear()
        self.outgoing.clear()
        self._snapshots_not_sent.clear()

    def stop(self) -> None:
        """Stop shuts a removed member down for good."""
        self.core = None
        self.app.close()

    # -- inputs ----------------------------------------------------------------------------------

    def tick(self) -> None:
        """Tick advances the node's logical clock."""
        assert self.core is not None
        self.core.tick()

    def receive(self, message: pb.Message) -> None:
        """Receive steps a message from a peer; `flush` follows once this step's messages are in."""
        core = self.core
        assert core is not None
        if not core.step(self.app.receiving(message)):
            self._to_flush = True

    def flush(self, now: int) -> None:
        """Flush is the server's idle flush after the messages just stepped: what needs no write goes now.

        The server flushes after each message that finds its loop idle; stepping the messages
        that arrive at one step first is the schedule where the loop was busy until the last.
        """
        core = self.core
        if core is not None and self._to_flush:
            self._to_flush = False
            self._begin(core, now, idle_flush=True)

    def submit(self, attempt: int, command: Command, via_log: bool) -> bool:
        """Submit hands a client request to raft; False if raft refused it (e.g. no leader known)."""
        core = self.core
        assert core is not None
        if command.request.op.value == "get" and not via_log:
            ctx = f"{command.request_id}:{attempt}".encode()
            try:
                core.read_index(ctx)
            except ProposalDropped:
                return False
            self._reads_waiting[ctx] = (attempt, command)
        else:
            core.propose(self.app.encode(command))  # queued for the next Ready's batch, as the server does
            self._writes_waiting.add(command.request_id)
        return True

    def report_snapshot(self, peer_id: int, ok: bool) -> None:
        """Report_snapshot tells raft how a snapshot sent to a peer fared."""
        assert self.core is not None
        self.core.report_snapshot(peer_id, ok)

    # -- the driver's turn -------------------------------------------------------------------------

    def process(self, now: int) -> None:
        """Process runs one turn of the node's driver: finish the write whose fsync is done, or begin one."""
        core = self.core
        assert core is not None
        self.app.step()
        for peer in self._snapshots_not_sent:
            core.report_snapshot(peer, ok=False)
        self._snapshots_not_sent.clear()
        if core.writing is None:
            self._begin(core, now, idle_flush=False)
        elif now >= self._sync_at:
            core.finish()
        self._serve_reads()

    def _begin(self, core: ReadyHandler[SimWrite], now: int, idle_flush: bool) -> None:
        if not (core.flush() if idle_flush else core.begin()):
            return
        pending = core.writing
        if pending is None:
            return  # the Ready wrote nothing: handled whole
        try:
            core.write(pending)
        except PowerLoss as loss:  # the application's writes for the Ready were cut short
            self.events.append(f"node {self.id} crashes: {loss}")
            self.crash()
            return
        self._sync_at = now + self._rng.randint(0, self.settings.max_sync_delay)
        if self._sync_at <= now:
            core.finish()

    def _serve_reads(self) -> None:
        core = self.core
        if not self._reads_confirmed or core is None:
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
                self.answers.append(Answer(command.request_id, attempt, output, index, 0, core.raw.raft.term))
        self._reads_confirmed = still_waiting

    # -- the handler's host --------------------------------------------------------------------------

    def send(self, messages: list[pb.Message]) -> None:
        """Send queues messages as the application puts them on the wire.

        The server's application attaches its current state to a MsgSnap and relabels it
        with the server's own code (`snapshots.snapshot_to_send`); a snapshot it does not
        send now (the node replays after a restart) is reported failed at the next turn.
        """
        core = self.core
        assert core is not None
        for message in messages:
            sent = self.app.sending(message, core, self.disk.working.term)
            if sent is None:
                self._snapshots_not_sent.append(message.to)
                continue
            self.outgoing.append(sent)

    def reads_confirmed(self, read_states: Sequence[ReadState]) -> None:
        self._reads_confirmed.extend((rs.index, rs.request_ctx) for rs in read_states)

    def leader_changed(self, lead: int, term: int) -> None:
        return None  # clients find the leader by trying (Workload): nothing waits for it here

    # -- the handler's state machine ----------------------------------------------------------------

    def applied_index(self) -> int:
        return self.app.applied

    def apply_entries(self, entries: list[pb.Entry]) -> None:
        core = self.core
        assert core is not None
        term = core.raw.raft.term
        for done in self.app.apply(entries):
            entry = done.entry
            if done.request_id in self._writes_waiting:
                assert done.request_id is not None and done.output is not None
                self._writes_waiting.discard(done.request_id)
                self.answers.append(Answer(done.request_id, None, done.output, entry.index, entry.term, term))
            self._monitor.observe_apply(self.id, entry, term, done.digest)

    def conf_change_applied(self, entry: pb.Entry, change: pb.ConfChangeV2, conf_state: pb.ConfState) -> None:
        # Raft's tracker sees every change again after a restart; the cluster follows only new ones.
        before, self._conf_state = self._conf_state, _copy(conf_state)
        if entry.index > self.applied:
            self.conf_changes_applied.append((before, self._conf_state))

    def install_state(self, snapshot: pb.Snapshot, write: SimWrite) -> None:
        self.app.claim(snapshot)

    def state_installed(self, snapshot: pb.Snapshot) -> None:
        meta = snapshot.metadata
        self.app.install(snapshot)
        self._conf_state = _copy(meta.conf_state)
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

    # -- inspection ------------------------------------------------------------------------------

    def leader_term(self) -> int | None:
        """Leader_term is the node's term if it believes it is the leader, else None."""
        core = self.core
        if core is None or core.raw.raft.role is not StateType.LEADER:
            return None
        return core.raw.raft.term

    def log_term_lookup(self) -> Callable[[int], int | None]:
        """Log_term_lookup reads terms from the node's whole log (stable and unstable)."""
        assert self.core is not None
        return _term_lookup(self.core.raw.raft.raft_log.term)


def _copy(conf_state: pb.ConfState) -> pb.ConfState:
    copy = pb.ConfState()
    copy.CopyFrom(conf_state)
    return copy


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
