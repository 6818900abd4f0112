"""EtcdServer: proposals in, applied results out, plus the reads and status around them.

The write path (see DESIGN.md, "Server: the write path")::

    propose(req) -> id + waiter -> ProposalLog.propose(bytes)
      -> durable append (one synced LevelDB batch per group of proposals)
      -> committed entries -> Applier.apply (one unsynced batch) -> waiters resolved

`LocalLog` is the one-member stand-in for Raft: an entry is committed as soon as
it is durable.  The seam Raft replaces is what EtcdServer uses of it once started:
``propose(bytes)``, ``run()``/``stop()``, ``term``, ``commit_index``, ``leader_id``
and the ``on_commit(entries)`` callback that receives committed entries in index
order.  The applier and the services do not change.

Threads: all state lives on one asyncio event loop.  The only blocking call on
another thread is `WAL.save` (LevelDB write + fsync), and only one runs at a time;
while it runs, new proposals queue and go into the next batch (group commit).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.server.apply import Applier
from etcdpy.server.membership import Cluster
from etcdpy.server.storage.wal import WAL, Entry, EntryType, HardState, WALCorruptError

log = logging.getLogger("etcdpy.server")

API_VERSION = "3.4.23"  # the etcd release whose API etcdpy serves; Status and /version report it
FRESH_CLUSTER_TERM = 2  # etcd's first leader of a new cluster is elected in term 2
CRASH_EXIT_CODE = 97
COMPACTION_BATCH_RECORDS = 1000  # etcd's --experimental-compaction-batch-limit default
COMPACTION_SLEEP_SECONDS = 0.01  # etcd's compaction sleep interval between batches


class CrashPoints:
    """Named places where a test can make the member die abruptly, like etcd's failpoints.

    Armed by ``ETCDPY_CRASH_POINT=<name>@<raft index>`` (tests only): the process exits
    with `CRASH_EXIT_CODE`, skipping every cleanup, the first time `name` is reached
    at or past that index.  Points: ``after_wal_save`` (entries durable, not applied)
    and ``after_apply`` (applied, clients not answered yet).
    """

    ENV = "ETCDPY_CRASH_POINT"

    def __init__(self, spec: str | None) -> None:
        self.name, _, index = (spec or "").partition("@")
        self.index = int(index) if index else 0

    def hit(self, name: str, index: int) -> None:
        if name == self.name and index >= self.index:
            os._exit(CRASH_EXIT_CODE)


class LocalLog:
    """A one-member log: entries are committed once durable, in one synced batch per group."""

    def __init__(
        self,
        wal: WAL,
        member_id: int,
        on_commit: Callable[[list[Entry]], None],
        *,
        applied_index: Callable[[], int],
        keep_entries: int,
        crash_points: CrashPoints,
    ) -> None:
        self.wal = wal
        self.leader_id = member_id
        self.on_commit = on_commit
        self.applied_index = applied_index
        self.crash_points = crash_points
        self.keep_entries = keep_entries  # entries retained below the applied index (snapshot catch-up)
        self.term = wal.hard_state.term
        self.commit_index = wal.hard_state.commit  # invariant: every entry <= commit_index is durable
        self._last_index = wal.last_index  # invariant: >= commit_index; entries above are being saved
        self._queue: list[bytes] = []
        self._wakeup = asyncio.Event()
        self._stopping = False
        # One worker: saves must reach LevelDB in index order, one at a time.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="etcdpy-wal")

    def bootstrap_entries(self, fresh: bool, conf_change: bytes) -> list[Entry]:
        """The entries a starting member appends, so raft indexes match etcd's.

        New cluster: 1 the conf change adding this member (term 1); then in term 2
        2 the leader's empty entry, 3 publishing member attributes, 4 setting the
        cluster version.  Restart: a new term, its leader's empty entry and a new
        publish.  Membership itself is stored by the caller in the same batch.
        """
        if fresh:
            self.term = FRESH_CLUSTER_TERM
            return [
                Entry(1, 1, EntryType.CONF_CHANGE, conf_change),
                Entry(2, FRESH_CLUSTER_TERM, EntryType.NORMAL, b""),
                Entry(3, FRESH_CLUSTER_TERM, EntryType.NORMAL, b""),
                Entry(4, FRESH_CLUSTER_TERM, EntryType.NORMAL, b""),
            ]
        self.term += 1
        first = self.wal.last_index + 1
        return [Entry(i, self.term, EntryType.NORMAL, b"") for i in (first, first + 1)]

    def save_blocking(self, entries: list[Entry], extra: Callable[[Any], None] | None = None) -> None:
        """Persist entries synchronously (startup only, before the loop serves clients)."""
        self.wal.save(entries, self._hard_state(entries[-1].index), extra=extra)
        self._last_index = self.commit_index = entries[-1].index

    def _hard_state(self, commit: int) -> HardState:
        return HardState(term=self.term, vote=self.leader_id, commit=commit)

    def propose(self, data: bytes) -> None:
        if self._stopping:
            raise errors.ErrStopped()
        self._queue.append(data)
        self._wakeup.set()

    def _take_batch(self) -> list[Entry]:
        batch, self._queue = self._queue, []
        first = self._last_index + 1
        entries = [Entry(first + i, self.term, EntryType.NORMAL, data) for i, data in enumerate(batch)]
        self._last_index = entries[-1].index
        return entries

    def _save_in_thread(self, entries: list[Entry]) -> asyncio.Future[None]:
        # Trim entries below the applied index (minus catch-up), at most about as many as we add, so
        # the log stays bounded without ever writing one long batch.
        compact_through = min(
            self.applied_index() - self.keep_entries, self.wal.first_index + 2 * len(entries) + 64
        )
        prepared = self.wal.prepare(
            entries, self._hard_state(entries[-1].index), compact_through=compact_through
        )
        return asyncio.get_running_loop().run_in_executor(self._executor, self.wal.write, prepared)

    async def run(self) -> None:
        """Group commit, pipelined: while batch N is applied on the loop, batch N+1 is being saved."""
        saving: list[Entry] = []
        in_flight: asyncio.Future[None] | None = None
        try:
            while True:
                if in_flight is None:
                    if not self._queue:
                        if self._stopping:
                            return
                        self._wakeup.clear()
                        await self._wakeup.wait()
                        continue
                    saving = self._take_batch()
                    in_flight = self._save_in_thread(saving)
                # Shielded: a cancelled run must not leave a save running against a closing backend.
                await asyncio.shield(in_flight)
                saved, in_flight = saving, None
                self.commit_index = saved[-1].index
                self.crash_points.hit("after_wal_save", self.commit_index)
                if self._queue:
                    saving = self._take_batch()
                    in_flight = self._save_in_thread(saving)
                self.on_commit(saved)
        finally:
            if in_flight is not None:
                await asyncio.wait([in_flight])
            self._executor.shutdown(wait=True)

    async def stop(self) -> None:
        """Refuse new proposals; `run` returns once everything queued is saved and handed on."""
        self._stopping = True
        self._wakeup.set()


class EtcdServer:
    """One member: proposes writes, serves reads, reports status; lives on one event loop."""

    def __init__(
        self,
        *,
        cluster: Cluster,
        applier: Applier,
        max_request_bytes: int,
        wal: WAL,
        keep_entries: int,
        request_timeout: float = 7.0,
        crash_points: CrashPoints | None = None,
    ) -> None:
        self.cluster = cluster
        self.request_timeout = request_timeout  # seconds a proposal may take before ErrTimeout
        self.applier = applier
        self.max_request_bytes = max_request_bytes
        self.wal = wal
        self.crash_points = crash_points or CrashPoints(None)
        self.log = LocalLog(
            wal,
            cluster.local_id,
            self._apply_committed,
            applied_index=lambda: applier.applied_index,
            keep_entries=keep_entries,
            crash_points=self.crash_points,
        )
        # Request ids as etcd's idutil makes them: member bits, boot time, then a counter.
        self._next_id = ((cluster.local_id & 0xFFFF) << 48) | ((int(time.time() * 1000) & (2**40 - 1)) << 8)
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._read_waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # (index, seq, future), sorted
        self._read_seq = 0
        self._log_task: asyncio.Task[None] | None = None
        self._scheduled_compaction = applier.compact_revision
        self._compaction_task: asyncio.Task[None] | None = None

    def start_log(self, fresh: bool, publish: Callable[[Any], None]) -> None:
        """Append this boot's bootstrap entries (see LocalLog) and apply everything not applied yet."""
        if self.applier.applied_index > self.wal.last_index:
            # New entries would reuse applied indexes and be skipped by the applier: refuse instead.
            raise WALCorruptError(
                f"data dir {self.wal.backend.data_dir}: the store applied index {self.applier.applied_index} "
                f"but the raft log ends at {self.wal.last_index}"
            )
        entries = self.log.bootstrap_entries(fresh, self.cluster.local.SerializeToString())
        self.log.save_blocking(entries, extra=publish)
        start = self.applier.applied_index + 1
        pending = self.wal.entries(start, self.log.commit_index + 1)
        if pending and pending[0].index != start:
            raise WALCorruptError(
                f"data dir {self.wal.backend.data_dir}: the raft log starts at {pending[0].index} "
                f"but the store has applied only {start - 1}"
            )
        self._apply_committed(pending)

    def _apply_committed(self, entries: list[Entry]) -> None:
        if not entries:
            return
        batch = [(e.index, e.data if e.type == EntryType.NORMAL else b"") for e in entries]
        results = self.applier.apply(batch)
        self.crash_points.hit("after_apply", entries[-1].index)
        for request_id, result in results:
            waiter = self._waiters.pop(request_id, None)
            if waiter is None or waiter.done():
                continue
            if isinstance(result, BaseException):
                waiter.set_exception(result)
            else:
                waiter.set_result(result)
        if self.applier.compact_revision != self._scheduled_compaction:
            self._scheduled_compaction = self.applier.compact_revision
            self._start_compaction()
        applied = self.applier.applied_index
        while self._read_waiters and self._read_waiters[0][0] <= applied:
            waiter = self._read_waiters.pop(0)[2]
            if not waiter.done():
                waiter.set_result(None)

    def _start_compaction(self) -> None:
        if self._compaction_task is None or self._compaction_task.done():
            self._compaction_task = asyncio.get_running_loop().create_task(self._compact())

    async def _compact(self) -> None:
        """Physical compaction in bounded steps, yielding between them so writes keep flowing."""
        while not self.applier.compact_step(COMPACTION_BATCH_RECORDS):
            await asyncio.sleep(COMPACTION_SLEEP_SECONDS)

    async def wait_physical_compaction(self) -> None:
        """Return once every scheduled compaction has been carried out on disk."""
        while self._compaction_task is not None and not self._compaction_task.done():
            await asyncio.wait([self._compaction_task])

    async def propose(self, req: raft_internal_pb2.InternalRaftRequest) -> Any:
        """Replicate one request and return the applier's response (or raise its EtcdError)."""
        self._next_id += 1
        req.header.ID = self._next_id
        data = req.SerializeToString()
        if len(data) > self.max_request_bytes:
            raise errors.ErrRequestTooLarge()
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[self._next_id] = waiter
        try:
            self.log.propose(data)
            response = await asyncio.wait_for(waiter, self.request_timeout)
        except TimeoutError:
            # Like etcd: the outcome is unknown to the client; the entry may still be applied later.
            raise errors.ErrTimeout() from None
        finally:
            self._waiters.pop(req.header.ID, None)
        self.fill_header(response.header)
        return response

    async def linearizable_barrier(self) -> None:
        """Wait until everything committed when the call began is applied (one member: no quorum round)."""
        index = self.log.commit_index
        if self.applier.applied_index >= index:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._read_seq += 1
        bisect.insort(self._read_waiters, (index, self._read_seq, waiter))
        await waiter

    async def range(self, req: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
        if not req.serializable:
            await self.linearizable_barrier()
        response = self.applier.range(req)
        self.fill_header(response.header)
        return response

    def fill_header(self, header: rpc_pb2.ResponseHeader) -> None:
        """Set the ids and term; the revision is the store's unless the applier already set it."""
        header.cluster_id = self.cluster.cluster_id
        header.member_id = self.cluster.local_id
        header.raft_term = self.log.term
        if not header.revision:
            header.revision = self.applier.current_revision

    def header(self) -> rpc_pb2.ResponseHeader:
        header = rpc_pb2.ResponseHeader()
        self.fill_header(header)
        return header

    def status(self) -> rpc_pb2.StatusResponse:
        size = self.wal.backend.size_bytes()
        return rpc_pb2.StatusResponse(
            header=self.header(),
            version=API_VERSION,
            dbSize=size,
            # LevelDB has no free-page list: until compaction reclaims it, every byte on disk is in use.
            dbSizeInUse=size,
            leader=self.log.leader_id,
            raftIndex=self.log.commit_index,
            raftTerm=self.log.term,
            raftAppliedIndex=self.applier.applied_index,
        )

    def start(self) -> asyncio.Task[None]:
        """Start the log task; the returned task ends on `stop` or if the write path fails."""
        self._log_task = asyncio.get_running_loop().create_task(self.log.run(), name="etcdpy-log")
        if self.applier.compaction_pending:  # a compaction interrupted by the last shutdown or crash
            self._start_compaction()
        return self._log_task

    async def stop(self) -> None:
        """Save and apply what is queued, then fail any waiter left with ErrStopped (idempotent)."""
        await self.log.stop()
        if self._log_task is not None:
            await asyncio.wait([self._log_task])
        if self._compaction_task is not None:
            self._compaction_task.cancel()  # steps are atomic batches; the next start resumes
            await asyncio.wait([self._compaction_task])
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(errors.ErrStopped())


REVISION_COMPACTION_CHECK_SECONDS = 300.0  # etcd's revision compactor checks every 5 minutes


async def run_auto_compaction(server: EtcdServer, mode: str, retention: float) -> None:
    """Propose compactions as etcd's auto compactors do; runs until cancelled (retention 0: never).

    revision: every 5 minutes, compact to (current revision - retention).
    periodic: sample the revision every tenth of the window (the window is the retention,
    at most an hour) and, once per window, compact to the newest sample at least
    `retention` seconds old, so the history of the last `retention` seconds stays readable.
    """
    if retention <= 0:
        return
    if mode == "revision":
        while True:
            await asyncio.sleep(REVISION_COMPACTION_CHECK_SECONDS)
            await _auto_compact(server, server.applier.current_revision - int(retention))
    window = min(retention, 3600.0)
    samples: list[tuple[float, int]] = []  # (monotonic time, revision), oldest first
    next_compaction = time.monotonic() + window
    while True:
        now = time.monotonic()
        samples.append((now, server.applier.current_revision))
        old_enough = [rev for at, rev in samples if now - at >= retention]
        if old_enough and now >= next_compaction:
            await _auto_compact(server, old_enough[-1])
            next_compaction = now + window
            samples = [s for s in samples if now - s[0] < retention]
        await asyncio.sleep(window / 10)


async def _auto_compact(server: EtcdServer, revision: int) -> None:
    if revision <= max(server.applier.compact_revision, 0):
        return
    try:
        await server.propose(
            raft_internal_pb2.InternalRaftRequest(compaction=rpc_pb2.CompactionRequest(revision=revision))
        )
        log.info("auto compaction: compacted to revision %d", revision)
    except errors.EtcdError as exc:  # e.g. compacted meanwhile by a client: nothing to do
        log.warning("auto compaction to revision %d failed: %s", revision, exc.text)
