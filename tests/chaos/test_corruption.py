"""Damaged data on disk: a member refuses to start and says what to do, or drops a torn tail; no acked loss.

The rule (see etcdpy/server/storage/backend.py and raftlog.py): a write cut off
at the very end of LevelDB's ``.log`` never completed, so it was never
acknowledged, and is dropped (as etcd's WAL repair drops a torn tail); damage
anywhere else -- inside the ``.log``, in a table file (``.ldb``), in a raft log
entry followed by others -- refuses to start with a message naming the data
dir and the way out (remove the member, wipe it, add it back).
"""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import grpc
import plyvel
import pytest
from e2e.cluster_support import ProcCluster, etcdctl, etcdctl_until_ok, running_cluster
from procs import OWN_CONNECTION, ServerProcess

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.etcdserverpb import rpc_pb2_grpc as rpc
from etcdpy.chaos.cluster import wait_until
from etcdpy.client import Client
from etcdpy.server.storage import schema

pytestmark = pytest.mark.timeout(240)


def _db(server: ServerProcess) -> Path:
    return server.data_dir / "member" / "db"


def _write(server: ServerProcess, prefix: str, count: int) -> dict[bytes, bytes]:
    acked = {}
    with Client(server.endpoint) as client:
        for i in range(count):
            key, value = f"{prefix}{i:03d}".encode(), f"value {i} ".encode() * 20
            client.put(key, value)
            acked[key] = value
    return acked


def _assert_has(endpoint: str, acked: dict[bytes, bytes], *, serializable: bool = False) -> None:
    with Client(endpoint) as client:
        for key, value in acked.items():
            assert [kv.value for kv in client.get(key, serializable=serializable).kvs] == [value], key


