"""Auth on a 3-member etcdpy cluster: no password in clear anywhere on disk, and the auth store
travels in raft snapshots.

Users are added and their passwords changed through etcdctl while one member is down; enough writes
follow for the others to take raft snapshots (``--snapshot-count`` small) and compact their logs, so
the member that comes back catches up by a snapshot.  It then authenticates the users itself (their
password hashes came in the snapshot), and no file of any data dir, nor any member's log, holds a
password's bytes.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

from cluster_support import ProcCluster, etcdctl
from procs import ETCDCTL_BIN

from etcdpy.chaos.cluster import wait_until

SNAPSHOT_ARGS = ["--snapshot-count", "20", "--snapshot-catchup-entries", "5"]


def etcdctl_in(endpoints: str, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    assert ETCDCTL_BIN is not None
    result = subprocess.run(
        [ETCDCTL_BIN, "--endpoints", endpoints, "--command-timeout", "10s", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def every_file(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


def test_no_password_reaches_the_disk_and_a_member_gets_the_auth_store_by_snapshot(tmp_path: Path) -> None:
    passwords = {name: f"pw-{name}-{secrets.token_hex(8)}" for name in ("root", "alice", "bob")}
    changed = {name: f"new-{name}-{secrets.token_hex(8)}" for name in ("alice", "bob")}
    cluster = ProcCluster("etcdpy", tmp_path, 3, extra_args=SNAPSHOT_ARGS)
    try:
        cluster.start()
        leader = cluster.wait_leader()
        behind = next(m for m in cluster.members if m is not leader)
        up = ",".join(m.endpoint for m in cluster.members if m is not behind)
        behind.stop()
        for name, password in passwords.items():
            etcdctl(up, "user", "add", f"{name}:{password}")
        etcdctl(up, "user", "grant-role", "root", "root")
        etcdctl(up, "role", "add", "app")
        etcdctl(up, "role", "grant-permission", "app", "readwrite", "/app/", "--prefix")
        for name in changed:
            etcdctl(up, "user", "grant-role", name, "app")
            etcdctl_in(up, changed[name] + "\n", "user", "passwd", name, "--interactive=false")
        etcdctl(up, "auth", "enable")
        root = f"root:{passwords['root']}"
        for i in range(60):  # past --snapshot-count several times: snapshots taken, logs compacted
            etcdctl(up, "--user", root, "put", f"/app/{i}", "v")

        behind.start(wait=False)
        behind.wait_ready(timeout=90)
        wait_until(lambda: "installed snapshot" in behind.read_log(), 60, "it caught up without a snapshot")
        # The member checks the passwords itself: the hashes came with the snapshot.
        got = etcdctl(behind.endpoint, "--user", f"alice:{changed['alice']}", "get", "/app/59")
        assert got.stdout == "/app/59\nv\n"
        refused = etcdctl(
            behind.endpoint, "--user", f"alice:{passwords['alice']}", "get", "/app/59", check=False
        )
        assert "authentication failed" in refused.stderr
        listed = etcdctl(behind.endpoint, "--user", root, "user", "list")
        assert listed.stdout.split() == ["alice", "bob", "root"]
    finally:
        cluster.stop()
    secrets_bytes = [p.encode() for p in (*passwords.values(), *changed.values())]
    files = [path for m in cluster.members for path in every_file(m.data_dir)]
    files += [m.log_path for m in cluster.members if m.log_path is not None]
    assert any(path.suffix == ".ldb" for path in files), "LevelDB kept everything in its log: look wider"
    leaks = {str(path) for path in files for secret in secrets_bytes if secret in path.read_bytes()}
    assert leaks == set()
