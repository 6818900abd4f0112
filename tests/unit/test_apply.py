"""Applier: raft entries -> store, one write batch per call, replay-safe, deterministic."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.message import DecodeError
from test_mvcc_harness import Harness, op_put, op_range

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.server import raft_requests as kinds
from etcdpy.server.apply import Applier
from etcdpy.server.mvcc.writer import Batch
from etcdpy.server.storage.backend import Backend

pb = rpc_pb2
E = Harness.entry


def _put(key: bytes, value: bytes = b"") -> pb.PutRequest:
    return pb.PutRequest(key=key, value=value)


def test_results_carry_request_ids_in_entry_order(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    results = h.applier.apply(
        [
            (1, E(11, put=_put(b"a"))),
            (2, b""),
            (3, E(33, put=pb.PutRequest(key=b"b", ignore_value=True))),
            (4, E(44, range=pb.RangeRequest(key=b"a"))),
        ]
    )
    assert [r.request_id for r in results] == [11, 33, 44]
    assert isinstance(results[0].response, pb.PutResponse) and results[0].response.header.revision == 2
    assert isinstance(results[1].response, errors.ErrKeyNotFound)
    assert isinstance(results[2].response, pb.RangeResponse) and results[2].response.kvs[0].key == b"a"
    assert h.applier.applied_index == 4 and h.applier.current_revision == 2
    h.close()


def test_the_legacy_id_field_names_the_request_when_the_header_has_none(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    req = raft_internal_pb2.InternalRaftRequest(ID=5, put=_put(b"a"))
    assert [r.request_id for r in h.applier.apply([(1, req.SerializeToString())])] == [5]
    h.close()


def test_replayed_entries_are_skipped(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    entries = [(1, E(1, put=_put(b"a", b"1"))), (2, E(2, put=_put(b"a", b"2")))]
    h.applier.apply(entries)
    h.reopen()
    assert h.applier.apply(entries) == []
    assert h.applier.apply([*entries, (3, E(3, put=_put(b"b")))])[0].request_id == 3
    kv = h.get(b"a")
    assert kv is not None and kv.version == 2 and h.applier.current_revision == 4
    h.close()


def test_empty_entries_only_move_the_applied_index(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    assert h.applier.apply([(1, b""), (2, b"")]) == []
    assert (h.applier.applied_index, h.applier.current_revision) == (2, 1)
    h.reopen()
    assert h.applier.applied_index == 2
    h.close()


def test_later_entries_of_one_call_see_earlier_ones(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    C = pb.Compare
    results = h.apply_entries(
        {"put": _put(b"a", b"1")},
        {"put": _put(b"a", b"2")},
        {
            "txn": pb.TxnRequest(
                compare=[C(key=b"a", target=C.VERSION, result=C.EQUAL, version=2)],
                success=[op_put(b"b"), op_range(b"a", revision=2)],
            )
        },
        {"delete_range": pb.DeleteRangeRequest(key=b"a")},
        {"range": pb.RangeRequest(key=b"a", range_end=b"c", revision=4)},
    )
    txn = results[2].response
    assert isinstance(txn, pb.TxnResponse) and txn.succeeded
    assert txn.responses[1].response_range.kvs[0].value == b"1"  # revision 2 is in this very batch
    past = results[4].response
    assert isinstance(past, pb.RangeResponse)
    assert [(kv.key, kv.value) for kv in past.kvs] == [(b"a", b"2"), (b"b", b"")]
    assert h.keys() == [b"b"]
    h.close()


def test_a_failing_call_writes_nothing_of_any_entry(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.put(b"before")
    with pytest.raises(DecodeError):
        h.applier.apply([(2, E(2, put=_put(b"lost"))), (3, b"\xff not a request")])
    assert h.applier.applied_index == 1 and h.applier.current_revision == 2
    h.reopen()
    assert h.keys() == [b"before"] and h.applier.applied_index == 1
    assert h.events == [(2, h.events[0][1])]
    h.close()


def test_failed_requests_change_nothing_but_count_as_applied(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.put(b"k")
    hash_before = h.applier.hash()
    results = h.apply_entries(
        {"put": pb.PutRequest(key=b"k", lease=42)},
        {"compaction": pb.CompactionRequest(revision=9)},
        {"lease_grant": pb.LeaseGrantRequest(TTL=10)},
    )
    assert [type(r.response) for r in results] == [
        errors.ErrLeaseNotFound,
        errors.ErrFutureRev,
        errors.ErrNotCapable,
    ]
    assert h.applier.hash() == hash_before and h.applier.applied_index == 4
    assert len(h.events) == 1
    h.close()


def test_events_are_published_after_the_batch_once_per_revision(tmp_path: Path) -> None:
    seen: list[tuple[int, int, int]] = []
    backend = Backend(tmp_path)

    def sink(rev: int, events: object) -> None:
        seen.append((rev, applier.current_revision, len(events)))  # type: ignore[arg-type]

    applier = Applier(backend, on_events=sink)
    applier.apply(
        [
            (1, E(1, put=_put(b"a"))),
            (2, E(2, txn=pb.TxnRequest(success=[op_put(b"b"), op_put(b"c")]))),
            (3, E(3, delete_range=pb.DeleteRangeRequest(key=b"zz"))),
        ]
    )
    assert seen == [(2, 3, 1), (3, 3, 2)]  # the store already shows revision 3 when events arrive
    backend.close()


def test_same_entries_give_the_same_hashes_on_every_member(tmp_path: Path) -> None:
    entries = [(i, E(i, put=_put(b"k%d" % (i % 4), b"v%d" % i))) for i in range(1, 30)]
    entries.append((30, E(30, compaction=pb.CompactionRequest(revision=20))))
    entries.append((31, E(31, delete_range=pb.DeleteRangeRequest(key=b"k", range_end=b"k2"))))
    members = [Applier(Backend(tmp_path / name)) for name in ("m1", "m2")]
    members[0].apply(entries)
    for i in range(0, len(entries), 7):  # another member gets the entries in other batches
        members[1].apply(entries[i : i + 7])
    assert members[0].hash_kv(0) == members[1].hash_kv(0)
    assert members[0].hash() == members[1].hash()
    for m in members:
        m.backend.close()


def test_given_handlers_apply_other_request_kinds_in_the_same_batch(tmp_path: Path) -> None:
    """A lessor-like handler: revoking deletes the lease's keys in one revision, failing changes nothing."""
    leases = {1: [b"a", b"b"]}

    def revoke(batch: Batch, req: pb.LeaseRevokeRequest) -> pb.LeaseRevokeResponse:
        if req.ID not in leases:
            raise errors.ErrLeaseNotFound()
        with batch.writing() as w:
            for key in leases.pop(req.ID):
                w.delete_range(key, None)
        resp = pb.LeaseRevokeResponse()
        resp.header.revision = batch.rev
        return resp

    h = Harness(tmp_path, handlers={kinds.LEASE_REVOKE: revoke})
    h.put(b"a")
    h.put(b"b")
    h.put(b"c")
    missing, revoked = h.apply_entries(
        {"lease_revoke": pb.LeaseRevokeRequest(ID=2)}, {"lease_revoke": pb.LeaseRevokeRequest(ID=1)}
    )
    assert isinstance(missing.response, errors.ErrLeaseNotFound)
    assert isinstance(revoked.response, pb.LeaseRevokeResponse) and revoked.response.header.revision == 5
    assert h.keys() == [b"c"] and h.applier.applied_index == 5
    assert [(e.type, e.kv.key) for e in h.events[-1][1]] == [(1, b"a"), (1, b"b")]
    h.close()


