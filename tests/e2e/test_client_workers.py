"""--experimental-client-workers N serves client gRPC from worker processes, with the same answers.

Each test starts a member with two workers (`workers`); answers are compared with a member without
workers (`etcdpy_server`) or with etcd's own text.  The workers' part is shown, not assumed: their
sockets take the client connections, a killed worker is replaced while clients keep writing, and
the workers end with their member.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cli_tools import Running, run_tool
from google.protobuf import message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from procs import OWN_CONNECTION, ServerProcess
from test_metrics import scrape, value
from tls_procs import HttpsServer, server_tls_flags
from tlscerts import make_pki

from etcdpy.api import errors
from etcdpy.api.authpb import auth_pb2
from etcdpy.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.api.v3electionpb import v3election_pb2, v3election_pb2_grpc
from etcdpy.api.v3lockpb import v3lock_pb2, v3lock_pb2_grpc
from etcdpy.chaos import nemesis
from etcdpy.chaos.cluster import wait_group_gone, wait_until
from etcdpy.client import Client
from etcdpy.client.watch import watch_create_request

WORKER_COUNT = 2
WORKER_FLAGS = ["--experimental-client-workers", str(WORKER_COUNT)]


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[ServerProcess]:
    """A one-member etcdpy server with two client workers, killed (whole group) when the test ends."""
    server = ServerProcess("etcdpy", tmp_path / "workers.data", extra_args=WORKER_FLAGS).start()
    wait_workers_listen(server)
    yield server
    server.stop()


def wait_workers_listen(server: ServerProcess, count: int = WORKER_COUNT, prefix: str = "grpc") -> None:
    """Until each of `count` workers listens on its socket (before, the splicer sends connections to the
    member); `prefix` "grpcs" for an https front's."""
    wait_until(lambda: len(worker_pids(server)) == count, 20, "the workers did not start")
    wait_until(lambda: listening(worker_sockets(server, prefix, count)), 20, "the workers do not listen")


def listening(paths: list[Path]) -> bool:
    """Every Unix socket of `paths` listens (/proc/net/unix flags __SO_ACCEPTCON): seen without connecting."""
    with open("/proc/net/unix") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    listeners = {row[7] for row in rows if len(row) == 8 and row[3] == "00010000"}
    return all(str(path) in listeners for path in paths)


def worker_pids(server: ServerProcess) -> list[int]:
    """The pids of the member's running client workers (its children running the worker module)."""
    assert server.proc is not None
    return nemesis.worker_pids(server.proc.pid)


def worker_sockets(server: ServerProcess, prefix: str = "grpc", count: int = WORKER_COUNT) -> list[Path]:
    return [server.data_dir / f"{prefix}-worker-{i}.sock" for i in range(count)]


def socket_count(pid: int) -> int:
    """The sockets process `pid` holds open (each client connection a worker serves is one)."""
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:  # closed meanwhile
            continue
    return count


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def masked(response: message.Message) -> message.Message:
    """The response without what differs between two members of different clusters: their ids."""
    copy = type(response)()
    copy.CopyFrom(response)
    header = getattr(copy, "header", None)
    if header is not None and copy.HasField("header"):
        header.cluster_id = header.member_id = 0
    return copy


