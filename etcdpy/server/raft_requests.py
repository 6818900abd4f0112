"""Request kinds: the fields of InternalRaftRequest that carry a request, read from its descriptor.

Every field of ``InternalRaftRequest`` but ``header`` and ``ID`` carries one kind
of request (``put``, ``lease_grant``, ``auth_user_add``...), and a log entry sets
exactly one of them.  `REQUEST_KINDS` is built from the message's descriptor, so
a field added to raft_internal.proto is a new kind at once; the names used in
code (`PUT`, `TXN`...) are checked against it when this module loads.

A kind is a `RequestKind`, not a bare string: mypy refuses ``"put"`` where a kind
is expected, and a misspelt name fails at import.  The applier must answer every
kind (tests/unit/test_apply_chain.py checks the member's): with a handler, or by
listing it in `NOT_SERVED`, which the applier answers ``ErrNotCapable``.
"""

from __future__ import annotations

from typing import NamedTuple, NewType

from google.protobuf.message import Message

from etcdpy.api.etcdserverpb import raft_internal_pb2

RequestKind = NewType("RequestKind", str)
"""The name of the InternalRaftRequest field that carries a request (e.g. ``put``)."""

_NOT_REQUESTS = frozenset({"header", "ID"})  # the entry's own fields: who proposed it, and its legacy ID

REQUEST_KINDS: frozenset[RequestKind] = frozenset(
    RequestKind(field.name)
    for field in raft_internal_pb2.InternalRaftRequest.DESCRIPTOR.fields
    if field.name not in _NOT_REQUESTS
)


def _kind(name: str) -> RequestKind:
    assert name in REQUEST_KINDS, f"InternalRaftRequest has no request field {name!r}"
    return RequestKind(name)


RANGE = _kind("range")
PUT = _kind("put")
DELETE_RANGE = _kind("delete_range")
TXN = _kind("txn")
COMPACTION = _kind("compaction")
LEASE_GRANT = _kind("lease_grant")
LEASE_REVOKE = _kind("lease_revoke")
LEASE_CHECKPOINT = _kind("lease_checkpoint")
ALARM = _kind("alarm")
MEMBER_ATTRIBUTES = _kind("member_attributes")
CLUSTER_VERSION_SET = _kind("cluster_version_set")

# The request fields in field-number order, the order ListFields lists them in: `Request.of` asks
# each in turn, cheaper than ListFields (which builds a descriptor and value pair per set field).
_BY_NUMBER: tuple[RequestKind, ...] = tuple(
    RequestKind(name)
    for _, name in sorted(
        (field.number, field.name) for field in raft_internal_pb2.InternalRaftRequest.DESCRIPTOR.fields
    )
    if name not in _NOT_REQUESTS
)

NOT_SERVED: frozenset[RequestKind] = frozenset()
"""Kinds no member proposes: the applier answers them ErrNotCapable.  Empty since auth is served; a
field added to InternalRaftRequest goes here until something applies it."""


class Request(NamedTuple):
    """Request is one log entry's request, as the apply chain passes it from layer to layer."""

    kind: RequestKind
    body: Message  # the set field's message: a PutRequest for PUT, ...
    header: raft_internal_pb2.RequestHeader  # the proposer's request ID; auth's user name and revision
    raft_index: int = 0  # the raft index of its entry (etcd's simple auth tokens end with it)

    @classmethod
    def of(cls, entry: raft_internal_pb2.InternalRaftRequest, index: int = 0) -> Request | None:
        """The request `entry` (at raft `index`) carries; None if it sets no request field."""
        for kind in _BY_NUMBER:  # the first set, as ListFields would find it
            if entry.HasField(kind):
                return cls(kind, getattr(entry, kind), entry.header, index)
        return None
