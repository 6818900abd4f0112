"""The backend quota (--quota-backend-bytes): this member's, checked before a write is proposed.

The quota reads the clock and this member's disk, so it is no part of applied
state: `BackendQuota` is one object per member, given to the services that
admit writes (KV's Put and Txn, Lease's LeaseGrant, as etcd 3.4's quotaKVServer
and quotaLeaseServer), which call `check_quota` before they propose.  A request
that would take this member's database past its quota is refused with
``etcdserver: mvcc: database space exceeded`` (ResourceExhausted), after
proposing the NOSPACE alarm for this member through raft, so every member then
refuses such writes while applying (see `etcdpy.server.alarm`) until an operator
frees space and disarms it.  etcd 3.4 also checks the quota while applying
(quotaApplierV3: the write is applied, but answered NOSPACE on a member over its
quota); etcdpy does not, so applying never reads a member's disk.

Costs follow etcd's estimate: a put costs its key and value plus a fixed
per-key overhead, a txn the costlier of its branches, a lease grant a fixed
overhead.  The size measured is the member's whole LevelDB directory (the raft
log lives in it too), re-measured at most every `SIZE_REFRESH_SECONDS` so a burst
of writes costs no extra syscalls.

Where etcdpy differs from etcd 3.4, on purpose: a txn that adds nothing
(read-only or delete-only) always passes, where etcd refuses every txn once the
database is over its quota, so space can always be freed; the alarm is proposed
once, not again for every refused request while this member's NOSPACE is active;
a leased put also costs a lease's overhead, and a nested txn's puts count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.server import raft_requests as kinds
from etcdpy.server.raft_requests import RequestKind
from etcdpy.server.storage.backend import Backend

if TYPE_CHECKING:
    from etcdpy.server.etcdserver import EtcdServer

log = logging.getLogger("etcdpy.server")

DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024  # etcd's default, used for --quota-backend-bytes=0
KV_OVERHEAD = 256  # etcd's estimate of what a key costs beyond its bytes (index, revision, meta)
LEASE_OVERHEAD = 64  # etcd's estimate for a lease
SIZE_REFRESH_SECONDS = 0.5


def _put_cost(put: rpc_pb2.PutRequest) -> int:
    return KV_OVERHEAD + len(put.key) + len(put.value) + (LEASE_OVERHEAD if put.lease else 0)


def _ops_cost(ops: Iterable[rpc_pb2.RequestOp]) -> int:
    cost = 0
    for op in ops:
        kind = op.WhichOneof("request")
        if kind == "request_put":
            cost += _put_cost(op.request_put)
        elif kind == "request_txn":
            cost += txn_cost(op.request_txn)
    return cost


def txn_cost(txn: rpc_pb2.TxnRequest) -> int:
    """What a txn may add: the costlier of its two branches (only one runs)."""
    return max(_ops_cost(txn.success), _ops_cost(txn.failure))


def request_cost(kind: RequestKind, request: Message) -> int:
    """Bytes a request of `kind` may add to the database; 0 if it frees or reads."""
    body: Any = request
    if kind == kinds.PUT:
        return _put_cost(body)
    if kind == kinds.TXN:
        return txn_cost(body)
    if kind == kinds.LEASE_GRANT:
        return LEASE_OVERHEAD
    return 0


class BackendQuota:
    """This member's database size against its quota (member-local: never read while applying)."""

    def __init__(self, backend: Backend, quota_bytes: int = 0, *, clock: Any = time.monotonic) -> None:
        """`quota_bytes` is --quota-backend-bytes (0: etcd's default, 2 GiB)."""
        self.backend = backend
        self.quota_bytes = quota_bytes or DEFAULT_QUOTA_BYTES
        self._clock = clock
        self._size = 0
        self._admitted = 0  # cost of the requests let through since the last measurement
        self._measured_at: float | None = None

    def size(self) -> int:
        """The database size: measured on disk at most every SIZE_REFRESH_SECONDS, plus what was admitted.

        Counting what was let through since the measurement keeps a burst of writes from
        overshooting the quota by everything one refresh interval can carry.
        """
        now = self._clock()
        if self._measured_at is None or now - self._measured_at >= SIZE_REFRESH_SECONDS:
            self._size = self.backend.size_bytes()
            self._admitted = 0
            self._measured_at = now
        return self._size + self._admitted

    def available(self, cost: int) -> bool:
        """Whether a request of this cost fits (a request that adds nothing always does); admits it if so."""
        if cost == 0:
            return True
        if self.size() + cost >= self.quota_bytes:
            return False
        self._admitted += cost
        return True


async def check_quota(server: EtcdServer, quota: BackendQuota, kind: RequestKind, request: Message) -> None:
    """Refuse a request of `kind` with ErrNoSpace if it does not fit, raising this member's NOSPACE first.

    etcd 3.4's quotaAlarmer.check, called by the services before they propose.
    """
    if quota.available(request_cost(kind, request)):
        return
    member_id = server.cluster.local_id
    # Read, not applied: only so that this member proposes its alarm once.
    if all(m.memberID != member_id for m in server.alarms(rpc_pb2.NOSPACE)):
        log.warning(
            "database size %d bytes exceeds the quota of %d bytes: raising the NOSPACE alarm",
            quota.size(),
            quota.quota_bytes,
        )
        activate = rpc_pb2.AlarmRequest(
            action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=member_id, alarm=rpc_pb2.NOSPACE
        )
        try:
            await server.propose(raft_internal_pb2.InternalRaftRequest(alarm=activate))
        except errors.EtcdError as exc:  # etcd ignores it too: the request is refused all the same
            log.warning("could not raise the NOSPACE alarm: %s", exc.text)
    raise errors.ErrNoSpace()
