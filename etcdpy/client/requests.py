"""Request builders: keys, ranges, sort options and txn ops, as etcd's Go client forms them.

The `Client` methods and the CLI's txn grammar both build their messages here, so
a range given as ``prefix=True`` means the same bytes on the wire everywhere.
Keys and values are ``bytes`` or ``str`` (UTF-8, with surrogate escapes kept, so a
command-line argument round-trips to its original bytes).
"""

from __future__ import annotations

import enum

from etcdpy.api.etcdserverpb import rpc_pb2 as pb

Bytes = bytes | str

__all__ = [
    "Bytes",
    "CompareResult",
    "CompareTarget",
    "SortOrder",
    "SortTarget",
    "compare",
    "delete_request",
    "op_delete",
    "op_get",
    "op_put",
    "op_txn",
    "prefix_range_end",
    "put_request",
    "range_request",
    "read_only",
    "to_bytes",
]


class SortOrder(enum.IntEnum):
    """RangeRequest.SortOrder."""

    NONE = 0
    ASCEND = 1
    DESCEND = 2


class SortTarget(enum.IntEnum):
    """RangeRequest.SortTarget."""

    KEY = 0
    VERSION = 1
    CREATE = 2
    MOD = 3
    VALUE = 4


class CompareTarget(enum.IntEnum):
    """Compare.CompareTarget: which field of the key a txn compare looks at."""

    VERSION = 0
    CREATE = 1
    MOD = 2
    VALUE = 3
    LEASE = 4


class CompareResult(enum.IntEnum):
    """Compare.CompareResult: the relation a txn compare checks."""

    EQUAL = 0
    GREATER = 1
    LESS = 2
    NOT_EQUAL = 3


def to_bytes(value: Bytes) -> bytes:
    """Encode a key or value; ``str`` becomes UTF-8 (surrogate escapes restored to raw bytes)."""
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def prefix_range_end(prefix: bytes) -> bytes:
    """The range end covering every key that starts with ``prefix`` (``b"\\0"``: no upper bound)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def _key_range(key: Bytes, range_end: Bytes | None, prefix: bool, from_key: bool) -> tuple[bytes, bytes]:
    """Resolve etcdctl's range options to (key, range_end); an empty key with a range means all keys."""
    k = to_bytes(key)
    if prefix or from_key:
        if not k:
            return b"\0", b"\0"
        return k, prefix_range_end(k) if prefix else b"\0"
    return k, to_bytes(range_end) if range_end is not None else b""


def range_request(
    key: Bytes,
    range_end: Bytes | None = None,
    *,
    prefix: bool = False,
    from_key: bool = False,
    limit: int = 0,
    revision: int = 0,
    sort_order: SortOrder = SortOrder.NONE,
    sort_target: SortTarget = SortTarget.KEY,
    serializable: bool = False,
    keys_only: bool = False,
    count_only: bool = False,
) -> pb.RangeRequest:
    """A RangeRequest; ``prefix``/``from_key`` override ``range_end``."""
    k, end = _key_range(key, range_end, prefix, from_key)
    if sort_target == SortTarget.KEY and sort_order == SortOrder.ASCEND:
        # The server already returns keys in ascending order; asking for it
        # explicitly would make it fetch the whole range before applying limit.
        sort_order = SortOrder.NONE
    return pb.RangeRequest(
        key=k,
        range_end=end,
        limit=limit,
        revision=max(revision, 0),
        sort_order=sort_order.name,
        sort_target=sort_target.name,
        serializable=serializable,
        keys_only=keys_only,
        count_only=count_only,
    )


def put_request(
    key: Bytes,
    value: Bytes = b"",
    *,
    lease: int = 0,
    prev_kv: bool = False,
    ignore_value: bool = False,
    ignore_lease: bool = False,
) -> pb.PutRequest:
    """A PutRequest (``lease`` 0 means no lease)."""
    return pb.PutRequest(
        key=to_bytes(key),
        value=to_bytes(value),
        lease=lease,
        prev_kv=prev_kv,
        ignore_value=ignore_value,
        ignore_lease=ignore_lease,
    )


def delete_request(
    key: Bytes,
    range_end: Bytes | None = None,
    *,
    prefix: bool = False,
    from_key: bool = False,
    prev_kv: bool = False,
) -> pb.DeleteRangeRequest:
    """A DeleteRangeRequest; ``prefix``/``from_key`` override ``range_end``."""
    k, end = _key_range(key, range_end, prefix, from_key)
    return pb.DeleteRangeRequest(key=k, range_end=end, prev_kv=prev_kv)


def compare(
    key: Bytes,
    target: CompareTarget,
    result: CompareResult,
    value: int | Bytes,
    range_end: Bytes | None = None,
) -> pb.Compare:
    """A txn Compare: ``target`` of ``key`` stands in ``result`` relation to ``value``."""
    cmp = pb.Compare(
        key=to_bytes(key),
        target=target.name,
        result=result.name,
    )
    if range_end is not None:
        cmp.range_end = to_bytes(range_end)
    if target == CompareTarget.VALUE:
        if isinstance(value, int):
            raise TypeError("a VALUE compare needs bytes or str")
        cmp.value = to_bytes(value)
        return cmp
    if not isinstance(value, int):
        raise TypeError(f"a {target.name} compare needs an int")
    field = {
        CompareTarget.VERSION: "version",
        CompareTarget.CREATE: "create_revision",
        CompareTarget.MOD: "mod_revision",
        CompareTarget.LEASE: "lease",
    }[target]
    setattr(cmp, field, value)
    return cmp


def op_get(request: pb.RangeRequest) -> pb.RequestOp:
    """Wrap a RangeRequest as a txn op."""
    return pb.RequestOp(request_range=request)


def op_put(request: pb.PutRequest) -> pb.RequestOp:
    """Wrap a PutRequest as a txn op."""
    return pb.RequestOp(request_put=request)


def op_delete(request: pb.DeleteRangeRequest) -> pb.RequestOp:
    """Wrap a DeleteRangeRequest as a txn op."""
    return pb.RequestOp(request_delete_range=request)


def op_txn(request: pb.TxnRequest) -> pb.RequestOp:
    """Wrap a TxnRequest as a (nested) txn op."""
    return pb.RequestOp(request_txn=request)


def read_only(request: pb.TxnRequest) -> bool:
    """Whether a txn only reads: each op of both branches a range, or a nested txn that only reads."""
    return all(
        op.HasField("request_range") or (op.HasField("request_txn") and read_only(op.request_txn))
        for op in (*request.success, *request.failure)
    )