def script(channel: grpc.Channel) -> list[message.Message]:
    """One of every unary call (KV, Txn, Compact, Lease, Cluster, Maintenance, Lock, Election)."""
    kv = rpc_pb2_grpc.KVStub(channel)
    lease = rpc_pb2_grpc.LeaseStub(channel)
    cluster = rpc_pb2_grpc.ClusterStub(channel)
    maintenance = rpc_pb2_grpc.MaintenanceStub(channel)
    lock = v3lock_pb2_grpc.LockStub(channel)
    election = v3election_pb2_grpc.ElectionStub(channel)
    got: list[message.Message] = []
    for i in range(3):
        got.append(kv.Put(rpc_pb2.PutRequest(key=b"k%d" % i, value=b"v%d" % i, prev_kv=True)))
    got.append(kv.Put(rpc_pb2.PutRequest(key=b"k0", value=b"again", prev_kv=True)))
    got.append(kv.Range(rpc_pb2.RangeRequest(key=b"k", range_end=b"l")))
    got.append(kv.Range(rpc_pb2.RangeRequest(key=b"k0", revision=2)))
    compare = rpc_pb2.Compare(
        key=b"k1", target=rpc_pb2.Compare.VALUE, result=rpc_pb2.Compare.EQUAL, value=b"v1"
    )
    put = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"t", value=b"yes"))
    get = rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"k2"))
    got.append(kv.Txn(rpc_pb2.TxnRequest(compare=[compare], success=[put, get], failure=[get])))
    got.append(kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"k2", prev_kv=True)))
    got.append(kv.Compact(rpc_pb2.CompactionRequest(revision=3, physical=True)))
    got.append(kv.Range(rpc_pb2.RangeRequest(key=b"k", range_end=b"l", count_only=True)))
    got.append(lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60, ID=0x1234)))
    got.append(kv.Put(rpc_pb2.PutRequest(key=b"leased", value=b"x", lease=0x1234)))
    ttl = lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=0x1234, keys=True))
    got.append(rpc_pb2.LeaseTimeToLiveResponse(ID=ttl.ID, grantedTTL=ttl.grantedTTL, keys=ttl.keys))
    got.append(lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest()))
    members = cluster.MemberList(rpc_pb2.MemberListRequest()).members
    got.append(
        rpc_pb2.Member(name=members[0].name, clientURLs=[u.rsplit(":", 1)[0] for u in members[0].clientURLs])
    )
    status = maintenance.Status(rpc_pb2.StatusRequest())
    got.append(
        rpc_pb2.StatusResponse(version=status.version, raftIndex=status.raftIndex, raftTerm=status.raftTerm)
    )
    got.append(maintenance.Alarm(rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET)))
    got.append(maintenance.HashKV(rpc_pb2.HashKVRequest(revision=0)))
    got.append(lock.Lock(v3lock_pb2.LockRequest(name=b"lk", lease=0x1234)))
    got.append(lock.Unlock(v3lock_pb2.UnlockRequest(key=b"lk/1234")))
    got.append(election.Campaign(v3election_pb2.CampaignRequest(name=b"el", lease=0x1234, value=b"me")))
    got.append(election.Leader(v3election_pb2.LeaderRequest(name=b"el")))
    got.append(lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=0x1234)))
    got.append(kv.Range(rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0")))
    return [masked(response) for response in got]


def test_answers_equal_a_member_without_workers(workers: ServerProcess, etcdpy_server: ServerProcess) -> None:
    answers = []
    for server in (workers, etcdpy_server):
        with grpc.insecure_channel(server.endpoint) as channel:
            answers.append(script(channel))
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert answers[0] == answers[1]
    assert answers[0][0].header.revision == 2  # type: ignore[attr-defined]


def call_error(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details() or ""


def error_answers(endpoint: str) -> list[tuple[grpc.StatusCode, str]]:
    """The code and text of calls a member refuses (empty key, too large, unknown method, not protobuf)."""
    with grpc.insecure_channel(endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        maintenance = rpc_pb2_grpc.MaintenanceStub(channel)
        raw = channel.unary_unary("/etcdserverpb.KV/Range")  # bytes in, bytes out
        unknown = channel.unary_unary("/etcdserverpb.KV/NoSuchMethod")
        return [
            call_error(lambda: kv.Put(rpc_pb2.PutRequest(key=b""))),
            call_error(lambda: kv.Range(rpc_pb2.RangeRequest(key=b""))),
            call_error(lambda: kv.Put(rpc_pb2.PutRequest(key=b"big", value=b"x" * (1024 * 1024 + 10)))),
            call_error(lambda: kv.Put(rpc_pb2.PutRequest(key=b"huge", value=b"x" * (4 * 1024 * 1024)))),
            call_error(lambda: maintenance.Downgrade(rpc_pb2.DowngradeRequest())),
            call_error(lambda: unknown(b"")),
            call_error(lambda: list(kv.RangeStream(rpc_pb2.RangeRequest(key=b"k")))),  # a stream: proxied
            call_error(lambda: raw(b"\xff\xff\xff")),
        ]


def test_errors_keep_etcds_code_and_text(tmp_path: Path, etcdpy_server: ServerProcess) -> None:
    limit = ["--max-request-bytes", str(1024 * 1024)]
    server = ServerProcess("etcdpy", tmp_path / "limited", extra_args=[*WORKER_FLAGS, *limit]).start()
    plain = ServerProcess("etcdpy", tmp_path / "plain", extra_args=limit).start()
    try:
        wait_workers_listen(server)
        got = error_answers(server.endpoint)
        expected = error_answers(plain.endpoint)
        assert got == expected
    finally:
        server.stop()
        plain.stop()
    assert got[:3] == [
        (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided"),
        (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided"),
        (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large"),
    ]
    assert got[3][0] == grpc.StatusCode.RESOURCE_EXHAUSTED  # past grpc's limit (the limit + 2 MiB)
    assert {code for code, _ in got[4:7]} == {grpc.StatusCode.UNIMPLEMENTED}
    # bytes that are no protobuf: etcd's code and text, where grpc.aio alone answers UNKNOWN
    assert got[7][0] == grpc.StatusCode.INTERNAL
    assert got[7][1].startswith("grpc: error unmarshalling request: "), got[7]


UNKNOWN_SERVICE = health_pb2.HealthCheckRequest(service="no-such-service")


def outside_etcds_services(target: str) -> list[tuple[str, object]]:
    """What a member answers outside etcd's services: unknown methods, and grpc.health.v1 (proxied by a
    worker to the member's grpcio), each call on its own connection."""
    calls: list[tuple[str, Callable[[grpc.Channel], object]]] = [
        ("unknown method", lambda channel: channel.unary_unary("/etcdserverpb.KV/NoSuchMethod")(b"")),
        ("unknown service", lambda channel: channel.unary_unary("/no.Such/Method")(b"")),
        (
            "health",
            lambda channel: health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest()).status,
        ),
        ("health of unknown", lambda channel: health_pb2_grpc.HealthStub(channel).Check(UNKNOWN_SERVICE)),
        (
            "health watch",
            lambda channel: next(iter(health_pb2_grpc.HealthStub(channel).Watch(UNKNOWN_SERVICE))).status,
        ),
    ]
    answers: list[tuple[str, object]] = []
    for name, call in calls:
        for _ in range(100):  # the race the test names lost about 1 call in 12
            with grpc.insecure_channel(target, options=OWN_CONNECTION) as channel:
                try:
                    answers.append((name, call(channel)))
                except grpc.RpcError as err:
                    answers.append((name, (err.code(), err.details())))
    return answers


def test_calls_outside_etcds_services_answer_as_the_member_every_time(
    workers: ServerProcess, etcdpy_server: ServerProcess
) -> None:
    # A worker once proxied unknown paths too, as streams: the member refused them at once, and about one
    # call in twelve came back INTERNAL "Internal error from Core" (the proxy's own client, still sending).
    got = outside_etcds_services(f"unix:{worker_sockets(workers)[0]}")
    assert got == outside_etcds_services(etcdpy_server.endpoint)
    assert set(got) == {
        ("unknown method", (grpc.StatusCode.UNIMPLEMENTED, "Method not found!")),
        ("unknown service", (grpc.StatusCode.UNIMPLEMENTED, "Method not found!")),
        ("health", health_pb2.HealthCheckResponse.SERVING),
        ("health of unknown", (grpc.StatusCode.NOT_FOUND, "")),
        ("health watch", health_pb2.HealthCheckResponse.SERVICE_UNKNOWN),
    }


def test_auth_token_in_metadata_reaches_the_member(workers: ServerProcess) -> None:
    with grpc.insecure_channel(workers.endpoint) as channel:
        auth = rpc_pb2_grpc.AuthStub(channel)
        kv = rpc_pb2_grpc.KVStub(channel)
        auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", password="rootpw"))
        auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="root"))
        auth.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"))
        auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="app"))
        readwrite = auth_pb2.Permission(
            permType=auth_pb2.Permission.READWRITE, key=b"app/", range_end=b"app0"
        )
        auth.RoleGrantPermission(rpc_pb2.AuthRoleGrantPermissionRequest(name="app", perm=readwrite))
        auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="alice", password="apw"))
        auth.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="alice", role="app"))
        auth.AuthEnable(rpc_pb2.AuthEnableRequest())
        token = auth.Authenticate(rpc_pb2.AuthenticateRequest(name="alice", password="apw")).token
        metadata = [("token", token), ("x-" + "long" * 80, "any")]  # a key past 255 bytes, passed on
        assert kv.Put(rpc_pb2.PutRequest(key=b"app/a", value=b"1"), metadata=metadata).header.revision > 1
        got = kv.Range(rpc_pb2.RangeRequest(key=b"app/a"), metadata=metadata)
        assert [(item.key, item.value) for item in got.kvs] == [(b"app/a", b"1")]
        assert call_error(
            lambda: kv.Put(rpc_pb2.PutRequest(key=b"other", value=b"1"), metadata=metadata)
        ) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "etcdserver: permission denied",
        )
        assert call_error(lambda: kv.Range(rpc_pb2.RangeRequest(key=b"app/a"))) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "etcdserver: user name is empty",
        )
        wrong = [("token", "not-a-token")]
        assert call_error(lambda: kv.Range(rpc_pb2.RangeRequest(key=b"app/a"), metadata=wrong)) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "etcdserver: invalid auth token",
        )


