"""Txn requests: compares, the chosen branch, nested txns, one revision for all writes.

Order of work, as etcd's applier does it:
1. Evaluate the compares of the txn and of every nested txn on the chosen
   branches against the state before the txn (a nested txn does not see the
   outer txn's earlier writes when choosing its branch) -> a `Plan`.
2. Check every put on the plan (ignore_value/ignore_lease need the key, a lease
   must exist), then every range's revision; any failure fails the whole txn
   before anything is written.
3. Run the ops in order in one write transaction; reads see earlier writes.

A txn none of whose branches writes (`is_read_only`) is served like a range,
without a log entry, by `read_only_txn`: etcd does the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server.mvcc import ops
from etcdpy.server.mvcc.leases import LeaseLookup
from etcdpy.server.mvcc.reader import Reader, key_range
from etcdpy.server.mvcc.writer import WriteTxn

Compare = rpc_pb2.Compare


@dataclass
class Plan:
    """Plan is a txn's outcome: which branch runs and, in op order, the plans of its nested txns."""

    succeeded: bool
    ops: list[rpc_pb2.RequestOp]
    nested: list[Plan] = field(default_factory=list)


def plan_txn(reader: Reader, req: rpc_pb2.TxnRequest) -> Plan:
    succeeded = all(evaluate_compare(reader, c) for c in req.compare)
    branch = list(req.success if succeeded else req.failure)
    plan = Plan(succeeded, branch)
    for op in branch:
        if op.WhichOneof("request") == "request_txn":
            plan.nested.append(plan_txn(reader, op.request_txn))
    return plan


_TARGET_FIELDS: dict[int, str] = {
    Compare.VERSION: "version",
    Compare.CREATE: "create_revision",
    Compare.MOD: "mod_revision",
    Compare.VALUE: "value",
    Compare.LEASE: "lease",
}

_RESULTS: dict[int, Callable[[int], bool]] = {
    Compare.EQUAL: lambda c: c == 0,
    Compare.NOT_EQUAL: lambda c: c != 0,
    Compare.GREATER: lambda c: c > 0,
    Compare.LESS: lambda c: c < 0,
}


def evaluate_compare(reader: Reader, cmp: rpc_pb2.Compare) -> bool:
    """Every key in the compare's range must satisfy it; a missing key compares as zero values.

    A VALUE compare on a missing key (or an empty range) is always false: gRPC
    cannot tell an empty value from none.  The operand is the target_union field
    named by the target; if another one is set, the operand is the zero value.
    """
    kvs = list(reader.range(cmp.key, key_range(cmp.key, cmp.range_end), reader.rev))
    if not kvs:
        if cmp.target == Compare.VALUE:
            return False
        kvs = [kv_pb2.KeyValue()]
    return all(_compare_kv(cmp, kv) for kv in kvs)


def _compare_kv(cmp: rpc_pb2.Compare, kv: kv_pb2.KeyValue) -> bool:
    name = _TARGET_FIELDS.get(cmp.target)
    diff = 0  # etcd compares an unknown target as equal
    if name is not None:
        actual: int | bytes = getattr(kv, name)
        operand: int | bytes = (
            getattr(cmp, name) if cmp.WhichOneof("target_union") == name else type(actual)()
        )
        diff = (actual > operand) - (actual < operand)  # type: ignore[operator]
    result = _RESULTS.get(cmp.result)
    return True if result is None else result(diff)


def check_plan(reader: Reader, plan: Plan, leases: LeaseLookup) -> None:
    """Raise the first error the plan would hit: puts first (all levels), then ranges."""
    for op in _plan_ops(plan):
        if op.WhichOneof("request") == "request_put":
            ops.check_put(reader, op.request_put, leases, lease_first=False)
    for op in _plan_ops(plan):
        if op.WhichOneof("request") == "request_range":
            rev = op.request_range.revision
            if rev > reader.rev:
                raise errors.ErrFutureRev()
            if rev != 0 and rev < reader.compact_rev:  # etcd's check: a negative one fails here too
                raise errors.ErrCompacted()


def _plan_ops(plan: Plan) -> list[rpc_pb2.RequestOp]:
    out: list[rpc_pb2.RequestOp] = []
    nested = iter(plan.nested)
    for op in plan.ops:
        if op.WhichOneof("request") == "request_txn":
            out.extend(_plan_ops(next(nested)))
        else:
            out.append(op)
    return out


def _writer(txn: Reader) -> WriteTxn:
    if not isinstance(txn, WriteTxn):
        raise RuntimeError("a write reached a read-only txn")
    return txn


def run_plan(txn: Reader, plan: Plan, resp: rpc_pb2.TxnResponse) -> None:
    """Apply a checked plan, filling ``resp`` (nested responses carry an empty header, as etcd's)."""
    resp.succeeded = plan.succeeded
    nested = iter(plan.nested)
    for op in plan.ops:
        out = resp.responses.add()
        kind = op.WhichOneof("request")
        if kind == "request_range":
            out.response_range.CopyFrom(ops.range_request(txn, op.request_range))
        elif kind == "request_put":
            out.response_put.CopyFrom(ops.put_request(_writer(txn), op.request_put))
        elif kind == "request_delete_range":
            out.response_delete_range.CopyFrom(ops.delete_request(_writer(txn), op.request_delete_range))
        elif kind == "request_txn":
            out.response_txn.header.SetInParent()
            run_plan(txn, next(nested), out.response_txn)


def txn_request(txn: Reader, req: rpc_pb2.TxnRequest, leases: LeaseLookup) -> rpc_pb2.TxnResponse:
    """Apply a validated txn in ``txn``: one revision for all its writes, none if it writes nothing.

    ``txn`` is a WriteTxn, or any Reader for a txn that `is_read_only`; header.revision is its revision.
    """
    plan = plan_txn(txn, req)
    check_plan(txn, plan, leases)
    resp = rpc_pb2.TxnResponse()
    run_plan(txn, plan, resp)
    resp.header.revision = txn.rev
    return resp


def _branch_ops(req: rpc_pb2.TxnRequest) -> list[rpc_pb2.RequestOp]:
    return [*req.success, *req.failure]


def is_read_only(req: rpc_pb2.TxnRequest) -> bool:
    """True when no op of any branch (nested txns included) writes."""
    for op in _branch_ops(req):
        kind = op.WhichOneof("request")
        if kind == "request_txn":
            if not is_read_only(op.request_txn):
                return False
        elif kind != "request_range":
            return False
    return True


def is_serializable(req: rpc_pb2.TxnRequest) -> bool:
    """True when every range of a read-only txn asks for a serializable read."""
    for op in _branch_ops(req):
        kind = op.WhichOneof("request")
        if kind == "request_txn":
            if not is_serializable(op.request_txn):
                return False
        elif kind == "request_range" and not op.request_range.serializable:
            return False
    return True


def read_only_txn(reader: Reader, req: rpc_pb2.TxnRequest, leases: LeaseLookup) -> rpc_pb2.TxnResponse:
    """Serve a txn that `is_read_only` from ``reader`` (header.revision = the reader's revision)."""
    return txn_request(reader, req, leases)
