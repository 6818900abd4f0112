"""Stateless request checks, each case answered the same way by etcd 3.4.23's gRPC layer."""

from __future__ import annotations

import pytest
from test_mvcc_harness import op_del, op_put, op_range, op_txn

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.server.mvcc import validate

C = pb.Compare


def test_empty_keys_are_rejected_everywhere() -> None:
    with pytest.raises(errors.ErrEmptyKey):
        validate.check_range_request(pb.RangeRequest())
    with pytest.raises(errors.ErrEmptyKey):
        validate.check_put_request(pb.PutRequest(value=b"x"))
    with pytest.raises(errors.ErrEmptyKey):
        validate.check_delete_request(pb.DeleteRangeRequest(range_end=b"z"))
    with pytest.raises(errors.ErrEmptyKey):
        validate.check_txn_request(pb.TxnRequest(compare=[C(key=b"")]))
    with pytest.raises(errors.ErrEmptyKey):
        validate.check_txn_request(pb.TxnRequest(failure=[op_txn(success=[op_del(b"")])]))


def test_put_flags_conflicting_with_given_fields() -> None:
    with pytest.raises(errors.ErrValueProvided):
        validate.check_put_request(pb.PutRequest(key=b"k", value=b"v", ignore_value=True))
    with pytest.raises(errors.ErrLeaseProvided):
        validate.check_put_request(pb.PutRequest(key=b"k", lease=5, ignore_lease=True))
    validate.check_put_request(pb.PutRequest(key=b"k", ignore_value=True, ignore_lease=True))


def test_unknown_sort_options_are_rejected() -> None:
    with pytest.raises(errors.ErrInvalidSortOption):
        validate.check_range_request(pb.RangeRequest(key=b"k", sort_order=7))  # type: ignore[arg-type]
    with pytest.raises(errors.ErrInvalidSortOption):
        validate.check_range_request(pb.RangeRequest(key=b"k", sort_target=9))  # type: ignore[arg-type]
    validate.check_range_request(pb.RangeRequest(key=b"k", sort_order=2, sort_target=4))  # type: ignore[arg-type]


def _ranges(n: int) -> list[pb.RequestOp]:
    return [op_range(b"k%d" % i) for i in range(n)]


@pytest.mark.parametrize(
    ("txn", "too_many"),
    [
        (pb.TxnRequest(success=_ranges(128)), False),
        (pb.TxnRequest(success=_ranges(129)), True),
        (pb.TxnRequest(failure=_ranges(129)), True),
        (pb.TxnRequest(compare=[C(key=b"q")] * 129), True),
        (pb.TxnRequest(success=[*_ranges(128), op_txn(success=_ranges(1))]), True),
        # a nested txn may use what its parent's longest list leaves over
        (pb.TxnRequest(success=[*_ranges(127), op_txn(success=_ranges(2))]), True),
        (pb.TxnRequest(success=[*_ranges(100), op_txn(success=_ranges(28))]), True),
        (pb.TxnRequest(success=[*_ranges(100), op_txn(success=_ranges(27))]), False),
        (pb.TxnRequest(compare=[C(key=b"q")] * 100, failure=[op_txn(success=_ranges(28))]), False),
    ],
)
def test_txn_op_limits(txn: pb.TxnRequest, too_many: bool) -> None:
    if too_many:
        with pytest.raises(errors.ErrTooManyOps):
            validate.check_txn_request(txn, 128)
    else:
        validate.check_txn_request(txn, 128)


def test_an_empty_request_op_is_key_not_found() -> None:
    with pytest.raises(errors.ErrKeyNotFound):
        validate.check_txn_request(pb.TxnRequest(success=[pb.RequestOp()]))


@pytest.mark.parametrize(
    ("ops", "duplicate"),
    [
        ([op_put(b"k"), op_put(b"k")], True),
        ([op_del(b"a", b"z"), op_put(b"k")], True),
        ([op_del(b"k"), op_put(b"k")], True),
        ([op_del(b"s/", b"s0"), op_put(b"s/z")], True),
        ([op_del(b"s/", b"s0"), op_put(b"s0")], False),
        ([op_del(b"k"), op_put(b"k\x00")], False),
        # etcd compares the literal end "\0": a from-key (or all-keys) delete never overlaps a put
        ([op_del(b"s/", b"\x00"), op_put(b"s/z")], False),
        ([op_del(b"\x00", b"\x00"), op_put(b"s/z")], False),
        # deletes may overlap each other
        ([op_del(b"s/", b"s0"), op_del(b"s/a", b"s/b"), op_del(b"s/a")], False),
        # then and else of one nested txn are exclusive
        ([op_txn(success=[op_put(b"k")], failure=[op_put(b"k")])], False),
        ([op_txn(success=[op_put(b"k")]), op_put(b"k")], True),
        ([op_txn(success=[op_put(b"k")]), op_txn(failure=[op_put(b"k")])], True),
        ([op_txn(success=[op_del(b"k")]), op_put(b"k")], True),
        ([op_txn(failure=[op_del(b"a", b"m")]), op_put(b"k")], True),
        ([op_del(b"a", b"z"), op_txn(success=[op_put(b"k")])], True),
        ([op_del(b"a", b"z"), op_txn(success=[op_txn(failure=[op_put(b"k")])])], True),
        ([op_txn(success=[op_put(b"k"), op_put(b"k")])], True),
        ([op_txn(success=[op_del(b"k")]), op_txn(success=[op_del(b"k")])], False),
        ([op_range(b"k"), op_put(b"k")], False),
    ],
)
def test_overlapping_writes_in_one_branch(ops: list[pb.RequestOp], duplicate: bool) -> None:
    for txn in (pb.TxnRequest(success=ops), pb.TxnRequest(failure=ops)):
        if duplicate:
            with pytest.raises(errors.ErrDuplicateKey):
                validate.check_txn_request(txn)
        else:
            validate.check_txn_request(txn)


def test_the_same_key_in_success_and_failure_is_allowed() -> None:
    validate.check_txn_request(pb.TxnRequest(success=[op_put(b"k")], failure=[op_put(b"k")]))