def hold_lock(channel: grpc.Channel) -> tuple[v3lock_pb2_grpc.LockStub, bytes, Callable[[], list[bytes]]]:
    """Leases 1 and 2 granted and lock ``m`` held with lease 1: the Lock stub, the held key, and a
    function reading the lock's keys (``m/<lease hex>``)."""
    kv = rpc_pb2_grpc.KVStub(channel)
    lease = rpc_pb2_grpc.LeaseStub(channel)
    lock = v3lock_pb2_grpc.LockStub(channel)
    for lease_id in (1, 2):
        lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60, ID=lease_id))
    held = lock.Lock(v3lock_pb2.LockRequest(name=b"m", lease=1)).key

    def keys() -> list[bytes]:
        return [item.key for item in kv.Range(rpc_pb2.RangeRequest(key=b"m/", range_end=b"m0")).kvs]

    return lock, held, keys


def abandoned_lock_waiters(server: ServerProcess) -> tuple[list[bytes], list[bytes]]:
    """The lock's keys while a Lock whose client gave up (deadline) would wait; then after the unlock."""
    with grpc.insecure_channel(server.endpoint) as channel:
        lock, held, keys = hold_lock(channel)
        code, _ = call_error(lambda: lock.Lock(v3lock_pb2.LockRequest(name=b"m", lease=2), timeout=1))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        wait_until(lambda: keys() == [b"m/1"], 20, f"the abandoned waiter stays: {keys()}")
        waiting = keys()
        lock.Unlock(v3lock_pb2.UnlockRequest(key=held))
        unlocked = keys()
        # the one that gave up must not take the lock later: nothing happens, so a probe lock shows it
        probe = lock.Lock(v3lock_pb2.LockRequest(name=b"m", lease=1), timeout=10).key
        return waiting, [*unlocked, probe]


