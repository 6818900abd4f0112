"""Alarms: the cluster-wide NOSPACE and CORRUPT states, applied through raft as etcd applies them.

An alarm is a (member ID, alarm type) pair.  `Alarms.apply` handles the
``alarm`` field of an InternalRaftRequest (an AlarmRequest) inside the apply
batch, so every member holds the same set and it survives restarts (keyspace
``x`` of `schema`: ``x | member ID (8, big-endian) | type (4, signed)``, empty
value).  Snapshots carry the keyspace like the rest of the state.

While an alarm is active the applier refuses what etcd refuses, deterministically
on every member, through two layers of its chain (see `etcdpy.server.apply`),
etcd's applierV3Corrupt then applierV3Capped:

- `Alarms.corrupt_layer`, CORRUPT (any member): every write through the log --
  put, delete, txn, compaction, lease grant and revoke -- fails with
  ``etcdserver: corrupt cluster`` (DataLoss).  Reads, which do not go through
  the log, are served.
- `Alarms.capped_layer`, NOSPACE (any member): put, a txn with a put in either
  branch (nested txns included, where etcd 3.4 looks at the top level only), and
  lease grant fail with ``etcdserver: mvcc: database space exceeded``
  (ResourceExhausted); deletes, compactions and revokes go through, so space can
  be freed.

This member's own quota, which raises NOSPACE, is not applied state: it lives in
`etcdpy.server.quota`, checked by the services before they propose.

Like etcd, the alarm state changes while a batch is applied: an entry after an
ACTIVATE in the same batch is already refused.  The in-memory set is updated as
the batch is built, because a failed batch write stops the member anyway.

Alarm requests follow etcd 3.4: GET with NONE lists every alarm, with a type
lists that type (whatever the member ID); ACTIVATE stores any pair (even NONE
or an unknown type, as etcd does) and answers it; DEACTIVATE answers the pair if
it was active, nothing otherwise.  An unknown action answers an empty response
(etcd 3.4 crashes there).  The response carries no header, as etcd's.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.server import raft_requests as kinds
from etcdpy.server.mvcc.writer import Batch
from etcdpy.server.raft_requests import Request
from etcdpy.server.storage import schema
from etcdpy.server.storage.backend import Backend

if TYPE_CHECKING:  # apply.py imports this module
    from etcdpy.server.apply import ApplyFn

NOSPACE = rpc_pb2.NOSPACE
CORRUPT = rpc_pb2.CORRUPT
_KEY = struct.Struct(">Qi")  # member ID, alarm type (an open enum: any int32 on the wire)

_CORRUPT_REFUSES = frozenset(
    {kinds.PUT, kinds.DELETE_RANGE, kinds.TXN, kinds.COMPACTION, kinds.LEASE_GRANT, kinds.LEASE_REVOKE}
)
_NOSPACE_REFUSES = frozenset({kinds.PUT, kinds.LEASE_GRANT})  # and a txn that puts (`has_put`)


def _key(member_id: int, alarm: int) -> bytes:
    return schema.ALARMS + _KEY.pack(member_id, alarm)


def has_put(ops: Iterable[rpc_pb2.RequestOp]) -> bool:
    """Whether any op (or any op of a nested txn, either branch) is a put: what NOSPACE refuses."""
    for op in ops:
        kind = op.WhichOneof("request")
        if kind == "request_put":
            return True
        if kind == "request_txn" and (has_put(op.request_txn.success) or has_put(op.request_txn.failure)):
            return True
    return False


def _grows(request: Request) -> bool:
    if request.kind == kinds.TXN:
        body: Any = request.body
        return has_put(body.success) or has_put(body.failure)
    return request.kind in _NOSPACE_REFUSES


class Alarms:
    """The active alarms of the cluster, as applied so far on this member."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._active: set[tuple[int, int]] = set()  # (member ID, alarm type); mirrors keyspace x
        self.reload()

    def reload(self) -> None:
        """Re-read the alarms from the database (at start and after a snapshot replaced the state)."""
        self._active = {
            _KEY.unpack_from(key, len(schema.ALARMS))
            for key in self.backend.db.iterator(prefix=schema.ALARMS, include_value=False)
        }

    def get(self, alarm: int = rpc_pb2.NONE) -> list[rpc_pb2.AlarmMember]:
        """The active alarms of type `alarm` (all of them for NONE), ordered by member ID then type."""
        return [
            rpc_pb2.AlarmMember(memberID=member_id, alarm=kind)  # type: ignore[arg-type]  # open enum
            for member_id, kind in sorted(self._active)
            if alarm == rpc_pb2.NONE or kind == alarm
        ]

    def active(self, alarm: int) -> bool:
        return any(kind == alarm for _member, kind in self._active)

    def corrupt_layer(self, batch: Batch, request: Request, apply_next: ApplyFn) -> Message:
        """The chain's outermost layer: under CORRUPT, refuse every write with ErrCorrupt."""
        if self._active and request.kind in _CORRUPT_REFUSES and self.active(CORRUPT):
            raise errors.ErrCorrupt()
        return apply_next(batch, request)

    def capped_layer(self, batch: Batch, request: Request, apply_next: ApplyFn) -> Message:
        """The layer below `corrupt_layer`: under NOSPACE, refuse what adds keys or leases with ErrNoSpace."""
        if self._active and self.active(NOSPACE) and _grows(request):
            raise errors.ErrNoSpace()
        return apply_next(batch, request)

    def apply(self, wb: Any, request: rpc_pb2.AlarmRequest) -> rpc_pb2.AlarmResponse:
        """Apply one AlarmRequest, adding its change to write batch `wb`; the response has no header."""
        response = rpc_pb2.AlarmResponse()
        pair = (request.memberID, int(request.alarm))
        if request.action == rpc_pb2.AlarmRequest.GET:
            response.alarms.extend(self.get(request.alarm))
        elif request.action == rpc_pb2.AlarmRequest.ACTIVATE:
            if pair not in self._active:
                wb.put(_key(*pair), b"")
                self._active.add(pair)
            response.alarms.add(memberID=pair[0], alarm=pair[1])
        elif request.action == rpc_pb2.AlarmRequest.DEACTIVATE and pair in self._active:
            wb.delete(_key(*pair))
            self._active.discard(pair)
            response.alarms.add(memberID=pair[0], alarm=pair[1])
        return response
