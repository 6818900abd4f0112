"""A full disk: a member that cannot write raises NOSPACE through the others and stops; nothing acked is lost.

Three ways to fill it: the ``enospc`` failpoint on the raft log write of one
member of three, a real tiny filesystem (tmpfs, where the machine lets the
test mount one), and a small ``--quota-backend-bytes`` (compared with etcd).
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from e2e.cluster_support import ProcCluster, running_cluster
from procs import OWN_CONNECTION, ServerProcess
from tmpfs import tiny_filesystem

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.etcdserverpb import rpc_pb2_grpc as rpc
from etcdpy.chaos.cluster import wait_until
from etcdpy.client import Client
from etcdpy.server.failpoints import ENV as FAILPOINTS_ENV

pytestmark = pytest.mark.timeout(240)


def _status(member: ServerProcess) -> pb.StatusResponse:
    with grpc.insecure_channel(member.endpoint, options=OWN_CONNECTION) as channel:
        response: pb.StatusResponse = rpc.MaintenanceStub(channel).Status(pb.StatusRequest(), timeout=5)  # type: ignore[no-untyped-call]
        return response


def _alarms(endpoint: str) -> list[tuple[int, int]]:
    with grpc.insecure_channel(endpoint, options=OWN_CONNECTION) as channel:
        stub = rpc.MaintenanceStub(channel)  # type: ignore[no-untyped-call]
        response = stub.Alarm(pb.AlarmRequest(action=pb.AlarmRequest.GET), timeout=10)
        return sorted((a.memberID, a.alarm) for a in response.alarms)


def _cli(endpoints: str, *args: str) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run(
        [sys.executable, "-m", "etcdpy", "--endpoints", endpoints, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _serves(member: ServerProcess) -> bool:
    with contextlib.suppress(grpc.RpcError):
        _status(member)
        return True
    return False


def _put_all(
    client: Client, prefix: str, count: int, *, value_size: int = 16
) -> tuple[dict[bytes, bytes], Exception | None]:
    """Put `count` keys until the first refusal; the acknowledged ones, and the error that stopped it."""
    acked: dict[bytes, bytes] = {}
    for i in range(count):
        key, value = f"{prefix}{i:04d}".encode(), (f"{i}-" * value_size).encode()
        try:
            client.put(key, value)
        except errors.EtcdError as exc:
            return acked, exc
        acked[key] = value
    return acked, None


def _assert_has(client: Client, acked: dict[bytes, bytes], *, serializable: bool = False) -> None:
    for key, value in acked.items():
        kvs = client.get(key, serializable=serializable).kvs
        assert [kv.value for kv in kvs] == [value], f"acknowledged {key!r} lost or changed"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcCluster]:
    with running_cluster("etcdpy", tmp_path, 3) as running:
        yield running


def test_enospc_on_a_follower_raises_nospace_through_the_others_and_loses_nothing(
    cluster: ProcCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    leader = cluster.wait_leader()
    victim = next(m for m in cluster.members if m is not leader)
    others = [m for m in cluster.members if m is not victim]
    victim_id = _status(victim).header.member_id
    with Client([m.endpoint for m in others]) as client:
        before, error = _put_all(client, "before/", 20)
        assert error is None
        victim.kill()
        fail_at = _status(leader).raftIndex + 10
        monkeypatch.setenv(FAILPOINTS_ENV, f"raftBeforeSave=enospc@{fail_at}")
        victim.start()
        monkeypatch.delenv(FAILPOINTS_ENV)
        during, error = _put_all(client, "during/", 40)
        assert victim.proc is not None
        assert victim.proc.wait(timeout=60) == 1, "the member that cannot write must stop"
        log = victim.read_log()
        assert "no space left on device writing the data dir" in log
        assert "nothing it could not save was acknowledged" in log
        assert "the NOSPACE alarm was raised through" in log
        for member in others:
            assert _alarms(member.endpoint) == [(victim_id, pb.NOSPACE)]
        listed = _cli(others[0].endpoint, "alarm", "list")
        assert listed.stdout == f"memberID:{victim_id} alarm:NOSPACE \n"
        with pytest.raises(errors.ErrNoSpace):
            client.put(b"refused", b"while NOSPACE is raised")
        _assert_has(client, before | during)  # reads go on; nothing acknowledged is lost
        client.delete(b"before/0000")  # deletes free space: allowed
        before.pop(b"before/0000")
        victim.start()  # the disk was "freed": no failpoint now
        wait_until(lambda: _serves(victim), 30, "the member did not come back")
        disarmed = _cli(others[0].endpoint, "alarm", "disarm")
        assert disarmed.stdout == f"memberID:{victim_id} alarm:NOSPACE \n"
        client.put(b"after", b"disarm")
    with Client(victim.endpoint) as local:
        wait_until(
            lambda: bool(local.get(b"after", serializable=True).kvs), 30, "the member did not catch up"
        )
        _assert_has(local, before | during, serializable=True)
        assert not local.get(b"before/0000", serializable=True).kvs


def test_a_real_full_filesystem_stops_the_member_with_a_clear_message_and_keeps_acked_writes(
    tmp_path: Path,
) -> None:
    with tiny_filesystem(tmp_path / "small", "3m") as small:
        server = ServerProcess(
            "etcdpy",
            small / "data",
            extra_args=["--snapshot-count", "1000000"],
            log_path=tmp_path / "server.log",
        ).start()
        try:
            with Client(server.endpoint, command_timeout=10) as client:
                acked, error = _put_all(client, "k/", 2000, value_size=800)
            assert error is not None, "a 3 MB filesystem must fill"
            assert server.proc is not None
            assert server.proc.wait(timeout=60) == 1
            log = server.read_log()
            assert "no space left on device writing the data dir" in log, log[-3000:]
            assert "no other member raised the NOSPACE alarm" in log  # a single member: nobody to tell
            subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)  # space freed
            server.start()
            with Client(server.endpoint) as client:
                _assert_has(client, acked)
                client.put(b"after", b"space was freed")
        finally:
            server.stop()


@pytest.mark.parametrize("kind", ["etcd", "etcdpy"])
def test_a_full_quota_raises_nospace_refuses_growth_and_serves_reads_and_deletes(
    kind: str, tmp_path: Path
) -> None:
    quota = 400_000
    server = ServerProcess(kind, tmp_path / "data", extra_args=[f"--quota-backend-bytes={quota}"]).start()
    try:
        member_id = _status(server).header.member_id
        with Client(server.endpoint) as client:
            acked, error = _put_all(client, "fill/", 400, value_size=2000)
            assert (
                isinstance(error, errors.ErrNoSpace)
                and error.text == "etcdserver: mvcc: database space exceeded"
            )
            assert _alarms(server.endpoint) == [(member_id, pb.NOSPACE)]
            assert f"memberID:{member_id} alarm:NOSPACE " in _status(server).errors
            with pytest.raises(errors.ErrNoSpace):
                client.put(b"x", b"")
            with pytest.raises(errors.ErrNoSpace):
                client.lease_grant(60)
            _assert_has(client, acked)
            deleted = client.delete(b"fill/", prefix=True)
            if kind == "etcd":
                # etcd 3.4's quota applier applies a put and then answers NOSPACE (apply.go,
                # quotaApplierV3.Put) when the quota ran out between its check and the apply.
                assert deleted.deleted in (len(acked), len(acked) + 1)
            else:  # etcdpy refuses before proposing, and the capped layer refuses without applying
                assert deleted.deleted == len(acked)
            client.compact(deleted.header.revision)
            # Still NOSPACE: only an operator's disarm lifts it (after defrag in etcd).
            with pytest.raises(errors.ErrNoSpace):
                client.put(b"x", b"")
    finally:
        server.stop()


def test_the_alarm_survives_a_restart_and_disarm_with_room_restores_writes(tmp_path: Path) -> None:
    server = ServerProcess("etcdpy", tmp_path / "data", extra_args=["--quota-backend-bytes=300000"]).start()
    try:
        member_id = _status(server).header.member_id
        with Client(server.endpoint) as client:
            acked, error = _put_all(client, "fill/", 400, value_size=2000)
            assert isinstance(error, errors.ErrNoSpace)
        server.stop()
        server.extra_args = ["--quota-backend-bytes=0"]  # the operator raises the quota (0: 2 GiB)
        server.start()
        assert _alarms(server.endpoint) == [(member_id, pb.NOSPACE)]  # kept through the restart
        with Client(server.endpoint) as client:
            with pytest.raises(errors.ErrNoSpace):
                client.put(b"x", b"still refused until disarmed")
            assert _cli(server.endpoint, "alarm", "disarm").stdout == f"memberID:{member_id} alarm:NOSPACE \n"
            client.put(b"x", b"room again")
            _assert_has(client, acked)
    finally:
        server.stop()
