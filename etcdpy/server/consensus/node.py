"""RaftNode: the member's Ready loop over `etcdpy.raft.RawNode`, in one asyncio task.

Each turn of the loop (see the Ready docstring for the contract)::

    queued proposals -> RawNode.propose_many (one batch per turn); waiting reads -> one ReadIndex
    rd = ready()
      send rd.messages at once (the leader's MsgApps go out while it fsyncs), coalesced
      serve rd.read_states (ReadIndex answers need no local write)
      apply the committed entries already durable here (no need to wait for this Ready's fsync)
      install rd.snapshot (state keyspaces, then the applier reloads)
      persist snapshot point, entries and hard state: ONE LevelDB batch, on a worker thread
        when it must be synced (an unsynced commit-index-only write is done in place)
      send rd.persisted_messages (votes, acks: only once durable), coalesced
      apply the other committed entries (conf changes through RawNode.apply_conf_change)
    advance(rd); maybe snapshot and compact the log

While one batch is being written, new proposals queue and go into the next Ready
(group commit).  Ticks come from a timer task every heartbeat interval.

The seam EtcdServer uses: ``propose(bytes)``, ``propose_conf_change(cc)``,
``read_index()``, ``run()``/``stop()``, ``term``, ``commit_index``,
``leader_id``, and the callbacks given at construction.  All calls happen on
the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import struct
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from etcdpy.api import errors
from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft import (
    NONE,
    Config,
    ErrStepLocalMsg,
    ErrStepPeerNotFound,
    ProposalDropped,
    RawNode,
    ReadState,
    Ready,
    SnapshotStatus,
    StateType,
    coalesce,
    decode_conf_change,
)
from etcdpy.server import failpoints
from etcdpy.server.storage.raftlog import RaftLogStorage

log = logging.getLogger("etcdpy.server.raft")

MAX_FORWARDED_READS = 8  # ReadIndex rounds a follower has in flight to the leader at once
# Seconds from one round's issue to the next for readers who queued behind a round in flight: under
# load, readers arrive a few per round trip, and a round per handful of readers spends more of the
# loop on rounds (a heartbeat to every follower and their answers) than on the reads.  The spacing
# lets more readers share each round.  A reader who finds no round in flight is never held back.
# The leader's round is a heartbeat round trip; a follower's, one message to the leader and back.
LEADER_READ_SPACING = 0.002
FOLLOWER_READ_SPACING = 0.001
_READ_CTX = struct.Struct(">QQ")  # member ID, then a counter started at the boot time in nanoseconds

ApplyEntries = Callable[[list[pb.Entry]], None]
"""Receives committed normal entries (and conf change entries, already applied to raft), in order."""

ConfChangeApplied = Callable[[pb.Entry, pb.ConfChangeV2, pb.ConfState], None]
"""Called for each committed conf change after raft applied it, before the entry reaches ApplyEntries."""

InstallState = Callable[[pb.SnapshotMetadata, Any], None]
"""Replaces the state by the received snapshot's (on the worker thread), before the write batch is written.

