"""Lessor: the leases of one member, applied deterministically, counted down only by the leader.

Two halves share the lease table:

* apply (every member, same result): the LEASE_GRANT, LEASE_REVOKE and
  LEASE_CHECKPOINT requests, whose handlers `Lessor.handlers` gives the
  `Applier` at construction; each writes its lease record under the ``l``
  keyspace in the apply batch.  A revoke deletes every attached key in ONE
  revision (a DELETE event per key).  The lessor is also the store's
  `LeaseLookup`, so a put with a lease attaches the key here while the batch is
  built.
* countdown (the leader only; ``promote``/``demote``): expiry times from an
  injected clock, `renew`, `expired` and `checkpoints`.  Nothing here proposes:
  `LeaseDriver` turns expired leases into LeaseRevoke proposals.

Stored record (``l`` + 8-byte signed big-endian ID): ``>qq`` granted TTL and the
last checkpointed remaining TTL (0: none).  The remaining TTL is what a new
leader counts down from, so a leader change neither resets nor extends a lease.
"""

from __future__ import annotations

import math
import random
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.server import raft_requests as kinds
from etcdpy.server.apply import RequestHandler
from etcdpy.server.metrics import NO_METRICS, LeaseCounts
from etcdpy.server.mvcc.writer import Batch
from etcdpy.server.raft_requests import RequestKind
from etcdpy.server.storage import schema
from etcdpy.server.storage.backend import Backend

_ids = random.SystemRandom()  # server-chosen lease IDs

Clock = Callable[[], float]
"""Monotonic seconds; tests inject a fake one."""

NO_LEASE = 0
MAX_LEASE_TTL = 9_000_000_000  # etcd's MaxLeaseTTL, in seconds
_RECORD = struct.Struct(">qq")


def min_lease_ttl(election_timeout_ms: int) -> int:
    """etcd's minimum TTL: 1.5 election timeouts, rounded up to whole seconds."""
    return max(1, math.ceil(1.5 * election_timeout_ms / 1000))


def lease_key(lease_id: int) -> bytes:
    return schema.LEASES + lease_id.to_bytes(8, "big", signed=True)


@dataclass
class Lease:
    """Lease is one granted lease; ``expiry`` is set only while this member is the leader."""

    id: int
    ttl: int  # granted TTL in seconds (invariant: >= the minimum TTL when granted, <= MAX_LEASE_TTL)
    remaining_ttl: int = 0  # last checkpointed remaining seconds; 0 = never checkpointed (count from ttl)
    keys: set[bytes] = field(default_factory=set)
    expiry: float | None = None  # leader only: clock time it expires; None = not counted here
    revoke_proposed_at: float | None = None  # leader only: when expiry last proposed its revoke


