"""Alarms: applied through the log, kept across restarts, refusing what etcd refuses; quota arithmetic."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from lease_support import Member as LeaseMember
from test_mvcc_harness import Harness

from etcdpy.api import errors
from etcdpy.api.alarms import alarm_text
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.server import quota
from etcdpy.server import raft_requests as kinds
from etcdpy.server.storage.backend import Backend

GET, ACTIVATE, DEACTIVATE = pb.AlarmRequest.GET, pb.AlarmRequest.ACTIVATE, pb.AlarmRequest.DEACTIVATE


def _result(h: Harness, **fields: Any) -> Any:
    """The response, or the EtcdError, of one request applied as one entry."""
    (result,) = h.apply_entries(fields)
    return result.response


def _alarm(h: Harness, action: int, member: int = 0, alarm: int = pb.NONE) -> list[tuple[int, int]]:
    response = _result(h, alarm=pb.AlarmRequest(action=action, memberID=member, alarm=alarm))  # type: ignore[arg-type]
    assert isinstance(response, pb.AlarmResponse) and not response.HasField("header")
    return [(m.memberID, m.alarm) for m in response.alarms]


def _put(key: bytes) -> dict[str, Any]:
    return {"put": pb.PutRequest(key=key, value=b"v")}


def _txn(success: list[pb.RequestOp], failure: list[pb.RequestOp] | None = None) -> dict[str, Any]:
    return {"txn": pb.TxnRequest(success=success, failure=failure or [])}


PUT_OP = pb.RequestOp(request_put=pb.PutRequest(key=b"k", value=b"v"))
DEL_OP = pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=b"k"))

# (request, refused under NOSPACE, refused under CORRUPT), from etcd 3.4.23 observed with real requests.
REQUESTS: list[tuple[str, dict[str, Any], bool, bool]] = [
    ("put", _put(b"a"), True, True),
    ("delete", {"delete_range": pb.DeleteRangeRequest(key=b"a")}, False, True),
    ("txn with a put in success", _txn([PUT_OP]), True, True),
    ("txn with a put in failure only", _txn([], [PUT_OP]), True, True),
    (
        "txn with a put in a nested txn",
        _txn([pb.RequestOp(request_txn=pb.TxnRequest(success=[PUT_OP]))]),
        True,
        True,
    ),
    ("txn that only deletes", _txn([DEL_OP]), False, True),
    ("compaction", {"compaction": pb.CompactionRequest(revision=1)}, False, True),
]


def test_activate_get_deactivate_follow_etcd(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    assert _alarm(h, GET) == []
    assert _alarm(h, ACTIVATE, 5, pb.CORRUPT) == [(5, pb.CORRUPT)]
    assert _alarm(h, ACTIVATE, 5, pb.CORRUPT) == [(5, pb.CORRUPT)]  # again: answered, stored once
    assert _alarm(h, ACTIVATE, 6, pb.NOSPACE) == [(6, pb.NOSPACE)]
    assert _alarm(h, ACTIVATE, 7, 9) == [(7, 9)]  # an unknown type is stored as etcd stores it
    assert _alarm(h, GET) == [(5, pb.CORRUPT), (6, pb.NOSPACE), (7, 9)]
    assert _alarm(h, GET, 99, pb.NOSPACE) == [(6, pb.NOSPACE)]  # by type, whatever the member
    assert _alarm(h, DEACTIVATE, 6, pb.CORRUPT) == []  # not active: nothing
    assert _alarm(h, DEACTIVATE, 6, pb.NOSPACE) == [(6, pb.NOSPACE)]
    assert _alarm(h, 5) == []  # an unknown action answers an empty response (etcd 3.4 crashes)
    assert _alarm(h, GET) == [(5, pb.CORRUPT), (7, 9)]
    h.close()


def test_alarms_survive_a_restart(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    _alarm(h, ACTIVATE, 1, pb.NOSPACE)
    _alarm(h, ACTIVATE, 2, pb.CORRUPT)
    _alarm(h, DEACTIVATE, 2, pb.CORRUPT)
    h.reopen()
    assert _alarm(h, GET) == [(1, pb.NOSPACE)]
    assert isinstance(_result(h, **_put(b"a")), errors.ErrNoSpace)
    h.close()


@pytest.mark.parametrize(
    ("name", "request_fields", "nospace", "corrupt"), REQUESTS, ids=[r[0] for r in REQUESTS]
)
def test_each_alarm_refuses_what_etcd_refuses(
    tmp_path: Path, name: str, request_fields: dict[str, Any], nospace: bool, corrupt: bool
) -> None:
    h = Harness(tmp_path)
    h.apply(**_put(b"a"))
    h.apply(**_put(b"k"))
    for alarm, refused, error in (
        (pb.NOSPACE, nospace, errors.ErrNoSpace),
        (pb.CORRUPT, corrupt, errors.ErrCorrupt),
    ):
        _alarm(h, ACTIVATE, 3, alarm)
        revision = h.applier.current_revision
        result = _result(h, **request_fields)
        assert isinstance(result, error) == refused, f"{name} under {pb.AlarmType.Name(alarm)}"
        if refused:
            assert h.applier.current_revision == revision  # a refused request changes nothing
        _alarm(h, DEACTIVATE, 3, alarm)
    h.close()


def test_corrupt_wins_over_nospace_and_the_last_deactivation_lifts_it(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    _alarm(h, ACTIVATE, 1, pb.NOSPACE)
    _alarm(h, ACTIVATE, 2, pb.NOSPACE)
    _alarm(h, ACTIVATE, 1, pb.CORRUPT)
    assert isinstance(_result(h, **_put(b"a")), errors.ErrCorrupt)
    _alarm(h, DEACTIVATE, 1, pb.CORRUPT)
    _alarm(h, DEACTIVATE, 1, pb.NOSPACE)
    assert isinstance(_result(h, **_put(b"a")), errors.ErrNoSpace)  # member 2's NOSPACE still holds
    _alarm(h, DEACTIVATE, 2, pb.NOSPACE)
    assert isinstance(_result(h, **_put(b"a")), pb.PutResponse)
    h.close()


def test_an_entry_after_the_activation_in_the_same_batch_is_refused(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    results = h.apply_entries(
        _put(b"before"),
        {"alarm": pb.AlarmRequest(action=ACTIVATE, memberID=1, alarm=pb.NOSPACE)},
        _put(b"after"),
    )
    assert isinstance(results[0].response, pb.PutResponse)
    assert isinstance(results[2].response, errors.ErrNoSpace)
    assert h.get(b"before") is not None and h.get(b"after") is None
    h.close()


def test_alarm_text_is_gos_compact_text_form() -> None:
    assert alarm_text(pb.AlarmMember(memberID=13668033151171901709, alarm=pb.NOSPACE)) == (
        "memberID:13668033151171901709 alarm:NOSPACE "
    )
    assert alarm_text(pb.AlarmMember(memberID=7, alarm=pb.NONE)) == "memberID:7 "  # zero values are omitted
    assert alarm_text(pb.AlarmMember(memberID=7, alarm=9)) == "memberID:7 alarm:9 "  # type: ignore[arg-type]


def test_costs_follow_etcds_estimate() -> None:
    put = pb.PutRequest(key=b"key", value=b"x" * 100)
    assert quota.request_cost(kinds.PUT, put) == quota.KV_OVERHEAD + 103
    leased = pb.PutRequest(key=b"key", value=b"x" * 100, lease=5)
    assert quota.request_cost(kinds.PUT, leased) == quota.KV_OVERHEAD + 103 + quota.LEASE_OVERHEAD
    two_puts = [pb.RequestOp(request_put=put), pb.RequestOp(request_put=put)]
    txn = pb.TxnRequest(success=[PUT_OP], failure=two_puts)
    assert quota.request_cost(kinds.TXN, txn) == 2 * (quota.KV_OVERHEAD + 103)  # the costlier branch
    assert quota.request_cost(kinds.TXN, pb.TxnRequest(success=[DEL_OP])) == 0
    assert quota.request_cost(kinds.LEASE_GRANT, pb.LeaseGrantRequest(TTL=5)) == quota.LEASE_OVERHEAD
    assert quota.request_cost(kinds.DELETE_RANGE, pb.DeleteRangeRequest(key=b"k")) == 0


def test_the_quota_measures_the_database_at_most_twice_a_second(tmp_path: Path) -> None:
    backend = Backend(tmp_path)
    now = [100.0]
    q = quota.BackendQuota(backend, 10**6, clock=lambda: now[0])
    first = q.size()
    assert first == backend.size_bytes() > 0
    backend.db.put(b"m" + b"filler", b"x" * 200_000, sync=True)
    assert q.size() == first  # cached
    now[0] += quota.SIZE_REFRESH_SECONDS
    assert q.size() == backend.size_bytes() > first
    assert q.available(0) and q.available(1) and not q.available(10**6)
    assert quota.BackendQuota(backend).quota_bytes == quota.DEFAULT_QUOTA_BYTES  # 0 means etcd's 2 GiB
    backend.close()


def test_what_the_quota_admits_counts_until_the_next_measurement(tmp_path: Path) -> None:
    """A burst faster than the refresh interval cannot overshoot: admitted costs add up."""
    backend = Backend(tmp_path)
    q = quota.BackendQuota(backend, backend.size_bytes() + 10_000, clock=lambda: 100.0)  # never refreshed
    admitted = 0
    while q.available(1_000):
        admitted += 1
    assert admitted == 9  # 10,000 bytes of room: nine 1,000-byte requests fit, the tenth would reach it
    backend.close()


class QuotaMember:
    """What `check_quota` reads of a server: applied alarms, member ID, propose (applied at once)."""

    def __init__(self, h: Harness, member_id: int, *, proposals_fail: bool = False) -> None:
        self.h = h
        self.applier = h.applier  # stands in for EtcdServer.alarms: the alarms as applied
        self.cluster = SimpleNamespace(local_id=member_id)
        self.proposals_fail = proposals_fail
        self.proposed: list[Any] = []

    def alarms(self, alarm: int) -> list[pb.AlarmMember]:
        return self.applier.alarms.get(alarm)

    async def propose(self, request: Any) -> Any:
        self.proposed.append(request)
        if self.proposals_fail:
            raise errors.ErrTimeout()
        return self.h.apply(**{field.name: value for field, value in request.ListFields()})


def _check(member: QuotaMember, q: quota.BackendQuota, kind: Any, request: Any) -> None:
    asyncio.run(quota.check_quota(member, q, kind, request))  # type: ignore[arg-type]  # a stand-in server


def test_a_write_over_the_quota_is_refused_after_raising_this_members_nospace_once(tmp_path: Path) -> None:
    """etcd's quotaKVServer: the alarm through the log, then ErrNoSpace; applying then refuses it too."""
    h = Harness(tmp_path)
    q = quota.BackendQuota(h.backend, h.backend.size_bytes() + 1_000, clock=lambda: 100.0)
    member = QuotaMember(h, 7)
    too_big = pb.PutRequest(key=b"k", value=b"x" * 1_000)
    for kind, request in (
        (kinds.PUT, too_big),
        (kinds.TXN, pb.TxnRequest(success=[pb.RequestOp(request_put=too_big)])),
    ):
        with pytest.raises(errors.ErrNoSpace):
            _check(member, q, kind, request)
    # Proposed once: the second refusal finds this member's alarm already applied.
    assert [r.alarm for r in member.proposed] == [
        pb.AlarmRequest(action=ACTIVATE, memberID=7, alarm=pb.NOSPACE)
    ]
    assert _alarm(h, GET) == [(7, pb.NOSPACE)]
    # What adds nothing passes, so space can be freed.
    _check(member, q, kinds.TXN, pb.TxnRequest(success=[DEL_OP]))
    _check(member, q, kinds.DELETE_RANGE, pb.DeleteRangeRequest(key=b"k"))
    h.close()


