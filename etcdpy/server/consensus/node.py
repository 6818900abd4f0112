"""RaftNode: the asyncio driver of a member's `ReadyHandler` (ready.py), in one task.

Each turn of the loop::

    waiting reads -> one ReadIndex round; handler.begin(): queued proposals in one batch,
      rd.messages sent, read states served, committed entries already durable applied
    the Ready's write (snapshot state, then ONE LevelDB batch: snapshot point, entries and
      hard state) on a worker thread when it must be synced; an unsynced commit-index-only
      write is done in place
    handler.finish(): persisted messages sent, the other committed entries applied, advance;
      waiters of the applied index woken

While one batch is being written, new proposals queue and go into the next Ready
(group commit).  Ticks come from a timer task every heartbeat interval.  When
the loop waits for work, a stepped message or a new read flushes at once
(`ReadyHandler.flush`): its answer does not wait for the loop's next turn.

The seam Replication uses: ``propose(bytes)``, ``propose_conf_change(cc)``,
``read_index()``, ``wait_applied()``, ``run()``/``stop()``, ``term``,
``commit_index``, ``leader_id``, ``is_leader()``, ``status()``,
``leader_changes``, ``conf_state``, ``delivered_index``, and the state machine
given at construction.  All calls happen on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from etcdpy.api import errors
from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft import NONE, ProposalDropped, ReadState, StateType, Status
from etcdpy.server.consensus.ready import RaftSettings, ReadyHandler, ReadyWrite, StateMachine
from etcdpy.server.metrics import NO_METRICS, Metrics, Observe
from etcdpy.server.storage.raftlog import PreparedWrite, RaftLogStorage

__all__ = ["MAX_FORWARDED_READS", "RaftNode", "RaftSettings"]

log = logging.getLogger("etcdpy.server.raft")

MAX_FORWARDED_READS = 8  # ReadIndex rounds a follower has in flight to the leader at once
# Seconds from one round's issue to the next for readers who queued behind a round in flight: under
# load, readers arrive a few per round trip, and a round per handful of readers spends more of the
# loop on rounds (a heartbeat to every follower and their answers) than on the reads.  The spacing
# lets more readers share each round.  A reader who finds no round in flight is never held back.
# The leader's round is a heartbeat round trip; a follower's, one message to the leader and back.
LEADER_READ_SPACING = 0.002
FOLLOWER_READ_SPACING = 0.001
STALL_TICKS = 3  # a tick this many tick intervals late means the loop stopped for a while (etcd's isActive)
_READ_CTX = struct.Struct(">QQ")  # member ID, then a counter started at the boot time in nanoseconds


class RaftLogDisk:
    """RaftLogDisk is the LevelDB raft log as the handler's `RaftDisk`: one batch per Ready.

    A synced write's duration (LevelDB's log write and its fsync) goes to `fsync_seconds`
    (etcd_disk_wal_fsync_duration_seconds).
    """

    def __init__(self, storage: RaftLogStorage, fsync_seconds: Observe) -> None:
        self.storage = storage
        self.fsync_seconds = fsync_seconds

    def first_index(self) -> int:
        return self.storage.first_index()

    def last_index(self) -> int:
        return self.storage.last_index()  # the view moves only once a write is durable

    def prepare(
        self,
        *,
        entries: tuple[pb.Entry, ...],
        hard_state: pb.HardState | None,
        snapshot: pb.Snapshot | None,
        sync: bool,
    ) -> PreparedWrite:
        return self.storage.prepare(
            entries=entries,
            hard_state=hard_state,
            snapshot=snapshot.metadata if snapshot is not None else None,
            sync=sync,
        )

    def write(self, prepared: PreparedWrite) -> None:
        if not prepared.synced:
            prepared.batch.write()
            return
        started = time.perf_counter()
        prepared.batch.write()  # plyvel releases the GIL for the write and fsync
        self.fsync_seconds.observe(time.perf_counter() - started)

    def written(self, prepared: PreparedWrite) -> None:
        self.storage.apply_prepared(prepared)

    def create_snapshot(self, index: int, conf_state: pb.ConfState) -> None:
        self.storage.create_snapshot(index, conf_state)

    def compact(self, index: int) -> None:
        self.storage.write(self.storage.prepare(compact_to=index))


class _ReadRound:
    """Reads waiting for one ReadIndex answer; many callers share one round."""

    def __init__(self, ctx: bytes, queued: bool) -> None:
        self.ctx = ctx
        self.queued = queued  # created while another round was in flight: spaced from it
        # One future per reader, not one shared: a reader that gives up (cancelled) must not cancel
        # the others, and each reader wakes straight from the answer.
        self.waiters: list[asyncio.Future[int]] = []
        self.issued = False
        self.ticks_waiting = 0  # ticks since issued; re-issued after an election timeout (lost messages)

    def join(self) -> asyncio.Future[int]:
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return waiter

    def answer(self, index: int) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(index)

    def fail(self, exc: BaseException) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_exception(exc)


class RaftNode:
    """A raft member: its ReadyHandler over the LevelDB log, and the loop that drives it."""

    def __init__(
        self,
        *,
        node_id: int,
        storage: RaftLogStorage,
        settings: RaftSettings,
        state: StateMachine[PreparedWrite],
        send: Callable[[Iterable[pb.Message]], None],
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.id = node_id
        self.settings = settings
        self.state = state
        self.send = send  # the peer transport's: queues messages to their peers, never blocks
        self._slow_reads, self._reads_failed = metrics.slow_read_indexes, metrics.read_indexes_failed
        self.core = ReadyHandler(
            node_id=node_id,
            storage=storage,
            disk=RaftLogDisk(storage, metrics.wal_fsync_seconds),
            state=state,
            host=self,
            settings=settings,
            rand=random.Random(),
        )
        self._wakeup = asyncio.Event()
        self._stopping = False
        # Read contexts are unique across members and restarts: the leader keys pending reads by
        # context, so a follower's read must never be taken for another's or an earlier life's.
        self._read_ctx = itertools.count(time.time_ns())
        self._read_round: _ReadRound | None = None  # the round new readers join (not issued yet)
        self._issued_reads: dict[bytes, _ReadRound] = {}
        self._read_issued_at = 0.0  # loop time the last round was issued
        self._read_timer: asyncio.TimerHandle | None = None  # issues a spaced round when it is due
        self._ticked_at = time.monotonic()  # the last tick
        self._stalled_at: float | None = None  # the last tick that came STALL_TICKS or more late
        self._leader_known = asyncio.Event()
        self.leaders_seen = 0  # changes to a new leader (not to none): etcd_server_leader_changes_seen_total
        self._leader_waiters: list[asyncio.Future[None]] = []  # resolved at the next leader change
        self._applied_waiters: list[tuple[int, asyncio.Future[None]]] = []
        # One worker: writes must reach LevelDB in order, one at a time.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="etcdpy-raftlog")
        self._ticker: asyncio.Task[None] | None = None
        self._idle = False  # the loop waits for work (no write outstanding)
        self._failed: BaseException | None = None  # raised by an idle flush: the loop stops with it

    # ---- what the member knows ----

    @property
    def term(self) -> int:
        """The term as persisted."""
        return self.core.term

    @property
    def commit_index(self) -> int:
        return self.core.commit_index

    @property
    def leader_id(self) -> int:
        return self.core.leader_id

    @property
    def leader_changes(self) -> int:
        """How often the known leader changed (a request that saw it change fails with ErrLeaderChanged)."""
        return self.core.leader_changes

    @property
    def conf_state(self) -> pb.ConfState:
        """The configuration at `delivered_index`."""
        return self.core.conf_state

    @property
    def delivered_index(self) -> int:
        """The last index raft handed to the state machine in this life (entry or snapshot)."""
        return self.core.delivered_index

    def is_leader(self) -> bool:
        """Whether raft believes this member leads right now."""
        return self.core.is_leader()

    def stalled_lately(self) -> bool:
        """Whether the loop is missing ticks now, or missed some within the last election timeout.

        A member whose loop stopped (SIGSTOP, a VM paused, a disk write stuck) may have been deposed
        meanwhile and not heard of it yet: what only a leader may do must be confirmed by a quorum
        first (etcd's isActive and ensureLeadership, for lease renewals).
        """
        now = time.monotonic()
        if self._ticks_late(now):
            return True
        election = self.settings.election_tick * self.settings.tick_seconds
        return self._stalled_at is not None and now - self._stalled_at < election

    def _ticks_late(self, now: float) -> bool:
        """Whether the tick due by `now` is STALL_TICKS intervals late."""
        return now - self._ticked_at > STALL_TICKS * self.settings.tick_seconds

    def status(self) -> Status:
        """Raft's state now; on the leader, every peer's progress."""
        return self.core.status()

    # ---- inputs (event loop) ----

    def propose(self, data: bytes) -> None:
        """Queue one entry for the next batch; raises ErrStopped once stopping."""
        if self._stopping:
            raise errors.ErrStopped()
        self.core.propose(data)
        self._wakeup.set()

    def propose_conf_change(self, cc: pb.ConfChange) -> None:
        """Propose a membership change now (raises ProposalDropped, e.g. no leader known)."""
        if self._stopping:
            raise errors.ErrStopped()
        self.core.propose_conf_change(cc)
        self._wakeup.set()

    def step(self, message: pb.Message) -> None:
        """Deliver a message from a peer (from the transport)."""
        if self._stopping:
            return
        if self.core.step(message):
            self._wakeup.set()  # forwarded proposals: they go into the loop's next batch
        else:
            self._flush_if_idle()

    def report_unreachable(self, peer_id: int) -> None:
        self.core.report_unreachable(peer_id)

    def report_snapshot(self, peer_id: int, ok: bool) -> None:
        self.core.report_snapshot(peer_id, ok)
        self._wakeup.set()

    def transfer_leader(self, transferee: int) -> None:
        self.core.transfer_leader(transferee)
        self._wakeup.set()

    async def read_index(self) -> int:
        """A linearizable read point: the commit index confirmed by a quorum after this call began.

        Callers that arrive before the next ReadIndex is issued share it (batching); it is
        issued at once unless another round is in flight (a follower may have up to
        MAX_FORWARDED_READS), then as soon as that one is answered.
        Waits while no leader is known; the caller bounds the wait.  Raises ErrLeaderChanged
        if the leader changes while the read waits for it.
        """
        round_ = self._read_round
        if round_ is not None:
            return await round_.join()
        ctx = _READ_CTX.pack(self.id, next(self._read_ctx))
        round_ = self._read_round = _ReadRound(ctx, queued=bool(self._issued_reads))
        answer = round_.join()
        if not self._issued_reads and len(self.conf_state.voters) > 1:
            # The first reader's round is issued now by an idle loop, a loop turn (~0.1 ms) sooner.
            # Not for a lone voter: it answers at once, so every reader would have a round of its own.
            self._flush_if_idle()
        else:
            self._wakeup.set()  # at the loop's next turn: readers arriving meanwhile join this round
        return await answer

    async def wait_applied(self, index: int) -> None:
        """Return once the state machine has applied `index`."""
        if self.state.applied_index() >= index:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._applied_waiters.append((index, waiter))
        await waiter

    async def wait_leader(self) -> None:
        await self._leader_known.wait()

    async def wait_leader_change(self) -> None:
        """Return at the next change of the leader this member knows."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._leader_waiters.append(waiter)
        await waiter

    async def wait_leader_is(self, member_id: int) -> None:
        """Return once `member_id` is the leader this member knows."""
        while self.leader_id != member_id:
            await self.wait_leader_change()

    # ---- the handler's host ----

    def reads_confirmed(self, read_states: Sequence[ReadState]) -> None:
        # A confirmed read index needs nothing from the Ready's write: answer it now.
        for rs in read_states:
            round_ = self._issued_reads.pop(rs.request_ctx, None)
            if round_ is not None:
                round_.answer(rs.index)
            else:
                self._slow_reads.inc()  # the answer to a round no longer waited for: out of date

    def leader_changed(self, lead: int, term: int) -> None:
        log.info("member %x: leader is now %x (term %d)", self.id, lead, term)
        waiters, self._leader_waiters = self._leader_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        # Reads issued to the old leader may never be answered: fail them so callers retry.
        self._reads_failed.inc(len(self._issued_reads))
        for round_ in self._issued_reads.values():
            round_.fail(errors.ErrLeaderChanged())
        self._issued_reads.clear()
        if lead == NONE:
            self._leader_known.clear()
        else:
            self.leaders_seen += 1
            self._leader_known.set()

    # ---- the loop ----

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_seconds)
            now = time.monotonic()
            if self._ticks_late(now):
                self._stalled_at = now
            self._ticked_at = now
            self.core.tick()
            for round_ in self._issued_reads.values():
                round_.ticks_waiting += 1
                if round_.ticks_waiting >= self.settings.election_tick:
                    # The request or its answer was lost: ask again (same ctx, so one answer serves all).
                    round_.ticks_waiting = 0
                    self._slow_reads.inc()
                    with contextlib.suppress(ProposalDropped):
                        self.core.read_index(round_.ctx)
            self._wakeup.set()

    def _issue_reads(self) -> None:
        round_ = self._read_round
        # On the leader, one round in flight at a time (as etcd's read loop; each costs a heartbeat
        # to every follower): readers who come meanwhile share the next one, issued as soon as this
        # one is answered.  A follower's round is a message to the leader, which answers at once when
        # the two are a quorum: there a reader would only wait for a round it cannot join, so a
        # follower issues a round per turn, up to MAX_FORWARDED_READS in flight.  A lone read never waits.
        limit = 1 if self.core.role is StateType.LEADER else MAX_FORWARDED_READS
        if round_ is not None and not round_.issued and len(self._issued_reads) < limit:
            if round_.queued and not self._read_due():
                return
            try:
                self.core.read_index(round_.ctx)
            except ProposalDropped:
                return
            self._read_issued_at = asyncio.get_running_loop().time()
            round_.issued = True
            self._issued_reads[round_.ctx] = round_
            self._read_round = None

    def _read_due(self) -> bool:
        """Whether a queued round may be issued now; if not, a timer issues it when it is due."""
        loop = asyncio.get_running_loop()
        spacing = LEADER_READ_SPACING if self.core.role is StateType.LEADER else FOLLOWER_READ_SPACING
        due = self._read_issued_at + spacing
        if loop.time() >= due:
            return True
        if self._read_timer is None:
            self._read_timer = loop.call_at(due, self._read_spacing_over)
        return False

    def _read_spacing_over(self) -> None:
        self._read_timer = None
        self._flush_if_idle()

    async def run(self) -> None:
        """The Ready loop; returns after `stop` once what was queued is persisted and applied."""
        loop = asyncio.get_running_loop()
        self._ticker = loop.create_task(self._tick(), name="etcdpy-raft-tick")
        core = self.core
        try:
            while True:
                if self._failed is not None:
                    raise self._failed
                pending = core.writing
                if pending is None:
                    self._issue_reads()
                    if not core.begin():
                        if self._stopping:
                            return  # proposals still queued are failed by the server (ErrStopped)
                        self._wakeup.clear()
                        self._idle = True
                        try:
                            await self._wakeup.wait()
                        finally:
                            self._idle = False
                        continue
                    self._wake_applied()
                    pending = core.writing
                    if pending is None:
                        continue  # the Ready wrote nothing: handled whole
                await self._write(pending, loop)
                core.finish()
                self._wake_applied()
        finally:
            self._ticker.cancel()
            if self._read_timer is not None:
                self._read_timer.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._executor.shutdown(wait=True)

    async def _write(self, pending: ReadyWrite[PreparedWrite], loop: asyncio.AbstractEventLoop) -> None:
        if pending.quick:
            # Only the commit index changed: an unsynced write takes microseconds, less than the hop
            # to the worker thread, and no other write of ours is in flight.
            self.core.write(pending)
        else:
            # Shielded: a cancelled loop must not leave a write running against a closing backend.
            await asyncio.shield(loop.run_in_executor(self._executor, self.core.write, pending))

    def _flush_if_idle(self) -> None:
        """Wake the loop; if it is idle, begin the next Ready now, without waiting for its turn.

        A heartbeat's answer goes out, or a confirmed read is served, as soon as the message
        is stepped, a loop turn sooner on each member: those turns are part of a read's latency.
        A Ready that writes is left begun: the loop, woken, does its write.
        """
        self._wakeup.set()
        if not self._idle:
            return
        self._issue_reads()
        try:
            self.core.flush()
        except BaseException as exc:
            self._failed = exc  # the loop stops with it, as if its own turn had failed
            raise
        self._wake_applied()

    def _wake_applied(self) -> None:
        if not self._applied_waiters:
            return
        applied = self.state.applied_index()
        still: list[tuple[int, asyncio.Future[None]]] = []
        for index, waiter in self._applied_waiters:
            if index <= applied:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still.append((index, waiter))
        self._applied_waiters = still

    async def stop(self) -> None:
        """Refuse new proposals; `run` returns once what is queued is handled."""
        self._stopping = True
        self._wakeup.set()

    def fail_pending(self, exc: BaseException) -> None:
        """Fail every waiting read (at shutdown)."""
        rounds = [*self._issued_reads.values()]
        if self._read_round is not None:
            rounds.append(self._read_round)
        for round_ in rounds:
            round_.fail(exc)
        for _, waiter in self._applied_waiters:
            if not waiter.done():
                waiter.set_exception(exc)
