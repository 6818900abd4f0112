"""Stateless request checks etcd's gRPC layer runs before proposing (v3rpc/key.go).

The server calls these before a request enters the raft log; they need no
store state.  Each raises the `etcdpy.api.errors` class etcd answers with.
"""

from __future__ import annotations

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2

DEFAULT_MAX_TXN_OPS = 128

_SORT_ORDERS = frozenset(rpc_pb2.RangeRequest.SortOrder.values())
_SORT_TARGETS = frozenset(rpc_pb2.RangeRequest.SortTarget.values())


def check_range_request(req: rpc_pb2.RangeRequest) -> None:
    """A range needs a key and known sort options (etcd 3.4 crashes on an unknown target; 3.5 rejects)."""
    if not req.key:
        raise errors.ErrEmptyKey()
    if req.sort_order not in _SORT_ORDERS or req.sort_target not in _SORT_TARGETS:
        raise errors.ErrInvalidSortOption()


def check_put_request(req: rpc_pb2.PutRequest) -> None:
    if not req.key:
        raise errors.ErrEmptyKey()
    if req.ignore_value and req.value:
        raise errors.ErrValueProvided()
    if req.ignore_lease and req.lease:
        raise errors.ErrLeaseProvided()


def check_delete_request(req: rpc_pb2.DeleteRangeRequest) -> None:
    if not req.key:
        raise errors.ErrEmptyKey()


def check_txn_request(req: rpc_pb2.TxnRequest, max_txn_ops: int = DEFAULT_MAX_TXN_OPS) -> None:
    """Check sizes, keys and every op, then that no two writes of one branch touch the same key."""
    _check_txn_ops(req, max_txn_ops)
    _check_intervals(list(req.success))
    _check_intervals(list(req.failure))


def _check_txn_ops(req: rpc_pb2.TxnRequest, max_txn_ops: int) -> None:
    # A nested txn's budget is what its parent's longest list leaves over (etcd's accounting).
    ops = max(len(req.compare), len(req.success), len(req.failure))
    if ops > max_txn_ops:
        raise errors.ErrTooManyOps()
    for cmp in req.compare:
        if not cmp.key:
            raise errors.ErrEmptyKey()
    for op in (*req.success, *req.failure):
        _check_request_op(op, max_txn_ops - ops)


def _check_request_op(op: rpc_pb2.RequestOp, max_txn_ops: int) -> None:
    kind = op.WhichOneof("request")
    if kind == "request_range":
        check_range_request(op.request_range)
    elif kind == "request_put":
        check_put_request(op.request_put)
    elif kind == "request_delete_range":
        check_delete_request(op.request_delete_range)
    elif kind == "request_txn":
        _check_txn_ops(op.request_txn, max_txn_ops)
    else:
        raise errors.ErrKeyNotFound()  # an empty op: etcd's answer


class _Deletes:
    """Deleted ranges of a branch, with etcd's overlap test for a put key.

    A put of k overlaps [begin, end) when begin <= k < end; an empty end is
    open; a delete of one key is [k, k + "\\0").  etcd compares the literal end,
    so a from-key delete (end "\\0") never overlaps a put: kept for compatibility.
    """

    def __init__(self) -> None:
        self.ranges: list[tuple[bytes, bytes | None]] = []  # (begin, end); None = single key

    def add(self, key: bytes, range_end: bytes) -> None:
        self.ranges.append((key, range_end or None))

    def hits(self, k: bytes) -> bool:
        for begin, end in self.ranges:
            if end is None:
                if k == begin:
                    return True
            elif begin <= k < end:
                return True
        return False


def _check_intervals(reqs: list[rpc_pb2.RequestOp]) -> tuple[set[bytes], _Deletes]:
    """Return the (puts, deletes) of a branch and its nested txns; ErrDuplicateKey on an overlap.

    Two puts of one key overlap, and so does a put inside a deleted range (at any
    nesting level).  Deletes may overlap each other.  The then- and else-branch
    of one nested txn may put the same key: only one of them runs.
    """
    dels = _Deletes()
    for op in reqs:
        if op.WhichOneof("request") == "request_delete_range":
            dels.add(op.request_delete_range.key, op.request_delete_range.range_end)
    puts: set[bytes] = set()
    for op in reqs:
        if op.WhichOneof("request") != "request_txn":
            continue
        puts_then, dels_then = _check_intervals(list(op.request_txn.success))
        puts_else, dels_else = _check_intervals(list(op.request_txn.failure))
        for k in puts_then:
            if k in puts or dels.hits(k):
                raise errors.ErrDuplicateKey()
            puts.add(k)
        for k in puts_else:
            if (k in puts and k not in puts_then) or dels.hits(k):
                raise errors.ErrDuplicateKey()
            puts.add(k)
        dels.ranges.extend(dels_then.ranges)
        dels.ranges.extend(dels_else.ranges)
    for op in reqs:
        if op.WhichOneof("request") != "request_put":
            continue
        k = op.request_put.key
        if k in puts or dels.hits(k):
            raise errors.ErrDuplicateKey()
        puts.add(k)
    return puts, dels