def test_reload_adopts_a_replaced_database(tmp_path: Path) -> None:
    """Installing a snapshot swaps the database content; reload picks up its index and revisions."""
    leader, follower = Harness(tmp_path / "leader"), Harness(tmp_path / "follower")
    for i in range(5):
        leader.put(b"k%d" % i, b"v")
    leader.compact(3)
    follower.put(b"stale")
    with follower.backend.batch(sync=True) as wb:
        for key in follower.backend.db.iterator(include_value=False):
            wb.delete(key)
        for key, value in leader.backend.db.iterator():
            wb.put(key, value)
    follower.applier.reload()
    assert (
        follower.applier.applied_index,
        follower.applier.current_revision,
        follower.applier.compact_revision,
    ) == (
        6,
        6,
        3,
    )
    assert follower.keys() == leader.keys() and follower.applier.hash_kv(0) == leader.applier.hash_kv(0)
    leader.close()
    follower.close()


def test_a_handler_failing_after_writing_abandons_the_whole_batch(tmp_path: Path) -> None:
    def half_then_fail(batch: Batch, req: pb.LeaseRevokeRequest) -> pb.LeaseRevokeResponse:
        with batch.writing() as w:
            w.put(b"half", b"", 0)
            raise errors.ErrLeaseNotFound()

    h = Harness(tmp_path, handlers={kinds.LEASE_REVOKE: half_then_fail})
    with pytest.raises(RuntimeError, match="abandoned"):
        h.apply_entries({"put": _put(b"first")}, {"lease_revoke": pb.LeaseRevokeRequest(ID=1)})
    assert (h.applier.applied_index, h.applier.current_revision) == (0, 1)
    h.reopen()
    assert h.keys() == [] and h.applier.applied_index == 0 and h.events == []
    h.close()