It may write batches of its own first (see Replication._install_state); the given batch
carries the new snapshot point and log and completes the install, so a crash before it
is written leaves an install that the next start finishes, never the new state over
the old log unrecorded."""

StateInstalled = Callable[[pb.SnapshotMetadata], None]
"""Called on the loop once the snapshot's state is installed (reload what was read from the old state)."""


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
    """A raft member: RawNode, its LevelDB log, and the loop that connects them to the rest."""

    def __init__(
        self,
        *,
        node_id: int,
        storage: RaftLogStorage,
        settings: RaftSettings,
        applied_index: Callable[[], int],
        apply_entries: ApplyEntries,
        conf_change_applied: ConfChangeApplied,
        install_state: InstallState,
        state_installed: StateInstalled = lambda meta: None,
        send: Callable[[Iterable[pb.Message]], None] = lambda messages: None,
    ) -> None:
        self.id = node_id
        self.storage = storage
        self.settings = settings
        self.applied_index = applied_index
        self.apply_entries = apply_entries
        self.conf_change_applied = conf_change_applied
        self.install_state = install_state
        self.state_installed = state_installed
        self.send = send  # the transport's; set before run()
        snap = storage.snapshot_meta
        self.raw = RawNode(
            Config(
                id=node_id,
                election_tick=settings.election_tick,
                heartbeat_tick=settings.heartbeat_tick,
                storage=storage,
                # Raft replays every committed entry after the snapshot point, so conf changes reach
                # its tracker again; the applier skips what the store already holds.
                applied=snap.index,
                max_size_per_msg=settings.max_size_per_msg,
                max_inflight_msgs=settings.max_inflight_msgs,
                check_quorum=settings.check_quorum,
                pre_vote=settings.pre_vote,
                rand=random.Random(),
            )
        )
        self.conf_state = pb.ConfState()
        self.conf_state.CopyFrom(snap.conf_state)
        self._snapshot_index = snap.index
        self._delivered = snap.index  # last index raft handed over in this life (entry or snapshot)
        self.term = storage.hard_state.term
        self.commit_index = storage.hard_state.commit
        self.leader_id = NONE
        self.role = StateType.FOLLOWER
        self.leader_changes = 0  # incremented whenever the known leader changes (ErrLeaderChanged)
        self._proposals: list[bytes] = []
        self._wakeup = asyncio.Event()
        self._stopping = False
        # Read contexts are unique across members and restarts: the leader keys pending reads by
        # context, so a follower's read must never be taken for another's or an earlier life's.
        self._read_ctx = itertools.count(time.time_ns())
        self._read_round: _ReadRound | None = None  # the round new readers join (not issued yet)
        self._issued_reads: dict[bytes, _ReadRound] = {}
        self._read_issued_at = 0.0  # loop time the last round was issued
        self._read_timer: asyncio.TimerHandle | None = None  # issues a spaced round when it is due
        self._leader_known = asyncio.Event()
        self._leader_waiters: list[asyncio.Future[None]] = []  # resolved at the next leader change
        self._applied_waiters: list[tuple[int, asyncio.Future[None]]] = []
        # One worker: writes must reach LevelDB in order, one at a time.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="etcdpy-raftlog")
        self._ticker: asyncio.Task[None] | None = None
        self._idle = False  # the loop waits for work (no Ready outstanding)
        self._deferred: Ready | None = None  # taken by _flush_if_idle, left for the loop to handle
        self.campaign_when_alone = True  # a one-voter cluster elects itself at once (as etcd's fast path)

    # ---- inputs (event loop) ----

    def propose(self, data: bytes) -> None:
        """Queue one entry for the next batch; raises ErrStopped once stopping."""
        if self._stopping:
            raise errors.ErrStopped()
        self._proposals.append(data)
        self._wakeup.set()

    def propose_conf_change(self, cc: pb.ConfChange) -> None:
        """Propose a membership change now (raises ProposalDropped, e.g. no leader known)."""
        if self._stopping:
            raise errors.ErrStopped()
        self.raw.propose_conf_change(cc)
        self._wakeup.set()

    def step(self, message: pb.Message) -> None:
        """Deliver a message from a peer (from the transport)."""
        if self._stopping:
            return
        if message.type == pb.MsgProp and all(e.type == pb.EntryNormal for e in message.entries):
            # A follower's forwarded proposals join ours: one append and one MsgApp per follower
            # per turn, however many followers forwarded meanwhile.
            self._proposals.extend(e.data for e in message.entries)
            self._wakeup.set()
            return
        with contextlib.suppress(ErrStepPeerNotFound, ErrStepLocalMsg, ProposalDropped):
            self.raw.step(message)
        self._flush_if_idle()

    def report_unreachable(self, peer_id: int) -> None:
        self.raw.report_unreachable(peer_id)

    def report_snapshot(self, peer_id: int, ok: bool) -> None:
        self.raw.report_snapshot(peer_id, SnapshotStatus.FINISH if ok else SnapshotStatus.FAILURE)
        self._wakeup.set()

    def transfer_leader(self, transferee: int) -> None:
        self.raw.transfer_leader(transferee)
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
        """Return once the applier has applied `index`."""
        if self.applied_index() >= index:
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

    # ---- the loop ----

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_seconds)
            self.raw.tick()
            for round_ in self._issued_reads.values():
                round_.ticks_waiting += 1
                if round_.ticks_waiting >= self.settings.election_tick:
                    # The request or its answer was lost: ask again (same ctx, so one answer serves all).
                    round_.ticks_waiting = 0
                    with contextlib.suppress(ProposalDropped):
                        self.raw.read_index(round_.ctx)
            self._wakeup.set()

    def _submit(self) -> None:
        if self._proposals:
            try:
                self.raw.propose_many(self._proposals)
                self._proposals = []
            except ProposalDropped:
                pass  # no leader yet: keep them; the next turn (tick, leader change) retries
        round_ = self._read_round
        # On the leader, one round in flight at a time (as etcd's read loop; each costs a heartbeat
        # to every follower): readers who come meanwhile share the next one, issued as soon as this
        # one is answered.  A follower's round is a message to the leader, which answers at once when
        # the two are a quorum: there a reader would only wait for a round it cannot join, so a
        # follower issues a round per turn, up to MAX_FORWARDED_READS in flight.  A lone read never waits.
        limit = 1 if self.role is StateType.LEADER else MAX_FORWARDED_READS
        if round_ is not None and not round_.issued and len(self._issued_reads) < limit:
            if round_.queued and not self._read_due():
                return
            try:
                self.raw.read_index(round_.ctx)
            except ProposalDropped:
                return
            self._read_issued_at = asyncio.get_running_loop().time()
            round_.issued = True
            self._issued_reads[round_.ctx] = round_
            self._read_round = None

    def _read_due(self) -> bool:
        """Whether a queued round may be issued now; if not, a timer issues it when it is due."""
        loop = asyncio.get_running_loop()
        spacing = LEADER_READ_SPACING if self.role is StateType.LEADER else FOLLOWER_READ_SPACING
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
        try:
            while True:
                rd, self._deferred = self._deferred, None
                if rd is None:
                    self._submit()
                    if not self.raw.has_ready():
                        if self._stopping:
                            return  # proposals still queued are failed by the server (ErrStopped)
                        self._wakeup.clear()
                        self._idle = True
                        try:
                            await self._wakeup.wait()
                        finally:
                            self._idle = False
                        continue
                    rd = self.raw.ready()
                await self._handle(rd)
                self._maybe_campaign_alone()
        finally:
            self._ticker.cancel()
            if self._read_timer is not None:
                self._read_timer.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._executor.shutdown(wait=True)

    def _flush_if_idle(self) -> None:
        """Wake the loop; if it is idle, send what needs no write at once, without waiting for its turn.

        A heartbeat's answer goes out, or a confirmed read is served, as soon as the message
        is stepped, a loop turn sooner on each member: those turns are part of a read's latency.
        A Ready that has more to do (entries, state, applies) is left to the loop.
        """
        if not self._idle or self._deferred is not None:
            self._wakeup.set()
            return
        self._submit()
        if not self.raw.has_ready():
            return
        rd = self.raw.ready()
        if (
            rd.entries
            or rd.hard_state is not None
            or rd.snapshot is not None
            or rd.soft_state is not None
            or rd.committed_entries
            or rd.persisted_messages
        ):
            self._deferred = rd
            self._wakeup.set()
            return
        self.send(coalesce(rd.messages, self.settings.max_size_per_msg))
        self._serve_reads(rd.read_states)
        self.raw.advance(rd)

    def _maybe_campaign_alone(self) -> None:
        if (
            self.campaign_when_alone
            and self.role is not StateType.LEADER
            and list(self.conf_state.voters) == [self.id]
            and not self.conf_state.voters_outgoing
        ):
            self.campaign_when_alone = False
            self.raw.campaign()

    async def _handle(self, rd: Ready) -> None:
        self.send(coalesce(rd.messages, self.settings.max_size_per_msg))
        # A confirmed read index needs nothing from this Ready's write: answer it now.
        self._serve_reads(rd.read_states)
        committed = rd.committed_entries
        if committed and rd.snapshot is None:
            # Committed entries already on our disk need not wait for this Ready's write (a whole
            # fsync): apply them first.  Entries this Ready writes or overwrites wait for it.
            durable = self.storage.last_index()
            if rd.entries:
                durable = min(durable, rd.entries[0].index - 1)
            early = max(0, min(len(committed), durable - committed[0].index + 1))
            if early:
                self._apply(committed[:early])
                committed = committed[early:]
        if rd.entries or rd.hard_state is not None or rd.snapshot is not None:
            await self._persist(rd)
        if rd.hard_state is not None:
            self.term = rd.hard_state.term
            self.commit_index = max(self.commit_index, rd.hard_state.commit)
        if rd.soft_state is not None:
            self._soft_state(rd.soft_state.lead, rd.soft_state.role)
        self.send(coalesce(rd.persisted_messages, self.settings.max_size_per_msg))
        if rd.snapshot is not None:
            self._snapshot_installed(rd.snapshot.metadata)
        if committed:
            self._apply(committed)
        self.raw.advance(rd)
        self._wake_applied()
        self._maybe_snapshot()

    async def _persist(self, rd: Ready) -> None:
        """Write the Ready's snapshot point, entries and hard state as one batch (synced if it must be)."""
        prepared = self.storage.prepare(
            entries=rd.entries,
            hard_state=rd.hard_state,
            snapshot=rd.snapshot.metadata if rd.snapshot is not None else None,
            sync=rd.must_sync,
        )
        snap = rd.snapshot
        saved = rd.entries[-1].index if rd.entries else self.commit_index
        failpoints.hit("raftBeforeSave", saved)
        if snap is not None:
            failpoints.hit("raftBeforeApplySnap", snap.metadata.index)

        def write() -> None:
            if snap is not None:
                self.install_state(snap.metadata, prepared.batch)
            prepared.batch.write()

        if snap is None and not rd.must_sync:
            # Only the commit index changed: an unsynced write takes microseconds, less than
            # the hop to the worker thread, and no other write of ours is in flight.
            write()
        else:
            # Shielded: a cancelled loop must not leave a write running against a closing backend.
            loop = asyncio.get_running_loop()
            await asyncio.shield(loop.run_in_executor(self._executor, write))
        self.storage.apply_prepared(prepared)
        failpoints.hit("raftAfterSave", saved)
        if snap is not None:
            self.state_installed(snap.metadata)
            failpoints.hit("raftAfterApplySnap", snap.metadata.index)

    def _serve_reads(self, read_states: Iterable[ReadState]) -> None:
        for rs in read_states:
            round_ = self._issued_reads.pop(rs.request_ctx, None)
            if round_ is not None:
                round_.answer(rs.index)

    def _soft_state(self, lead: int, role: StateType) -> None:
        if lead != self.leader_id:
            if self.leader_id != NONE or lead == NONE:
                self.leader_changes += 1
            log.info("member %x: leader is now %x (term %d)", self.id, lead, self.raw.raft.term)
            self.leader_id = lead
            waiters, self._leader_waiters = self._leader_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            # Reads issued to the old leader may never be answered: fail them so callers retry.
            for round_ in self._issued_reads.values():
                round_.fail(errors.ErrLeaderChanged())
            self._issued_reads.clear()
        self.role = role
        if lead == NONE:
            self._leader_known.clear()
        else:
            self._leader_known.set()

    def _snapshot_installed(self, meta: pb.SnapshotMetadata) -> None:
        self.conf_state.CopyFrom(meta.conf_state)
        self._snapshot_index = self._delivered = meta.index
        self.commit_index = max(self.commit_index, meta.index)

    def _apply(self, entries: Iterable[pb.Entry]) -> None:
        out: list[pb.Entry] = []
        for entry in entries:
            self._delivered = entry.index
            change = decode_conf_change(entry)
            if change is not None:
                if out:
                    self.apply_entries(out)
                    out = []
                self.conf_state = self.raw.apply_conf_change(change)
                self.conf_change_applied(entry, change, self.conf_state)
            out.append(entry)
        if out:
            self.apply_entries(out)

    def _wake_applied(self) -> None:
        applied = self.applied_index()
        still: list[tuple[int, asyncio.Future[None]]] = []
        for index, waiter in self._applied_waiters:
            if index <= applied:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still.append((index, waiter))
        self._applied_waiters = still

    def _maybe_snapshot(self) -> None:
        """Every snapshot_count applied entries: record a snapshot point and drop the log below the tail."""
        applied = self.applied_index()
        if applied - self._snapshot_index < self.settings.snapshot_count:
            return
        if self._delivered < applied or applied > self.storage.last_index():
            return  # replaying after a restart: conf_state is not yet the one at `applied`
        self.storage.create_snapshot(applied, self.conf_state)
        self._snapshot_index = applied
        compact_to = applied - self.settings.catchup_entries
        if compact_to >= self.storage.first_index():
            self.storage.write(self.storage.prepare(compact_to=compact_to))
        log.info("member %x: snapshot at %d, log from %d", self.id, applied, self.storage.first_index())

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
