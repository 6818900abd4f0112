"""EtcdServer: proposals in, applied results out, plus the reads and status around them.

The write path (docs/architecture.md tells it whole)::

    propose(req) -> id + CommitApplier.expect(id) -> Replication.propose(bytes)
      -> RaftNode: one batch per Ready, durable append (one synced LevelDB batch),
         replicated to the peers, committed by a quorum
      -> committed entries -> CommitApplier -> Applier.apply (one unsynced batch)
      -> the proposer's future resolved

Linearizable reads ask raft for a read index (ReadIndex, batched: the readers
waiting when a round starts share it) and wait until it is applied;
serializable reads are served from the local store at once.

Threads: all state lives on one asyncio event loop.  The only blocking calls on
another thread are the raft log's LevelDB writes (one at a time); while one runs,
new proposals queue and go into the next Ready (group commit).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.raft import NONE
from etcdpy.server.apply import Applier
from etcdpy.server.auth.gate import AuthGate
from etcdpy.server.commit import CommitApplier
from etcdpy.server.consensus.memberops import MemberOps
from etcdpy.server.consensus.membership import Cluster
from etcdpy.server.consensus.replication import Replication
from etcdpy.server.headers import ResponseHeaders
from etcdpy.server.metrics import NO_METRICS, Metrics
from etcdpy.version import CLUSTER_VERSION, ETCD_RELEASE

log = logging.getLogger("etcdpy.server")

PUBLISH_ATTEMPT_SECONDS = 1.0  # then publishing is proposed again
AUTO_PROMOTE_RETRY_SECONDS = 0.5  # a learner that asked too early asks again after this long


def _expire(waiter: asyncio.Future[Any]) -> None:
    """A proposal's timer: its waiter fails with TimeoutError unless it was answered first."""
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class EtcdServer:
    """One member: proposes writes, serves reads, reports status; lives on one event loop."""

    def __init__(
        self,
        *,
        cluster: Cluster,
        applier: Applier,
        commits: CommitApplier,
        headers: ResponseHeaders,
        replication: Replication,
        member_ops: MemberOps,
        max_request_bytes: int,
        request_timeout: float = 7.0,
        auth: AuthGate | None = None,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.cluster = cluster
        self.auth = auth  # who asks, checked before reading or proposing (None: a test's server, no auth)
        self.request_timeout = request_timeout  # seconds a proposal may take before ErrTimeout
        self.applier = applier
        self.commits = commits
        self.headers = headers
        self.max_request_bytes = max_request_bytes
        self.replication = replication
        self.members = member_ops
        self.metrics = metrics  # for the parts that serve clients through the server (health, maintenance)
        self.proposals_failed = metrics.proposals_failed
        # Request ids as etcd's idutil makes them: member bits, boot time, then a counter.
        self._next_id = ((cluster.local_id & 0xFFFF) << 48) | ((int(time.time() * 1000) & (2**40 - 1)) << 8)
        self._publish_task: asyncio.Task[None] | None = None
        self.published = asyncio.Event()  # set once this member's attributes are applied (then serve clients)

    async def propose(self, req: raft_internal_pb2.InternalRaftRequest, timeout: float | None = None) -> Any:
        """Replicate one request and return the applier's response (or raise its EtcdError).

        Waits at most ``timeout`` seconds (default: the request timeout).
        """
        if self.auth is not None:
            self.auth.stamp(req.header)  # the caller's user and auth revision, checked again at apply
        self._next_id += 1
        request_id = req.header.ID = self._next_id
        data = req.SerializeToString()
        if len(data) > self.max_request_bytes:
            raise errors.ErrRequestTooLarge()
        # Asked once: on Python 3.11 each get_running_loop() is a getpid system call.
        loop = asyncio.get_running_loop()
        waiter = self.commits.expect(request_id, loop)
        leader_changes = self.replication.leader_changes
        # One timer that fails the waiter, not asyncio.timeout (half the CPU: no cancel and uncancel of
        # the task) nor wait_for (a task more): the waiter wakes this task directly either way.
        timer = loop.call_later(self.request_timeout if timeout is None else timeout, _expire, waiter)
        try:
            self.replication.propose(data)
            response = await waiter
        except TimeoutError:
            # Like etcd: the outcome is unknown to the client; the entry may still be applied later.
            self.proposals_failed.inc()
            raise self._timeout_error(leader_changes) from None
        except BaseException:
            if not waiter.done():  # not proposed, or the caller gave up: failed, as etcd counts it
                self.proposals_failed.inc()
            raise
        finally:
            timer.cancel()
            self.commits.forget(request_id)
        self.fill_header(response.header)
        return response

    def _timeout_error(self, leader_changes: int) -> errors.EtcdError:
        """The error etcd gives a request that timed out: no leader, a leader lost meanwhile, or plain."""
        if self.replication.leader_id == NONE:
            return errors.ErrNoLeader()
        if self.replication.leader_changes != leader_changes:
            return errors.ErrTimeoutDueToLeaderFail()
        return errors.ErrTimeout()

    async def linearizable_barrier(self) -> None:
        """Wait until everything committed before the call began is applied here (ReadIndex, batched)."""
        leader_changes = self.replication.leader_changes
        try:
            async with asyncio.timeout(self.request_timeout):
                index = await self.replication.read_index()
                await self.replication.wait_applied(index)
        except TimeoutError:
            self.metrics.read_indexes_failed.inc()
            raise self._timeout_error(leader_changes) from None

    async def range(self, req: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
        if not req.serializable:
            await self.linearizable_barrier()
        checked = self.auth.check_range(req.key, req.range_end) if self.auth is not None else None
        response = self.applier.range(req)
        if checked is not None and self.auth is not None:
            self.auth.check_still_current(checked)
        self.fill_header(response.header)
        return response

    async def read_only_txn(self, req: rpc_pb2.TxnRequest, *, serializable: bool) -> rpc_pb2.TxnResponse:
        """Serve a read-only txn without a log entry (after ReadIndex unless every read is serializable)."""
        if not serializable:
            await self.linearizable_barrier()
        checked = self.auth.check_txn(req) if self.auth is not None else None
        response = self.applier.read_only_txn(req)
        if checked is not None and self.auth is not None:
            self.auth.check_still_current(checked)
        self.fill_header(response.header)
        return response

    def check_admin(self) -> None:
        """Refuse the caller unless it has the root role (or auth is off): member changes, hashes..."""
        if self.auth is not None:
            self.auth.check_admin()

    @property
    def current_revision(self) -> int:
        return self.applier.current_revision

    @property
    def compact_revision(self) -> int:
        """The last compaction revision applied; -1 if the store was never compacted."""
        return self.applier.compact_revision

    def is_learner(self) -> bool:
        local = self.cluster.local_id
        return local in self.cluster.members and self.cluster.members[local].isLearner

    def alarms(self, alarm: int = rpc_pb2.NONE) -> list[rpc_pb2.AlarmMember]:
        """The active alarms as applied here (all kinds, or only `alarm`'s)."""
        return self.applier.alarms.get(alarm)

    def hash(self) -> int:
        return self.applier.hash()

    def hash_kv(self, revision: int) -> tuple[int, int, int]:
        """(hash, compact_revision, hash_revision) of the store's history up to `revision`."""
        return self.applier.hash_kv(revision)

    async def wait_physical_compaction(self) -> None:
        """Return once every scheduled compaction has been carried out on disk."""
        await self.commits.wait_physical_compaction()

    def fill_header(self, header: rpc_pb2.ResponseHeader) -> None:
        """Set the ids and term; the revision is the store's unless the applier already set it."""
        self.headers.fill(header)

    def header(self) -> rpc_pb2.ResponseHeader:
        return self.headers.new()

    def status(self) -> rpc_pb2.StatusResponse:
        size = self.applier.backend.size_bytes()
        return rpc_pb2.StatusResponse(
            header=self.header(),
            version=ETCD_RELEASE,
            dbSize=size,
            # LevelDB has no free-page list: until compaction reclaims it, every byte on disk is in use.
            dbSizeInUse=size,
            leader=self.replication.leader_id,
            raftIndex=self.replication.commit_index,
            raftTerm=self.replication.term,
            raftAppliedIndex=self.applier.applied_index,
            isLearner=self.is_learner(),
            errors=[] if self.replication.leader_id != NONE else [errors.ErrNoLeader().text],
        )

    def start(self, name: str, client_urls: list[str], *, auto_promote: bool = False) -> None:
        """Publish this member through the log; with `auto_promote`, a learner then promotes itself.

        Replication must be running (the member starts it first).
        """
        self._publish_task = asyncio.get_running_loop().create_task(
            self._publish(name, client_urls, auto_promote), name="etcdpy-publish"
        )
        if self.applier.compaction_pending:  # a compaction interrupted by the last shutdown or crash
            self.commits.resume_compaction()

    async def _promote_self(self) -> None:
        """Ask the leader to promote this learner until it is a voter (refused while not caught up)."""
        local = self.cluster.local_id
        while local in self.cluster.members and self.cluster.members[local].isLearner:
            try:
                await self.members.promote(local)
                log.info("member %x: promoted itself to a voting member", local)
            except errors.EtcdError as exc:
                log.debug("self-promotion not yet possible: %s", exc.text)
                await asyncio.sleep(AUTO_PROMOTE_RETRY_SECONDS)

    async def _publish(self, name: str, client_urls: list[str], auto_promote: bool = False) -> None:
        """Publish name and client URLs through the log (etcd does at every start), retrying until applied.

        The first leader of a cluster then records the cluster version.
        """
        attributes = raft_internal_pb2.MemberAttributesRequest(
            member_ID=self.cluster.local_id, name=name, client_urls=client_urls
        )
        while True:
            try:
                # A short attempt: a proposal a follower forwards before its stream to the leader
                # is up is dropped, not queued; publishing twice is harmless.
                await self.propose(
                    raft_internal_pb2.InternalRaftRequest(member_attributes=attributes),
                    timeout=min(PUBLISH_ATTEMPT_SECONDS, self.request_timeout),
                )
                self.published.set()
                break
            except errors.EtcdError as exc:
                if isinstance(exc, errors.ErrStopped):
                    return
                log.warning("publishing member attributes failed (%s); retrying", exc.text)
        if auto_promote:
            await self._promote_self()
        while not self.replication.cluster_version:
            if self.replication.is_leader():
                version = raft_internal_pb2.ClusterVersionSetRequest(version=CLUSTER_VERSION)
                try:
                    await self.propose(raft_internal_pb2.InternalRaftRequest(cluster_version_set=version))
                except errors.EtcdError as exc:
                    if isinstance(exc, errors.ErrStopped):
                        return  # raised before any await: retrying would spin without yielding
                    log.warning("setting the cluster version failed (%s); retrying", exc.text)
                continue
            await self.replication.wait_leader_change()

    async def stop(self) -> None:
        """Stop publishing; fail every request still waiting with ErrStopped (idempotent).

        Call once replication has stopped: what it had queued is then applied.
        """
        if self._publish_task is not None:
            self._publish_task.cancel()
            await asyncio.wait([self._publish_task])
        self.replication.fail_pending(errors.ErrStopped())
        await self.commits.stop(errors.ErrStopped())


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
            await _auto_compact(server, server.current_revision - int(retention))
    window = min(retention, 3600.0)
    samples: list[tuple[float, int]] = []  # (monotonic time, revision), oldest first
    next_compaction = time.monotonic() + window
    while True:
        now = time.monotonic()
        samples.append((now, server.current_revision))
        old_enough = [rev for at, rev in samples if now - at >= retention]
        if old_enough and now >= next_compaction:
            await _auto_compact(server, old_enough[-1])
            next_compaction = now + window
            samples = [s for s in samples if now - s[0] < retention]
        await asyncio.sleep(window / 10)


async def _auto_compact(server: EtcdServer, revision: int) -> None:
    if revision <= max(server.compact_revision, 0):
        return
    try:
        await server.propose(
            raft_internal_pb2.InternalRaftRequest(compaction=rpc_pb2.CompactionRequest(revision=revision))
        )
        log.info("auto compaction: compacted to revision %d", revision)
    except errors.EtcdError as exc:  # e.g. compacted meanwhile by a client: nothing to do
        log.warning("auto compaction to revision %d failed: %s", revision, exc.text)
