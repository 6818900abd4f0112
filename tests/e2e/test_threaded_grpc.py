"""--experimental-grpc-threads serves the same services from grpcio's thread pool, same answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from e2e_support import Stubs, connect
from grpc_health.v1 import health_pb2, health_pb2_grpc
from procs import ServerProcess

from etcdpy.api.etcdserverpb import rpc_pb2


@pytest.fixture
def threaded(tmp_path: Path) -> Iterator[Stubs]:
    server = ServerProcess("etcdpy", tmp_path / "d", extra_args=["--experimental-grpc-threads", "4"]).start()
    client = connect(server)
    yield client
    client.channel.close()
    server.stop()


def test_writes_reads_and_status_match_the_asyncio_server(threaded: Stubs) -> None:
    put = threaded.kv.Put(rpc_pb2.PutRequest(key=b"k", value=b"v"))
    assert (put.header.revision, put.header.raft_term) == (2, 2)
    got = threaded.kv.Range(rpc_pb2.RangeRequest(key=b"k"))
    assert [(kv.value, kv.mod_revision) for kv in got.kvs] == [(b"v", 2)]
    status = threaded.maintenance.Status(rpc_pb2.StatusRequest())
    assert (status.raftIndex, status.raftAppliedIndex, status.version) == (5, 5, "3.4.23")
    assert len(threaded.cluster.MemberList(rpc_pb2.MemberListRequest()).members) == 1
    health = health_pb2_grpc.HealthStub(threaded.channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_errors_keep_etcds_code_and_text(threaded: Stubs) -> None:
    with pytest.raises(grpc.RpcError) as info:
        threaded.kv.Put(rpc_pb2.PutRequest(key=b""))
    assert (info.value.code(), info.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: key is not provided",
    )
    with pytest.raises(grpc.RpcError) as info:
        threaded.maintenance.Defragment(rpc_pb2.DefragmentRequest())
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_more_concurrent_calls_than_threads_all_complete(threaded: Stubs) -> None:
    futures = [threaded.kv.Put.future(rpc_pb2.PutRequest(key=b"c%02d" % i, value=b"v")) for i in range(40)]
    revisions = sorted(f.result(timeout=30).header.revision for f in futures)
    assert revisions == list(range(2, 42))
