"""KV, Maintenance, Cluster and health over gRPC with the generated stubs, against a real etcdpy process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from e2e_support import Stubs, connect
from grpc_health.v1 import health_pb2, health_pb2_grpc
from procs import ServerProcess

from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.chaos.cluster import wait_until
from etcdpy.server.consensus.membership import cluster_id, member_id

Compare = rpc_pb2.Compare


def ids(server: ServerProcess) -> tuple[int, int]:
    mid = member_id([server.peer_url], "etcd-cluster")
    return cluster_id([mid]), mid


def test_fresh_member_status_matches_a_fresh_etcd(etcdpy_server: ServerProcess, stubs: Stubs) -> None:
    status = stubs.maintenance.Status(rpc_pb2.StatusRequest())
    cid, mid = ids(etcdpy_server)
    assert (status.header.cluster_id, status.header.member_id) == (cid, mid)
    assert (status.header.revision, status.header.raft_term) == (1, 2)
    assert status.version == "3.4.23"
    assert (status.leader, status.raftIndex, status.raftTerm, status.raftAppliedIndex) == (mid, 4, 2, 4)
    assert status.dbSize > 0
    stubs.kv.Put(rpc_pb2.PutRequest(key=b"k", value=b"v"))
    after = stubs.maintenance.Status(rpc_pb2.StatusRequest())
    assert (after.raftIndex, after.raftAppliedIndex, after.header.revision) == (5, 5, 2)


def test_put_get_delete_fill_headers_and_revisions(etcdpy_server: ServerProcess, stubs: Stubs) -> None:
    cid, mid = ids(etcdpy_server)
    put = stubs.kv.Put(rpc_pb2.PutRequest(key=b"foo", value=b"bar"))
    assert (put.header.cluster_id, put.header.member_id, put.header.revision, put.header.raft_term) == (
        cid,
        mid,
        2,
        2,
    )
    second = stubs.kv.Put(rpc_pb2.PutRequest(key=b"foo", value=b"baz", prev_kv=True))
    assert second.prev_kv.value == b"bar"
    got = stubs.kv.Range(rpc_pb2.RangeRequest(key=b"foo"))
    assert got.header.revision == 3
    assert [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version) for kv in got.kvs] == [
        (b"foo", b"baz", 2, 3, 2)
    ]
    serializable = stubs.kv.Range(rpc_pb2.RangeRequest(key=b"foo", serializable=True))
    assert serializable.kvs == got.kvs
    deleted = stubs.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"foo"))
    assert (deleted.deleted, deleted.header.revision) == (1, 4)
    assert stubs.kv.Range(rpc_pb2.RangeRequest(key=b"foo")).count == 0


def test_txn_compares_and_applies_one_branch(stubs: Stubs) -> None:
    stubs.kv.Put(rpc_pb2.PutRequest(key=b"a", value=b"1"))
    txn = rpc_pb2.TxnRequest(
        compare=[Compare(key=b"a", target=Compare.VALUE, result=Compare.EQUAL, value=b"1")],
        success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"a", value=b"2"))],
        failure=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"a", value=b"never"))],
    )
    first = stubs.kv.Txn(txn)
    assert first.succeeded
    assert first.header.revision == 3
    again = stubs.kv.Txn(txn)
    assert not again.succeeded
    assert stubs.kv.Range(rpc_pb2.RangeRequest(key=b"a")).kvs[0].value == b"never"


def test_read_only_txn_is_served_without_a_log_entry_as_etcd_does(stubs: Stubs) -> None:
    stubs.kv.Put(rpc_pb2.PutRequest(key=b"r", value=b"1"))
    index_before = stubs.maintenance.Status(rpc_pb2.StatusRequest()).raftIndex
    get_r = rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"r"))
    nested = rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(success=[get_r]))
    reads = rpc_pb2.TxnRequest(
        compare=[Compare(key=b"r", target=Compare.VALUE, result=Compare.EQUAL, value=b"1")],
        success=[get_r, nested],
        failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"r", serializable=True))],
    )
    response = stubs.kv.Txn(reads)
    assert response.succeeded
    assert response.header.revision == 2
    assert response.responses[0].response_range.kvs[0].value == b"1"
    assert response.responses[1].response_txn.responses[0].response_range.kvs[0].value == b"1"
    assert stubs.maintenance.Status(rpc_pb2.StatusRequest()).raftIndex == index_before
    writes = rpc_pb2.TxnRequest(
        success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"r", value=b"2"))]
    )
    assert stubs.kv.Txn(writes).header.revision == 3
    assert stubs.maintenance.Status(rpc_pb2.StatusRequest()).raftIndex == index_before + 1
    future = rpc_pb2.TxnRequest(
        success=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"r", revision=99))]
    )
    with pytest.raises(grpc.RpcError) as err:
        stubs.kv.Txn(future)
    assert err.value.details() == "etcdserver: mvcc: required revision is a future revision"


def test_compact_then_old_revisions_are_gone(stubs: Stubs) -> None:
    for value in (b"1", b"2", b"3"):
        stubs.kv.Put(rpc_pb2.PutRequest(key=b"c", value=value))
    assert stubs.kv.Range(rpc_pb2.RangeRequest(key=b"c", revision=2)).kvs[0].value == b"1"
    stubs.kv.Compact(rpc_pb2.CompactionRequest(revision=3, physical=True))
    with pytest.raises(grpc.RpcError) as info:
        stubs.kv.Range(rpc_pb2.RangeRequest(key=b"c", revision=2))
    assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert info.value.details() == "etcdserver: mvcc: required revision has been compacted"
    assert stubs.kv.Range(rpc_pb2.RangeRequest(key=b"c", revision=3)).kvs[0].value == b"2"
    hashkv = stubs.maintenance.HashKV(rpc_pb2.HashKVRequest())
    assert (hashkv.compact_revision, hashkv.header.revision) == (3, 4)


@pytest.mark.parametrize(
    ("call", "code", "text"),
    [
        (
            lambda s: s.kv.Put(rpc_pb2.PutRequest(key=b"")),
            "INVALID_ARGUMENT",
            "etcdserver: key is not provided",
        ),
        (
            lambda s: s.kv.Put(rpc_pb2.PutRequest(key=b"nokey", ignore_value=True)),
            "INVALID_ARGUMENT",
            "etcdserver: key not found",
        ),
        (
            lambda s: s.kv.Range(rpc_pb2.RangeRequest(key=b"x", revision=99)),
            "OUT_OF_RANGE",
            "etcdserver: mvcc: required revision is a future revision",
        ),
        (
            lambda s: s.kv.Txn(
                rpc_pb2.TxnRequest(
                    success=[
                        rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"k%d" % i)) for i in range(129)
                    ]
                )
            ),
            "INVALID_ARGUMENT",
            "etcdserver: too many operations in txn request",
        ),
    ],
)
def test_errors_carry_etcds_code_and_text(
    stubs: Stubs, call: Callable[[Stubs], object], code: str, text: str
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call(stubs)
    assert (info.value.code().name, info.value.details()) == (code, text)


def test_requests_over_max_request_bytes_get_etcds_error(tmp_path: Path) -> None:
    server = ServerProcess("etcdpy", tmp_path / "d", extra_args=["--max-request-bytes", "1024"]).start()
    try:
        client = connect(server)
        client.kv.Put(rpc_pb2.PutRequest(key=b"small", value=b"x" * 900))
        with pytest.raises(grpc.RpcError) as info:
            client.kv.Put(rpc_pb2.PutRequest(key=b"big", value=b"x" * 2000))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == "etcdserver: request is too large"
        # Past gRPC's own limit (max-request-bytes + 512 KiB) the transport refuses the message.
        with pytest.raises(grpc.RpcError) as info:
            client.kv.Put(rpc_pb2.PutRequest(key=b"huge", value=b"x" * (600 * 1024)))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert client.kv.Range(rpc_pb2.RangeRequest(key=b"big")).count == 0
        client.channel.close()
    finally:
        server.stop()


def test_member_list_shows_the_one_member(etcdpy_server: ServerProcess, stubs: Stubs) -> None:
    response = stubs.cluster.MemberList(rpc_pb2.MemberListRequest())
    cid, mid = ids(etcdpy_server)
    assert (response.header.cluster_id, response.header.member_id, response.header.revision) == (cid, mid, 0)
    [member] = response.members
    assert (member.ID, member.name) == (mid, "default")
    assert list(member.peerURLs) == [etcdpy_server.peer_url]
    assert list(member.clientURLs) == [etcdpy_server.client_url]


def test_unserved_rpcs_answer_unimplemented(stubs: Stubs) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stubs.maintenance.Downgrade(rpc_pb2.DowngradeRequest())  # etcd 3.5's, not served
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_grpc_health_reports_serving(stubs: Stubs) -> None:
    health = health_pb2_grpc.HealthStub(stubs.channel)
    response = health.Check(health_pb2.HealthCheckRequest(service=""))
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_periodic_auto_compaction_compacts_history_older_than_the_retention(tmp_path: Path) -> None:
    server = ServerProcess(
        "etcdpy",
        tmp_path / "d",
        extra_args=["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1s"],
    ).start()
    try:
        client = connect(server)
        client.kv.Put(rpc_pb2.PutRequest(key=b"p", value=b"old"))  # revision 2

        def compacted() -> bool:  # polling a background timer: there is no event to wait on from outside
            if client.maintenance.HashKV(rpc_pb2.HashKVRequest()).compact_revision >= 2:
                return True
            client.kv.Put(rpc_pb2.PutRequest(key=b"p", value=b"new"))
            return False

        wait_until(compacted, 20, "no auto compaction within 20 s of a 1 s retention", interval=0.2)
        with pytest.raises(grpc.RpcError) as info:
            client.kv.Range(rpc_pb2.RangeRequest(key=b"p", revision=1))
        assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert "auto compaction: compacted to revision" in server.read_log()
        client.channel.close()
    finally:
        server.stop()
