"""Range, Put and DeleteRange requests applied to a reader or write transaction, as etcd does.

Each function takes the already validated request (see `validate`) and returns
the response with ``header.revision`` set; errors are `etcdpy.api.errors`.
"""

from __future__ import annotations

from collections.abc import Callable

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server.mvcc.leases import LeaseLookup
from etcdpy.server.mvcc.reader import Reader, key_range
from etcdpy.server.mvcc.writer import WriteTxn

RangeRequest = rpc_pb2.RangeRequest

_SORT_KEYS: dict[int, Callable[[kv_pb2.KeyValue], int | bytes]] = {
    RangeRequest.KEY: lambda kv: kv.key,
    RangeRequest.VERSION: lambda kv: kv.version,
    RangeRequest.CREATE: lambda kv: kv.create_revision,
    RangeRequest.MOD: lambda kv: kv.mod_revision,
    RangeRequest.VALUE: lambda kv: kv.value,
}


def range_request(reader: Reader, req: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
    """Answer a RangeRequest with etcd's order of steps.

    1. Fetch in key order: everything when sorting or filtering, else limit + 1
       (the extra one tells ``more``).  Sort order NONE counts as "not sorting"
       here even with a non-KEY sort target.
    2. Drop KeyValues outside the min/max mod/create revision filters.
    3. Sort: a non-KEY target with order NONE sorts ASCEND (after the fetch
       above, so only the fetched ones are sorted); ties keep key order.
    4. Truncate to limit (``more`` if anything was cut).
    ``count`` is every live key in the range at the revision, ignoring limit and
    filters; ``header.revision`` is the reader's revision, not the one asked for.
    """
    rev = reader.check_revision(req.revision)
    end = key_range(req.key, req.range_end)
    resp = rpc_pb2.RangeResponse()
    resp.header.revision = reader.rev
    if req.count_only:
        resp.count = reader.count(req.key, end, rev)
        return resp
    filtered = bool(
        req.min_mod_revision or req.max_mod_revision or req.min_create_revision or req.max_create_revision
    )
    # how many to fetch in key order (0 = all); a negative limit means no limit, as in etcd
    fetch = 0 if (req.sort_order != RangeRequest.NONE or filtered) else max(req.limit, 0)
    kvs: list[kv_pb2.KeyValue] = []
    for kv in reader.range(req.key, end, rev):
        kvs.append(kv)
        if fetch and len(kvs) > fetch:
            break
    resp.count = reader.count(req.key, end, rev) if fetch and len(kvs) > fetch else len(kvs)
    if filtered:
        kvs = [kv for kv in kvs if _passes_filters(kv, req)]
    order = req.sort_order
    if req.sort_target != RangeRequest.KEY and order == RangeRequest.NONE:
        order = RangeRequest.ASCEND
    if order != RangeRequest.NONE and not (
        req.sort_target == RangeRequest.KEY and order == RangeRequest.ASCEND
    ):
        kvs.sort(key=_SORT_KEYS[req.sort_target], reverse=order == RangeRequest.DESCEND)
    if req.limit > 0 and len(kvs) > req.limit:
        del kvs[req.limit :]
        resp.more = True
    if req.keys_only:
        for kv in kvs:
            kv.ClearField("value")
    resp.kvs.extend(kvs)
    return resp


def _passes_filters(kv: kv_pb2.KeyValue, req: rpc_pb2.RangeRequest) -> bool:
    return not (
        (req.max_mod_revision and kv.mod_revision > req.max_mod_revision)
        or (req.min_mod_revision and kv.mod_revision < req.min_mod_revision)
        or (req.max_create_revision and kv.create_revision > req.max_create_revision)
        or (req.min_create_revision and kv.create_revision < req.min_create_revision)
    )


def check_put(reader: Reader, req: rpc_pb2.PutRequest, leases: LeaseLookup, *, lease_first: bool) -> None:
    """Raise what applying the put would fail with, before anything is written.

    etcd checks the lease first for a plain put but last for a put inside a txn.
    """
    lease_missing = bool(req.lease) and not leases.exists(req.lease)
    if lease_first and lease_missing:
        raise errors.ErrLeaseNotFound()
    if (req.ignore_value or req.ignore_lease) and reader.get(req.key) is None:
        raise errors.ErrKeyNotFound()
    if lease_missing:
        raise errors.ErrLeaseNotFound()


def put_request(txn: WriteTxn, req: rpc_pb2.PutRequest) -> rpc_pb2.PutResponse:
    """Apply a checked put (`check_put`); ignore_value/ignore_lease keep the old value/lease."""
    resp = rpc_pb2.PutResponse()
    value, lease = req.value, req.lease
    if req.ignore_value or req.ignore_lease or req.prev_kv:
        prev = txn.get(req.key)
        if prev is not None:
            if req.ignore_value:
                value = prev.value
            if req.ignore_lease:
                lease = prev.lease
            if req.prev_kv:
                resp.prev_kv.CopyFrom(prev)
    txn.put(req.key, value, lease)
    resp.header.revision = txn.rev
    return resp


def delete_request(txn: WriteTxn, req: rpc_pb2.DeleteRangeRequest) -> rpc_pb2.DeleteRangeResponse:
    """Delete the range; the revision is only taken if a key was deleted (or the txn wrote before)."""
    resp = rpc_pb2.DeleteRangeResponse()
    deleted = txn.delete_range(req.key, key_range(req.key, req.range_end))
    resp.deleted = len(deleted)
    if req.prev_kv:
        resp.prev_kvs.extend(deleted)
    resp.header.revision = txn.rev
    return resp