def test_a_lock_the_client_gave_up_on_stops_waiting(
    workers: ServerProcess, etcdpy_server: ServerProcess
) -> None:
    """grpcio cancels the handler of a call past its deadline; the worker passes that on to the member."""
    through_workers = abandoned_lock_waiters(workers)
    assert through_workers == abandoned_lock_waiters(etcdpy_server)
    assert through_workers == ([b"m/1"], [b"m/1"])


def test_a_lock_waiting_through_a_killed_worker_stops_waiting(workers: ServerProcess) -> None:
    """The worker's clients are gone with it: the member cancels their calls, as on a closed connection."""
    with grpc.insecure_channel(f"unix:{workers.data_dir / 'grpc.sock'}") as channel:  # the member's own
        lock, held, keys = hold_lock(channel)
        with grpc.insecure_channel(workers.endpoint, options=OWN_CONNECTION) as waiter:
            waiting = v3lock_pb2_grpc.LockStub(waiter).Lock.future(v3lock_pb2.LockRequest(name=b"m", lease=2))
            wait_until(lambda: keys() == [b"m/1", b"m/2"], 20, "the second Lock does not wait")
            for pid in worker_pids(workers):  # whichever serves the waiter
                os.kill(pid, signal.SIGKILL)
            assert waiting.exception(timeout=20).code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[union-attr]
        wait_until(lambda: keys() == [b"m/1"], 20, f"the dead worker's waiter stays: {keys()}")
        lock.Unlock(v3lock_pb2.UnlockRequest(key=held))
        assert lock.Lock(v3lock_pb2.LockRequest(name=b"m", lease=1), timeout=20).key == held


