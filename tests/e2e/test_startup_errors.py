"""A member that cannot start says why on stderr and exits non-zero; a healthy one announces itself."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import plyvel
import pytest
from e2e_support import connect, run_to_exit
from procs import ServerProcess, free_port, wait_for_port

from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.api.raftpb import raft_pb2 as raftpb
from etcdpy.chaos.cluster import wait_until
from etcdpy.server.config import auto_client_workers
from etcdpy.server.consensus.membership import member_id
from etcdpy.server.storage.backend import Backend
from etcdpy.server.storage.raftlog import RaftLogStorage


def test_startup_line_names_the_client_url_and_member_id(etcdpy_server: ServerProcess) -> None:
    mid = member_id([etcdpy_server.peer_url], "etcd-cluster")
    line = f"etcdpy: member {mid:x} (default) of cluster"
    # The port answers (the front listens) a moment before the member prints its line.
    wait_until(lambda: line in etcdpy_server.read_log(), 20, "no startup line")
    assert f"serving client requests on {etcdpy_server.client_url}" in etcdpy_server.read_log()
    assert "client worker" not in etcdpy_server.read_log()  # none unless asked for


def test_startup_line_counts_the_client_workers(tmp_path: Path) -> None:
    # auto: one per CPU the member may use (at most 4), none on one CPU; a pool for each URL scheme.
    workers = auto_client_workers(len(os.sched_getaffinity(0)))
    server = ServerProcess("etcdpy", tmp_path / "data", extra_args=["--experimental-client-workers", "auto"])
    server.start()
    try:
        wait_until(lambda: "etcdpy: member" in server.read_log(), 20, "no startup line")
        if workers:
            assert (
                f"on {server.client_url} (gRPC served by {workers} client worker processes)\n"
                in server.read_log()
            )
        else:
            assert "client worker" not in server.read_log()
    finally:
        server.stop()


def test_a_data_dir_held_by_a_running_server_is_refused(etcdpy_server: ServerProcess) -> None:
    second = ServerProcess("etcdpy", etcdpy_server.data_dir)
    result = run_to_exit(second)
    assert result.returncode == 1
    assert f"data dir {etcdpy_server.data_dir} is in use by another running server" in result.stderr


def test_a_port_in_use_is_refused(data_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_to_exit(ServerProcess("etcdpy", data_dir, client_port=port))
    assert result.returncode == 1
    assert f"listen tcp 127.0.0.1:{port}: bind: address already in use" in result.stderr


def test_a_foreign_leveldb_is_refused(data_dir: Path) -> None:
    db_path = data_dir / "member" / "db"
    db_path.mkdir(parents=True)
    foreign = plyvel.DB(str(db_path), create_if_missing=True)
    foreign.put(b"someone", b"else's data")
    foreign.close()
    result = run_to_exit(ServerProcess("etcdpy", data_dir))
    assert result.returncode == 1
    assert "holds a foreign LevelDB" in result.stderr


def test_a_corrupt_data_dir_is_refused(data_dir: Path) -> None:
    Backend(data_dir).close()
    db_path = data_dir / "member" / "db"
    for manifest in db_path.glob("MANIFEST-*"):
        manifest.write_bytes(b"\x00garbage" * 64)
    result = run_to_exit(ServerProcess("etcdpy", data_dir))
    assert result.returncode == 1
    assert f"data dir {data_dir}" in result.stderr
    assert "corrupt" in result.stderr.lower()


def test_membership_without_a_log_is_refused_as_damaged(data_dir: Path) -> None:
    backend = Backend(data_dir)
    log = RaftLogStorage.open(backend)
    log.write(
        log.prepare(entries=(raftpb.Entry(index=1, term=1),), hard_state=raftpb.HardState(term=1, commit=1))
    )
    backend.close()
    result = run_to_exit(ServerProcess("etcdpy", data_dir))
    assert result.returncode == 1
    assert "has a raft log but no cluster membership" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--listen-client-urls", "127.0.0.1:1"], 2, "URL scheme must be http or https"),
        (["--max-txn-ops", "-1"], 2, "-1 is not in the range x>=0"),
        (["--initial-cluster-state", "sideways"], 2, "'sideways' is not one of"),
        (["--heartbeat-interval", "0"], 1, "--heartbeat-interval must be >0"),
        (["--initial-cluster-state", "existing"], 1, "needs peers to join"),
    ],
)
def test_bad_flags_exit_with_etcds_codes(data_dir: Path, args: list[str], code: int, message: str) -> None:
    result = run_to_exit(ServerProcess("etcdpy", data_dir, extra_args=args))
    assert result.returncode == code, result.stderr
    assert message in result.stderr


def test_joining_a_cluster_that_did_not_add_the_member_is_refused(tmp_path: Path) -> None:
    existing = ServerProcess("etcdpy", tmp_path / "existing.data", name="first").start()
    try:
        joiner = ServerProcess("etcdpy", tmp_path / "joiner.data", name="second")
        cluster = f"first={existing.peer_url},second={joiner.peer_url}"
        joiner.extra_args = ["--initial-cluster", cluster, "--initial-cluster-state", "existing"]
        result = run_to_exit(joiner)
        assert result.returncode == 1
        assert f"no member has peer URLs {joiner.peer_url}" in result.stderr
        assert "add it with `member add` first" in result.stderr
    finally:
        existing.stop()


def test_a_member_configured_only_by_etcd_environment_variables_serves(tmp_path: Path) -> None:
    port, peer = free_port(), free_port()
    env = {
        **os.environ,
        "ETCD_NAME": "envonly",
        "ETCD_DATA_DIR": str(tmp_path / "env.data"),
        "ETCD_LISTEN_CLIENT_URLS": f"http://127.0.0.1:{port}",
        "ETCD_ADVERTISE_CLIENT_URLS": f"http://127.0.0.1:{port}",
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": f"http://127.0.0.1:{peer}",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "etcdpy", "server"], env=env, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        wait_for_port(port, proc)
        client = connect(ServerProcess("etcdpy", tmp_path / "unused", client_port=port))
        [member] = client.cluster.MemberList(rpc_pb2.MemberListRequest()).members
        assert (member.name, list(member.peerURLs)) == ("envonly", [f"http://127.0.0.1:{peer}"])
        client.channel.close()
        assert (tmp_path / "env.data" / "member" / "db").is_dir()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0, stderr.decode()