def _refuses(server: ServerProcess) -> str:
    """Start `server`, which must exit 1 without serving; its output."""
    result = subprocess.run(server.command(), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stderr[-2000:]
    return result.stderr


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _newest(db: Path, suffix: str) -> Path:
    files = sorted(db.glob(f"*{suffix}"), key=lambda p: int(p.stem))
    assert files, f"no {suffix} file in {db}"
    return files[-1]


@pytest.fixture
def member(etcdpy_server: ServerProcess) -> ServerProcess:
    """The member whose data these tests damage (the shared fixture's server, its log beside its data)."""
    return etcdpy_server


def _with_table_file(server: ServerProcess) -> dict[bytes, bytes]:
    """Write data, then restart once so LevelDB turns its .log into a table file (.ldb)."""
    acked = _write(server, "k/", 60)
    server.stop()
    server.start()
    server.stop()
    return acked


def test_damage_inside_the_leveldb_log_refuses_to_start(member: ServerProcess) -> None:
    acked = _write(member, "k/", 30)
    member.stop()  # kill -9: the writes are only in the .log
    log_file = _newest(_db(member), ".log")
    _flip(log_file, log_file.stat().st_size // 2)
    message = _refuses(member)
    assert f"data dir {member.data_dir} is corrupt" in message
    assert f"LevelDB in {_db(member)} cannot be opened" in message
    assert "write-ahead .log or MANIFEST file is damaged" in message
    assert "etcdpy member remove" in message and "--initial-cluster-state=existing" in message
    assert acked  # written and acknowledged before the damage


def test_a_damaged_table_file_refuses_to_start(member: ServerProcess) -> None:
    _with_table_file(member)
    table = max(_db(member).glob("*.ldb"), key=lambda p: p.stat().st_size)
    _flip(table, 10)  # inside the first data block
    message = _refuses(member)
    assert f"data dir {member.data_dir} is corrupt" in message
    assert "a table file (.ldb)" in message and "fails its checksum" in message
    assert "etcdpy member remove" in message


def test_a_write_torn_at_the_end_of_the_leveldb_log_is_dropped_and_acked_data_kept(
    member: ServerProcess,
) -> None:
    acked = _write(member, "k/", 30)
    member.stop()
    # A crash in the middle of appending: a record header promising 200 bytes, 20 of them written.
    with _newest(_db(member), ".log").open("ab") as log_file:
        log_file.write(struct.pack("<IHB", 0xDEADBEEF, 200, 1) + b"x" * 20)
    member.start()
    _assert_has(member.endpoint, acked)
    with Client(member.endpoint) as client:
        client.put(b"after", b"restart")


def _raft_entry_damage(server: ServerProcess, index_from_end: int) -> int:
    """Damage the raft entry `index_from_end` from the log's end (in a valid LevelDB record); its index."""
    db = plyvel.DB(str(_db(server)))
    try:
        keys = [key for key, _ in db.iterator(prefix=schema.WAL)]
        key = keys[-1 - index_from_end]
        value = bytearray(db.get(key))
        value[-1] ^= 0xFF
        db.put(key, bytes(value), sync=True)
        return int.from_bytes(key[len(schema.WAL) :], "big")
    finally:
        db.close()


def test_a_damaged_raft_entry_followed_by_others_refuses_to_start(member: ServerProcess) -> None:
    _write(member, "k/", 10)
    member.stop()
    index = _raft_entry_damage(member, 3)
    message = _refuses(member)
    assert f"raft log entry {index} is damaged and later entries exist" in message
    assert "etcdpy member remove" in message


def _status(endpoint: str) -> pb.StatusResponse:
    with grpc.insecure_channel(endpoint, options=OWN_CONNECTION) as channel:
        response: pb.StatusResponse = rpc.MaintenanceStub(channel).Status(pb.StatusRequest(), timeout=5)  # type: ignore[no-untyped-call]
        return response


def _hash_kv(endpoint: str, revision: int) -> int:
    with grpc.insecure_channel(endpoint, options=OWN_CONNECTION) as channel:
        stub = rpc.MaintenanceStub(channel)  # type: ignore[no-untyped-call]
        response: pb.HashKVResponse = stub.HashKV(pb.HashKVRequest(revision=revision), timeout=10)
        return response.hash


def _replace(cluster: ProcCluster, broken: ServerProcess, root: Path) -> ServerProcess:
    """The documented way out: remove the member, wipe it, add a fresh one, start it with state existing."""
    healthy = ",".join(m.endpoint for m in cluster.members if m is not broken)
    broken_id = _member_id(cluster, broken)
    etcdctl_until_ok(healthy, "member", "remove", f"{broken_id:x}")
    cluster.members.remove(broken)
    fresh = ServerProcess("etcdpy", root / "fresh.data", name="fresh")
    out = etcdctl_until_ok(healthy, "member", "add", "fresh", f"--peer-urls={fresh.peer_url}").stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("ETCD_"))
    fresh.extra_args = cluster.member_args(env["ETCD_INITIAL_CLUSTER"].strip('"'), "existing")
    cluster.members.append(fresh)
    fresh.start()
    return fresh


def _member_id(cluster: ProcCluster, target: ServerProcess) -> int:
    listed = etcdctl(",".join(m.endpoint for m in cluster.alive()), "member", "list", "-w", "json").stdout
    (found,) = [m["ID"] for m in json.loads(listed)["members"] if m["peerURLs"] == [target.peer_url]]
    return int(found)


@pytest.mark.parametrize("damage", ["table file", "log tail cut", "raft entry"])
def test_a_damaged_member_of_three_is_refused_or_heals_and_the_cluster_keeps_every_acked_write(
    tmp_path: Path, damage: str
) -> None:
    with running_cluster("etcdpy", tmp_path, 3) as cluster:
        leader = cluster.wait_leader()
        victim = next(m for m in cluster.members if m is not leader)
        acked = _write(leader, "before/", 40)
        wait_until(
            lambda: _status(victim.endpoint).raftAppliedIndex >= _status(leader.endpoint).raftIndex, 20, "lag"
        )
        victim.stop()
        if damage == "table file":
            victim.start()  # LevelDB turns the .log into a table file at open
            victim.stop()
            _flip(max(_db(victim).glob("*.ldb"), key=lambda p: p.stat().st_size), 10)
        elif damage == "log tail cut":
            log_file = _newest(_db(victim), ".log")
            log_file.write_bytes(log_file.read_bytes()[:-5])  # its last write lost its end
        else:
            # The newest entry fails its checksum, but the store applied it: it was durable, so this is
            # damage, not a torn write, and dropping it would lose an entry this member acknowledged.
            _raft_entry_damage(victim, 0)
        acked |= _write(leader, "while-down/", 20)  # the others keep serving
        if damage == "table file":
            assert "is corrupt" in _refuses(victim)
            victim = _replace(cluster, victim, tmp_path)
        elif damage == "raft entry":
            message = _refuses(victim)
            assert "but the raft log ends at" in message and "etcdpy member remove" in message
            victim = _replace(cluster, victim, tmp_path)
        else:
            victim.start()  # a torn tail is dropped; the member fetches what it lacks from the leader
        acked |= _write(leader, "after/", 10)
        with Client(victim.endpoint) as local:
            wait_until(lambda: bool(local.get(b"after/009", serializable=True).kvs), 30, "no catch-up")
        _assert_has(victim.endpoint, acked, serializable=True)
        _assert_has(cluster.members[0].endpoint, acked)
        revision = _status(leader.endpoint).header.revision
        hashes = {_hash_kv(m.endpoint, revision) for m in cluster.alive()}
        assert len(hashes) == 1, "members disagree on the store's content"


def test_the_startup_checksum_scan_can_be_turned_off(member: ServerProcess) -> None:
    """--experimental-initial-corrupt-check=false skips the whole-database scan (a fast start)."""
    _with_table_file(member)
    table = max(_db(member).glob("*.ldb"), key=lambda p: p.stat().st_size)
    _flip(table, 10)
    command = [*member.command(), "--experimental-initial-corrupt-check=false"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = proc.communicate(timeout=8)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
    # Whatever happens later (reading the damaged block raises CORRUPT), the start-up scan did not refuse it.
    assert "fails its checksum" not in stderr