def test_watch_and_lease_keep_alive_stream_through_a_worker(workers: ServerProcess) -> None:
    with Client([workers.endpoint]) as client:
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
        stream.cancel(0)
        assert next(responses).canceled
        assert next(responses, None) is None
        lease = client.lease_grant(30)
        keep_alive = client.lease_keep_alive(lease.ID)
        renewals = iter(keep_alive)
        assert [next(renewals).TTL for _ in range(2)] == [30, 30]
        keep_alive.close()
        client.lease_revoke(lease.ID)
        with pytest.raises(errors.ErrLeaseNotFound):
            client.lease_keep_alive_once(lease.ID)


def test_a_watch_the_client_abandons_ends_on_the_member(workers: ServerProcess) -> None:
    """Cancelling the client's call cancels the worker's proxied stream: the member's watcher goes away."""

    def watchers() -> float:
        return value(scrape(workers), "etcd_debugging_mvcc_watcher_total")

    idle = watchers()
    requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()
    requests.put(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"gone/")))
    with grpc.insecure_channel(workers.endpoint) as channel:
        call = rpc_pb2_grpc.WatchStub(channel).Watch(iter(requests.get, None))
        assert next(call).created
        assert watchers() == idle + 1
        call.cancel()
        wait_until(lambda: watchers() == idle, 20, "the member still serves the abandoned watch")


def test_a_snapshot_streams_through_a_worker(workers: ServerProcess, tmp_path: Path) -> None:
    with Client([workers.endpoint]) as client:
        revision = client.put("snap", "x" * 1000).header.revision
    saved = run_tool("etcdctl", workers.endpoint, "snapshot", "save", str(tmp_path / "s.db"))
    assert (saved.returncode, saved.stdout) == (0, f"Snapshot saved at {tmp_path / 's.db'}\n"), saved.stderr
    status = run_tool("etcdctl", workers.endpoint, "snapshot", "status", str(tmp_path / "s.db"), "-w", "json")
    assert json.loads(status.stdout)["revision"] == revision


def test_connections_are_spread_over_the_workers(workers: ServerProcess) -> None:
    """Four client connections: each worker holds two more sockets, and Range is counted by the member."""
    pids = worker_pids(workers)
    before = {pid: socket_count(pid) for pid in pids}
    ranges = value(scrape(workers), "grpc_server_started_total", **range_labels())
    channels = [grpc.insecure_channel(workers.endpoint, options=OWN_CONNECTION) for _ in range(4)]
    try:
        for channel in channels:
            rpc_pb2_grpc.KVStub(channel).Range(rpc_pb2.RangeRequest(key=b"x"))
        gained = {pid: socket_count(pid) - before[pid] for pid in pids}
        assert sorted(gained.values()) == [2, 2], gained
        assert value(scrape(workers), "grpc_server_started_total", **range_labels()) == ranges + 4
    finally:
        for channel in channels:
            channel.close()


def range_labels() -> dict[str, str]:
    return {"grpc_type": "unary", "grpc_service": "etcdserverpb.KV", "grpc_method": "Range"}


