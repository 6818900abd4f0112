"""CommitApplier: committed entries into the Applier, results back to the proposers waiting for them.

Replication hands it each run of committed entries (in log order, on the
member's event loop).  It applies the run in one batch, resolves the future of
every request proposed here whose entry was in the run, and keeps physical
compaction following the compaction revision the log scheduled: steps of
bounded size, yielding between them so applying never waits long for it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from etcdpy.api.raftpb import raft_pb2 as raftpb
from etcdpy.server import failpoints
from etcdpy.server.apply import Applier

COMPACTION_BATCH_RECORDS = 1000  # etcd's --experimental-compaction-batch-limit default
COMPACTION_SLEEP_SECONDS = 0.01  # etcd's compaction sleep interval between batches


class CommitApplier:
    """CommitApplier applies committed entries and answers the proposals among them."""

    def __init__(self, applier: Applier) -> None:
        self.applier = applier
        self._waiters: dict[int, asyncio.Future[Any]] = {}  # request id -> its proposer's future
        self._scheduled_compaction = applier.compact_revision
        self._compaction_task: asyncio.Task[None] | None = None

    def expect(self, request_id: int, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
        """A future of `loop` (the running one) resolved with the applier's response to `request_id`
        (or failed with its EtcdError)."""
        assert request_id not in self._waiters, f"request id {request_id:x} proposed twice"
        waiter: asyncio.Future[Any] = loop.create_future()
        self._waiters[request_id] = waiter
        return waiter

    @property
    def pending(self) -> int:
        """Proposals of this member waiting for their entry to apply (etcd_server_proposals_pending)."""
        return len(self._waiters)

    def forget(self, request_id: int) -> None:
        """Stop waiting for `request_id` (its proposer gave up); its entry may still be applied."""
        self._waiters.pop(request_id, None)

    def apply_entries(self, entries: list[raftpb.Entry]) -> None:
        """Apply a run of committed entries in one batch (conf changes count as empty entries)."""
        if not entries:
            return
        failpoints.hit("beforeApply", entries[-1].index)
        batch = [(e.index, e.data if e.type == raftpb.EntryNormal else b"") for e in entries]
        results = self.applier.apply(batch)
        failpoints.hit("afterApply", entries[-1].index)
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
            self.resume_compaction()

    def resume_compaction(self) -> None:
        """Carry out the scheduled compaction on disk, unless a run of it is already going."""
        if self._compaction_task is None or self._compaction_task.done():
            self._compaction_task = asyncio.get_running_loop().create_task(
                self._compact(), name="etcdpy-compaction"
            )

    async def _compact(self) -> None:
        started = time.perf_counter()  # etcd_debugging_mvcc_db_compaction_*_duration_milliseconds
        while not self.applier.kv_counts.compaction_step(self.applier.compact_step, COMPACTION_BATCH_RECORDS):
            await asyncio.sleep(COMPACTION_SLEEP_SECONDS)
        self.applier.kv_counts.compacted(time.perf_counter() - started)

    async def wait_physical_compaction(self) -> None:
        """Return once every scheduled compaction has been carried out on disk."""
        while self._compaction_task is not None and not self._compaction_task.done():
            await asyncio.wait([self._compaction_task])

    async def stop(self, exc: BaseException) -> None:
        """Stop compacting (steps are atomic batches; the next start resumes) and fail every waiter."""
        if self._compaction_task is not None:
            self._compaction_task.cancel()
            await asyncio.wait([self._compaction_task])
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_exception(exc)