def test_a_failed_alarm_proposal_still_refuses_the_write(tmp_path: Path) -> None:
    """etcd ignores the alarm's outcome too: the request is refused with ErrNoSpace all the same."""
    h = Harness(tmp_path)
    q = quota.BackendQuota(h.backend, 1, clock=lambda: 100.0)
    member = QuotaMember(h, 7, proposals_fail=True)
    with pytest.raises(errors.ErrNoSpace):
        _check(member, q, kinds.LEASE_GRANT, pb.LeaseGrantRequest(TTL=5))
    assert len(member.proposed) == 1 and _alarm(h, GET) == []
    h.close()


@pytest.mark.parametrize(
    ("alarm", "error", "revoke_refused"),
    [(pb.NOSPACE, errors.ErrNoSpace, False), (pb.CORRUPT, errors.ErrCorrupt, True)],
)
def test_the_alarms_refuse_lease_requests_as_etcd_does(
    tmp_path: Path, alarm: int, error: type[errors.EtcdError], revoke_refused: bool
) -> None:
    """Grants grow the database (refused under both); revokes free it (refused only under CORRUPT)."""
    member = LeaseMember(tmp_path)
    member.grant(1, 60)
    member.apply(alarm=pb.AlarmRequest(action=ACTIVATE, memberID=3, alarm=alarm))  # type: ignore[arg-type]
    with pytest.raises(error):
        member.grant(2, 60)
    if revoke_refused:
        with pytest.raises(error):
            member.apply(lease_revoke=pb.LeaseRevokeRequest(ID=1))
        assert member.lessor.exists(1)
    else:
        member.apply(lease_revoke=pb.LeaseRevokeRequest(ID=1))
        assert not member.lessor.exists(1)
    assert not member.lessor.exists(2)
    member.close()