def test_metrics_count_forwarded_calls(workers: ServerProcess) -> None:
    labels = {
        "grpc_type": "unary",
        "grpc_service": "etcdserverpb.KV",
        "grpc_method": "Put",
        "grpc_code": "OK",
    }

    def handled(code: str = "OK") -> float:
        try:
            return value(scrape(workers), "grpc_server_handled_total", **{**labels, "grpc_code": code})
        except AssertionError:  # no such call yet
            return 0.0

    ok, refused = handled(), handled("InvalidArgument")
    with grpc.insecure_channel(workers.endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        for i in range(5):
            kv.Put(rpc_pb2.PutRequest(key=b"m%d" % i, value=b"v"))
        call_error(lambda: kv.Put(rpc_pb2.PutRequest(key=b"")))
    assert (handled(), handled("InvalidArgument")) == (ok + 5, refused + 1)


def cli_transcript(server: ServerProcess) -> list[tuple[int, str, str]]:
    """etcdctl put/get/watch/lease/lock against `server`: (exit code, stdout, stderr) of each."""
    endpoint = server.endpoint
    out = []
    for args in (
        ("put", "a", "1"),
        ("put", "a", "2", "--prev-kv"),
        ("get", "a", "-w", "json"),
        ("get", "", "--prefix", "--keys-only"),
        ("get", "a", "--rev", "2"),
        ("del", "a"),
        ("lease", "grant", "30"),
        ("lease", "list"),
        ("put", ""),
    ):
        done = run_tool("etcdctl", endpoint, *args)
        out.append((done.returncode, done.stdout, done.stderr))
    lease_id = out[6][1].split()[1]
    for args in (("lease", "timetolive", lease_id, "--keys"), ("lease", "revoke", lease_id)):
        done = run_tool("etcdctl", endpoint, *args)
        out.append((done.returncode, done.stdout.replace(lease_id, "ID"), done.stderr))
    watch = Running("etcdctl", endpoint, "watch", "w", "--rev", "1", "--prev-kv")
    run_tool("etcdctl", endpoint, "put", "w", "x")
    out.append((0, "\n".join(watch.lines(3)), ""))
    watch.stop()
    locked = run_tool("etcdctl", endpoint, "lock", "mutex", "echo", "held")
    out.append((locked.returncode, locked.stdout, locked.stderr))
    out[6] = (out[6][0], out[6][1].replace(lease_id, "ID"), out[6][2])
    out[7] = (out[7][0], out[7][1].replace(lease_id, "ID"), out[7][2])
    out[2] = (out[2][0], mask_json_ids(out[2][1]), out[2][2])
    return out


def mask_json_ids(text: str) -> str:
    document = json.loads(text)
    document["header"].pop("cluster_id")
    document["header"].pop("member_id")
    return json.dumps(document)


def test_etcdctl_prints_the_same_through_workers(
    workers: ServerProcess, etcdpy_server: ServerProcess
) -> None:
    through_workers = cli_transcript(workers)
    assert through_workers == cli_transcript(etcdpy_server)
    assert through_workers[0] == (0, "OK\n", "")
    assert through_workers[-1] == (0, "held\n", "")


# --- a worker killed under load, and the workers' end with the member ---------------------------


def test_a_killed_worker_is_replaced_and_no_acknowledged_write_is_lost(workers: ServerProcess) -> None:
    acked: dict[bytes, bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()
    unavailable = [0]
    after_kill: list[int] = []
    failures: list[BaseException] = []

    def writer(index: int) -> None:
        channel = grpc.insecure_channel(workers.endpoint, options=OWN_CONNECTION)
        try:
            kv = rpc_pb2_grpc.KVStub(channel)
            serial = 0
            while not stop.is_set():
                key, val = b"load/%d/%06d" % (index, serial), b"%d" % serial
                serial += 1
                try:
                    kv.Put(rpc_pb2.PutRequest(key=key, value=val), timeout=10)
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                    with lock:
                        unavailable[0] += 1
                    continue  # grpc reconnects the channel: through the splicer, to a worker that answers
                with lock:
                    acked[key] = val
                    if after_kill:
                        after_kill[index] += 1
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)
        finally:
            channel.close()

    idle = {pid: socket_count(pid) for pid in worker_pids(workers)}
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(acked) >= 100 or bool(failures), 60, "the writers made no progress")
        old = worker_pids(workers)
        serving = [pid for pid in old if socket_count(pid) > idle[pid]]
        assert serving == old, f"not every worker holds writers' connections: {idle}"
        victim = serving[0]
        started = value(scrape(workers), "grpc_server_started_total", **range_labels())
        os.kill(victim, signal.SIGKILL)
        with lock:
            after_kill.extend([0, 0, 0, 0])
        wait_until(
            lambda: len(worker_pids(workers)) == WORKER_COUNT and victim not in worker_pids(workers),
            30,
            "no worker replaced the killed one",
        )
        assert workers.proc is not None and workers.proc.poll() is None
        wait_until(
            lambda: all(n >= 50 for n in after_kill) or bool(failures), 60, f"writers stuck: {after_kill}"
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not failures, failures
    # The writers on the killed worker go on (after_kill above); whether one of them saw UNAVAILABLE
    # depends on where its call was when the worker died (grpc retries a call that never left on its
    # own), so `unavailable` is not asserted.
    assert workers.proc.poll() is None  # the member served throughout
    new = worker_pids(workers)
    assert set(new) - set(old) and victim not in new
    for path in worker_sockets(workers):  # every worker answers on its own socket, the new one too
        with grpc.insecure_channel(f"unix:{path}") as channel:
            ranged = rpc_pb2_grpc.KVStub(channel).Range(
                rpc_pb2.RangeRequest(key=b"x"), timeout=20, wait_for_ready=True
            )
            assert ranged.count == 0  # the new worker binds its socket once it has started: waited for
    assert value(scrape(workers), "grpc_server_started_total", **range_labels()) == started + WORKER_COUNT
    with Client([workers.endpoint]) as client:
        stored = {kv.key: kv.value for kv in client.get("load/", prefix=True).kvs}
    missing = [key for key in acked if stored.get(key) != acked[key]]
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:3]}"