class Lessor:
    """Lessor holds every lease and the keys attached to it; the applier's LeaseLookup."""

    def __init__(
        self,
        backend: Backend,
        *,
        min_ttl: int,
        clock: Clock = time.monotonic,
        counts: LeaseCounts = NO_METRICS.lease,
    ) -> None:
        self.backend = backend
        self.counts = counts  # etcd_debugging_lease_* (renewals and expiries: the LeaseDriver's)
        self.min_ttl = min_ttl
        self.clock = clock
        self._leases: dict[int, Lease] = {}
        self._primary = False  # whether this member counts down (the leader)
        self.reload()

    # ---- loading ----

    def reload(self) -> None:
        """Re-read the lease records from the backend (startup, after a snapshot replaced the data)."""
        self._leases = {}
        stop = bytes([schema.LEASES[0] + 1])
        for key, value in self.backend.db.iterator(start=schema.LEASES, stop=stop):
            lease_id = int.from_bytes(key[1:], "big", signed=True)
            ttl, remaining = _RECORD.unpack(value)
            self._leases[lease_id] = Lease(lease_id, ttl, remaining)
        if self._primary:
            self.promote()

    def restore_keys(self, leased_keys: Iterable[tuple[int, bytes]]) -> None:
        """Attach keys found in the store (``KVStore.leased_keys()``) after `reload`.

        With no lease there is nothing to attach: the generator is not started, so a store without
        leases is not scanned (a million keys took 1.5 s of a restart).
        """
        if not self._leases:
            return
        for lease_id, key in leased_keys:
            lease = self._leases.get(lease_id)
            if lease is not None:
                lease.keys.add(key)

    # ---- LeaseLookup (called while the applier builds a batch) ----

    def exists(self, lease_id: int) -> bool:
        return lease_id in self._leases

    def attach(self, key: bytes, lease_id: int) -> None:
        lease = self._leases.get(lease_id)
        if lease is not None:
            lease.keys.add(key)

    def detach(self, key: bytes, lease_id: int) -> None:
        lease = self._leases.get(lease_id)
        if lease is not None:
            lease.keys.discard(key)

    # ---- apply ----

    def handlers(self) -> dict[RequestKind, RequestHandler]:
        """Applier handlers for the lease request kinds (pass to ``Applier(handlers=...)``)."""
        return {
            kinds.LEASE_GRANT: self.apply_grant,
            kinds.LEASE_REVOKE: self.apply_revoke,
            kinds.LEASE_CHECKPOINT: self.apply_checkpoint,
        }

    def apply_grant(self, batch: Batch, req: rpc_pb2.LeaseGrantRequest) -> rpc_pb2.LeaseGrantResponse:
        """Create the lease with the (proposer-chosen) ID and TTL."""
        if req.ID == NO_LEASE:
            raise errors.ErrLeaseNotFound()
        if req.TTL > MAX_LEASE_TTL:
            raise errors.ErrLeaseTTLTooLarge()
        if req.ID in self._leases:
            raise errors.ErrLeaseExist()
        lease = Lease(req.ID, req.TTL)
        self._leases[req.ID] = lease
        self._store(batch, lease)
        if self._primary:
            lease.expiry = self.clock() + lease.ttl
        self.counts.granted(req.TTL)
        resp = rpc_pb2.LeaseGrantResponse(ID=req.ID, TTL=req.TTL)
        resp.header.revision = batch.rev
        return resp

    def apply_revoke(self, batch: Batch, req: rpc_pb2.LeaseRevokeRequest) -> rpc_pb2.LeaseRevokeResponse:
        """Delete the lease and, in one revision, every key attached to it."""
        lease = self._leases.get(req.ID)
        if lease is None:
            raise errors.ErrLeaseNotFound()
        self.counts.revoked(len(lease.keys))  # before the deletes detach them
        with batch.writing() as w:
            for key in sorted(lease.keys):  # sorted: every member deletes in the same sub-revision order
                w.delete_range(key, None)
        del self._leases[req.ID]
        batch.wb.delete(lease_key(req.ID))
        resp = rpc_pb2.LeaseRevokeResponse()
        resp.header.revision = batch.rev
        return resp

    def apply_checkpoint(
        self, batch: Batch, req: rpc_pb2.LeaseCheckpointRequest
    ) -> rpc_pb2.LeaseCheckpointResponse:
        """Record each lease's remaining TTL (leases gone meanwhile are skipped)."""
        for cp in req.checkpoints:
            lease = self._leases.get(cp.ID)
            if lease is not None:
                lease.remaining_ttl = cp.remaining_TTL
                self._store(batch, lease)
        resp = rpc_pb2.LeaseCheckpointResponse()
        resp.header.revision = batch.rev
        return resp

    def _store(self, batch: Batch, lease: Lease) -> None:
        batch.wb.put(lease_key(lease.id), _RECORD.pack(lease.ttl, lease.remaining_ttl))

    # ---- proposer side ----

    def check_grant(self, req: rpc_pb2.LeaseGrantRequest) -> rpc_pb2.LeaseGrantRequest:
        """The grant to propose: TTL raised to the minimum, and an ID chosen here if the client named none.

        Both are settled before proposing, so apply is the same on every member.
        """
        if req.TTL > MAX_LEASE_TTL:
            raise errors.ErrLeaseTTLTooLarge()
        if req.ID != NO_LEASE and req.ID in self._leases:
            raise errors.ErrLeaseExist()
        lease_id = req.ID
        while lease_id == NO_LEASE or lease_id in self._leases:
            lease_id = _ids.getrandbits(63)  # etcd picks a positive int64 the same way: never 0
        return rpc_pb2.LeaseGrantRequest(ID=lease_id, TTL=max(req.TTL, self.min_ttl))

    # ---- leader countdown ----

    @property
    def is_primary(self) -> bool:
        return self._primary

    def promote(self, extend: float = 0.0) -> None:
        """Start counting down (on becoming leader): from the checkpointed remaining TTL, else the TTL."""
        self._primary = True
        now = self.clock()
        for lease in self._leases.values():
            lease.expiry = now + (lease.remaining_ttl or lease.ttl) + extend
            lease.revoke_proposed_at = None

    def demote(self) -> None:
        """Stop counting down (leadership lost): the next leader counts."""
        self._primary = False
        for lease in self._leases.values():
            lease.expiry = None
            lease.revoke_proposed_at = None

    def renew(self, lease_id: int) -> int:
        """Restart the countdown of a lease; returns its TTL.  ErrLeaseNotFound if gone or expired."""
        if not self._primary:
            raise errors.ErrNotLeader()
        lease = self._leases.get(lease_id)
        if lease is None or (lease.expiry is not None and lease.expiry <= self.clock()):
            # An expired lease is being revoked: renewing must not bring it back.
            raise errors.ErrLeaseNotFound()
        lease.expiry = self.clock() + lease.ttl
        return lease.ttl

    def needs_checkpoint_clear(self, lease_id: int) -> bool:
        """Whether a renewed lease still carries a checkpointed remaining TTL a new leader would use."""
        lease = self._leases.get(lease_id)
        return lease is not None and lease.remaining_ttl > 0

    def remaining(self, lease: Lease) -> float:
        """Seconds until expiry (the TTL itself when this member does not count down)."""
        if lease.expiry is None:
            return float(lease.remaining_ttl or lease.ttl)
        return lease.expiry - self.clock()

    def expired(self, retry_after: float, limit: int) -> list[int]:
        """IDs of expired leases whose revoke is not in flight (or was proposed ``retry_after`` ago)."""
        if not self._primary:
            return []
        now = self.clock()
        found: list[int] = []
        for lease in self._leases.values():
            if lease.expiry is None or lease.expiry > now:
                continue
            if lease.revoke_proposed_at is not None and now - lease.revoke_proposed_at < retry_after:
                continue
            lease.revoke_proposed_at = now
            found.append(lease.id)
            if len(found) == limit:
                break
        return found

    def next_expiry(self) -> float | None:
        """The earliest expiry time counted here (None if nothing counts down)."""
        times = [lease.expiry for lease in self._leases.values() if lease.expiry is not None]
        return min(times) if times else None

    def checkpoints(self, limit: int) -> list[rpc_pb2.LeaseCheckpoint]:
        """Remaining TTLs worth recording: leases counted here that have used some of their TTL."""
        out: list[rpc_pb2.LeaseCheckpoint] = []
        for lease in self._leases.values():
            if lease.expiry is None:
                continue
            left = math.ceil(self.remaining(lease))
            if 0 < left < lease.ttl and left != lease.remaining_ttl:
                out.append(rpc_pb2.LeaseCheckpoint(ID=lease.id, remaining_TTL=left))
                if len(out) == limit:
                    break
        return out

    # ---- queries ----

    def time_to_live(self, lease_id: int, *, keys: bool) -> rpc_pb2.LeaseTimeToLiveResponse:
        """etcd's LeaseTimeToLive: TTL -1 once the lease is gone; remaining seconds truncated."""
        lease = self._leases.get(lease_id)
        if lease is None:
            return rpc_pb2.LeaseTimeToLiveResponse(ID=lease_id, TTL=-1)
        resp = rpc_pb2.LeaseTimeToLiveResponse(
            ID=lease_id, TTL=max(0, int(self.remaining(lease))), grantedTTL=lease.ttl
        )
        if keys:
            resp.keys.extend(sorted(lease.keys))
        return resp

    def leases(self) -> rpc_pb2.LeaseLeasesResponse:
        return rpc_pb2.LeaseLeasesResponse(
            leases=[rpc_pb2.LeaseStatus(ID=lease_id) for lease_id in sorted(self._leases)]
        )

    def lookup(self, lease_id: int) -> Lease | None:
        return self._leases.get(lease_id)
