"""--experimental-grpc-threads serves the same services from grpcio's thread pool, same answers.

Streams included: Watch and LeaseKeepAlive run their async handlers on the
state loop too, with a slow watch reader pushing back rather than losing events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from e2e_support import Stubs, connect
from grpc_health.v1 import health_pb2, health_pb2_grpc
from procs import ServerProcess

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.api.v3electionpb import v3election_pb2, v3election_pb2_grpc
from etcdpy.api.v3lockpb import v3lock_pb2, v3lock_pb2_grpc
from etcdpy.client import Client, op_put
from etcdpy.client import requests as rq
from etcdpy.client.watch import watch_create_request

pytestmark = pytest.mark.server_flags("--experimental-grpc-threads", "4")


@pytest.fixture
def threaded(server: ServerProcess) -> Iterator[Stubs]:
    client = connect(server)
    yield client
    client.channel.close()


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
        threaded.maintenance.Downgrade(rpc_pb2.DowngradeRequest())  # etcd 3.5's, not served
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as info:
        list(threaded.kv.RangeStream(rpc_pb2.RangeRequest(key=b"k")))  # a server stream, unimplemented
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as info:
        threaded.channel.unary_unary("/etcdserverpb.KV/Range")(b"\xff\xff\xff")  # bytes that are no request
    assert info.value.code() == grpc.StatusCode.INTERNAL  # etcd's code and text, not grpcio's UNKNOWN
    assert (info.value.details() or "").startswith("grpc: error unmarshalling request: ")


def test_more_concurrent_calls_than_threads_all_complete(threaded: Stubs) -> None:
    futures = [threaded.kv.Put.future(rpc_pb2.PutRequest(key=b"c%02d" % i, value=b"v")) for i in range(40)]
    revisions = sorted(f.result(timeout=30).header.revision for f in futures)
    assert revisions == list(range(2, 42))


def test_watch_streams_created_events_progress_and_cancel(server: ServerProcess) -> None:
    with Client([server.endpoint]) as client:
        first = client.put("w/a", "1").header.revision
        stream = client.watch(watch_create_request("w/", prefix=True, start_revision=first, prev_kv=True))
        responses = iter(stream)
        assert next(responses).created
        assert [(e.kv.key, e.kv.value) for e in next(responses).events] == [(b"w/a", b"1")]
        second = client.put("w/a", "2").header.revision
        live = next(responses)
        assert [(e.kv.value, e.prev_kv.value, e.kv.mod_revision) for e in live.events] == [
            (b"2", b"1", second)
        ]
        stream.request_progress()
        progress = next(responses)
        assert (progress.watch_id, progress.header.revision, list(progress.events)) == (-1, second, [])
        stream.cancel(0)
        assert next(responses).canceled
        assert next(responses, None) is None


def test_a_watch_read_slowly_gets_every_event_once_in_order(server: ServerProcess) -> None:
    """More events than a stream may queue wait, unread, in the client: the hub catches the watch up."""
    with Client([server.endpoint]) as client:
        stream = client.watch(watch_create_request("s/", prefix=True))
        responses = iter(stream)
        assert next(responses).created
        revisions = []
        for batch in range(20):  # 2000 events of 1 KiB, 100 a revision
            ops = [op_put(rq.put_request(b"s/%03d" % i, b"%d" % batch + b"x" * 1024)) for i in range(100)]
            revisions.append(client.txn(success=ops).header.revision)
        seen: list[tuple[int, bytes]] = []
        while len(seen) < 2000:
            seen.extend((e.kv.mod_revision, e.kv.key) for e in next(responses).events)
        stream.close()
    assert seen == [(rev, b"s/%03d" % i) for rev in revisions for i in range(100)]


def test_lease_keep_alive_streams_renewals(server: ServerProcess) -> None:
    with Client([server.endpoint]) as client:
        lease = client.lease_grant(30)
        keep_alive = client.lease_keep_alive(lease.ID)
        renewals = iter(keep_alive)
        assert [next(renewals).TTL for _ in range(2)] == [30, 30]  # the first two come 0.5 s apart
        keep_alive.close()
        client.lease_revoke(lease.ID)
        with pytest.raises(errors.ErrLeaseNotFound):  # the server answered the renewal with TTL 0
            client.lease_keep_alive_once(lease.ID)


def test_streams_beyond_the_thread_count_leave_unary_calls_served(server: ServerProcess) -> None:
    with Client([server.endpoint]) as client:
        streams = [client.watch(watch_create_request(f"k{i}")) for i in range(8)]  # twice the 4 threads
        for stream in streams:
            assert next(iter(stream)).created
        assert client.put("k0", "v", timeout=10).header.revision == 2
        for stream in streams:
            stream.close()


@pytest.mark.parametrize("threads", [0, 4])
def test_a_burst_past_grpcs_pending_call_limit_is_queued_not_cancelled(tmp_path: Path, threads: int) -> None:
    """grpc cancels calls at random past 1,000 waiting for the server; etcdpy lifts that limit, like etcd."""
    args = ["--experimental-grpc-threads", str(threads)] if threads else []
    server = ServerProcess("etcdpy", tmp_path / "burst", extra_args=args).start()

    async def burst() -> list[BaseException | rpc_pb2.PutResponse]:
        async with grpc.aio.insecure_channel(server.endpoint) as channel:
            kv = rpc_pb2_grpc.KVStub(channel)  # type: ignore[no-untyped-call]
            calls = [kv.Put(rpc_pb2.PutRequest(key=b"b%d" % i, value=b"v")) for i in range(3000)]
            return await asyncio.gather(*calls, return_exceptions=True)

    try:
        results = asyncio.run(burst())
    finally:
        server.stop()
    failed = [r for r in results if isinstance(r, BaseException)]
    assert not failed, f"{len(failed)} of 3000 failed, e.g. {failed[0]}"
    assert sorted(r.header.revision for r in results if isinstance(r, rpc_pb2.PutResponse)) == list(
        range(2, 3002)
    )


def test_lock_and_election_observe_are_served_too(server: ServerProcess) -> None:
    """Every LeaseWatch servicer is mounted: Lock (unary) and Election's Observe (a server stream)."""
    channel = grpc.insecure_channel(server.endpoint)
    try:
        lease = rpc_pb2_grpc.LeaseStub(channel).LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30))
        lock = v3lock_pb2_grpc.LockStub(channel)
        locked = lock.Lock(v3lock_pb2.LockRequest(name=b"l", lease=lease.ID))
        assert locked.key.startswith(b"l/")
        election = v3election_pb2_grpc.ElectionStub(channel)
        election.Campaign(v3election_pb2.CampaignRequest(name=b"e", lease=lease.ID, value=b"me"))
        observed = election.Observe(v3election_pb2.LeaderRequest(name=b"e"))
        assert next(observed).kv.value == b"me"
        observed.cancel()
    finally:
        channel.close()