def test_workers_end_with_a_killed_member(workers: ServerProcess) -> None:
    """SIGKILL of the member alone: its workers die with it (the parent-death signal), then the group."""
    pids = worker_pids(workers)
    assert workers.proc is not None
    os.kill(workers.proc.pid, signal.SIGKILL)
    workers.proc.wait(10)
    wait_until(lambda: not any(alive(pid) for pid in pids), 20, "workers outlived their member")
    wait_group_gone(workers.proc.pid)  # the splicer too dies with the member


def test_sigkill_of_the_members_group_leaves_nothing(workers: ServerProcess) -> None:
    pids = worker_pids(workers)
    workers.kill()  # SIGKILL to the group, then wait_group_gone
    assert pids and not any(alive(pid) for pid in pids)


def test_sigterm_stops_the_member_and_its_workers(workers: ServerProcess) -> None:
    pids = worker_pids(workers)
    assert workers.proc is not None
    workers.proc.send_signal(signal.SIGTERM)
    assert workers.proc.wait(30) == 0
    assert not any(alive(pid) for pid in pids)
    assert not any(path.exists() for path in worker_sockets(workers))


# --- TLS: an https client URL's workers serve TLS and pass on the certificate's common name -------


def test_https_workers_serve_tls_and_the_certificates_common_name_is_the_user(tmp_path: Path) -> None:
    """With --client-cert-auth the user of a call without a token is its certificate's CN, through a
    worker as through the member's grpcio (alice may write a/ only; root may list users)."""
    pki = make_pki(tmp_path / "pki")
    server = HttpsServer(
        "etcdpy", tmp_path / "tls.data", extra_args=[*server_tls_flags(pki), *WORKER_FLAGS]
    ).start()
    try:
        wait_workers_listen(server, prefix="grpcs")
        idle = {pid: socket_count(pid) for pid in worker_pids(server)}

        def channel(name: str) -> grpc.Channel:
            pair = pki.client_root if name == "root" else pki.client(name)
            credentials = grpc.ssl_channel_credentials(
                pki.ca.read_bytes(), pair.key.read_bytes(), pair.cert.read_bytes()
            )
            return grpc.secure_channel(server.endpoint, credentials, options=OWN_CONNECTION)

        with channel("root") as root:
            auth = rpc_pb2_grpc.AuthStub(root)
            auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", password="rootpw"))
            auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="root"))
            auth.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"))
            auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="a"))
            readwrite = auth_pb2.Permission.READWRITE
            permission = auth_pb2.Permission(permType=readwrite, key=b"a/", range_end=b"a0")
            auth.RoleGrantPermission(rpc_pb2.AuthRoleGrantPermissionRequest(name="a", perm=permission))
            auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="alice", password="apw"))
            auth.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="alice", role="a"))
            auth.AuthEnable(rpc_pb2.AuthEnableRequest())
            assert list(auth.UserList(rpc_pb2.AuthUserListRequest()).users) == ["alice", "root"]
        with channel("alice") as alice:
            kv = rpc_pb2_grpc.KVStub(alice)
            kv.Put(rpc_pb2.PutRequest(key=b"a/1", value=b"x"))
            with pytest.raises(grpc.RpcError) as refused:
                kv.Put(rpc_pb2.PutRequest(key=b"b/1", value=b"x"))
            assert (refused.value.code(), refused.value.details()) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "etcdserver: permission denied",
            )
            # the connection is a worker's, not the member's grpcio
            assert any(socket_count(pid) > idle[pid] for pid in worker_pids(server))
            assert [kv.key for kv in kv.Range(rpc_pb2.RangeRequest(key=b"a/1")).kvs] == [b"a/1"]
    finally:
        server.stop()
