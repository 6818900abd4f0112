"""LeaseDriver: the leader's lease work on the event loop, through the server's propose path.

Expired leases become LeaseRevoke proposals (so on a cluster they go through
Raft and every member deletes the same keys at the same revision); remaining
TTLs are checkpointed through the log (on by default, unlike etcd) so a new
leader counts down from what was left.  Whether this member leads comes from
the ``is_leader`` hook; the driver promotes or demotes the lessor when it flips.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.server.lease.lessor import Lessor

log = logging.getLogger("etcdpy.server.lease")

Propose = Callable[[raft_internal_pb2.InternalRaftRequest], Awaitable[Any]]

POLL_SECONDS = 0.5  # etcd's lessor checks for expired leases every 500 ms
REVOKE_RETRY_SECONDS = 3.0  # etcd's expiredLeaseRetryInterval: re-propose a revoke that did not land
REVOKES_PER_STEP = 500  # etcd revokes at most 1000 leases per second
CHECKPOINT_SECONDS = 5.0  # etcd checkpoints every 5 minutes; etcdpy often enough that a new leader is close
CHECKPOINT_BATCH = 1000  # etcd's maxLeaseCheckpointBatchSize


class LeaseDriver:
    """LeaseDriver runs expiry and checkpoints while this member leads; ``run`` until cancelled."""

    def __init__(
        self,
        lessor: Lessor,
        propose: Propose,
        *,
        is_leader: Callable[[], bool],
        ensure_leadership: Callable[[], Awaitable[None]] | None = None,
        checkpoint: bool = True,
        checkpoint_interval: float = CHECKPOINT_SECONDS,
        poll_interval: float = POLL_SECONDS,
    ) -> None:
        self.lessor = lessor
        self.propose = propose
        self.is_leader = is_leader
        self.ensure_leadership = ensure_leadership  # raises if a quorum no longer follows this member
        self.checkpoint = checkpoint
        self.checkpoint_interval = checkpoint_interval
        self.poll_interval = poll_interval
        self._last_checkpoint = lessor.clock()
        self._revokes: set[asyncio.Task[None]] = set()  # in-flight revoke proposals (kept referenced)

    async def run(self) -> None:
        try:
            while True:
                await self.step()
                await asyncio.sleep(self._sleep_time())
        finally:
            for task in self._revokes:
                task.cancel()

    def _sleep_time(self) -> float:
        upcoming = self.lessor.next_expiry()
        if upcoming is None:
            return self.poll_interval
        return min(self.poll_interval, max(0.01, upcoming - self.lessor.clock()))

    async def step(self) -> None:
        """Follow leadership, propose revokes of expired leases, and a checkpoint when one is due."""
        if not self.follow_leadership():
            return
        for lease_id in self.lessor.expired(REVOKE_RETRY_SECONDS, REVOKES_PER_STEP):
            task = asyncio.get_running_loop().create_task(self._revoke(lease_id))
            self._revokes.add(task)
            task.add_done_callback(self._revokes.discard)
        if self.checkpoint and self.lessor.clock() - self._last_checkpoint >= self.checkpoint_interval:
            self._last_checkpoint = self.lessor.clock()
            await self.propose_checkpoints()

    def follow_leadership(self) -> bool:
        """Promote or demote the lessor if leadership changed; whether this member leads."""
        leading = self.is_leader()
        if leading and not self.lessor.is_primary:
            self.lessor.promote()
            self._last_checkpoint = self.lessor.clock()
        elif not leading and self.lessor.is_primary:
            self.lessor.demote()
        return leading

    async def _revoke(self, lease_id: int) -> None:
        request = raft_internal_pb2.InternalRaftRequest(lease_revoke=rpc_pb2.LeaseRevokeRequest(ID=lease_id))
        try:
            await self.propose(request)
            self.lessor.counts.expired()
        except errors.ErrLeaseNotFound:
            pass  # revoked by a client meanwhile
        except errors.EtcdError as exc:  # retried after REVOKE_RETRY_SECONDS
            log.warning("revoking expired lease %016x failed: %s", lease_id, exc.text)

    async def propose_checkpoints(self) -> None:
        """Propose the remaining TTL of every lease that counted down, in batches."""
        while True:
            batch = self.lessor.checkpoints(CHECKPOINT_BATCH)
            if not batch:
                return
            await self.propose(
                raft_internal_pb2.InternalRaftRequest(
                    lease_checkpoint=rpc_pb2.LeaseCheckpointRequest(checkpoints=batch)
                )
            )

    async def keep_alive(self, lease_id: int) -> int:
        """Renew a lease on the leader; returns its TTL (ErrLeaseNotFound if gone or expired).

        A checkpointed remaining TTL is cleared through the log first, so a new
        leader would not count down from a value older than this renewal.  Leadership
        is confirmed first when `ensure_leadership` asks for it: a deposed leader that
        does not know it yet would renew a lease the new leader is counting down.
        """
        if self.ensure_leadership is not None:
            await self.ensure_leadership()
        self.follow_leadership()  # a keep-alive may arrive before the loop noticed a new leadership
        self.lessor.renew(lease_id)
        self.lessor.counts.renewed()
        if self.checkpoint and self.lessor.needs_checkpoint_clear(lease_id):
            await self.propose(
                raft_internal_pb2.InternalRaftRequest(
                    lease_checkpoint=rpc_pb2.LeaseCheckpointRequest(
                        checkpoints=[rpc_pb2.LeaseCheckpoint(ID=lease_id, remaining_TTL=0)]
                    )
                )
            )
        return self.lessor.renew(lease_id)
