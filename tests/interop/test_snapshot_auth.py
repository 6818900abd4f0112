"""Auth moves with a backup between etcd 3.4 and etcdpy, both ways.

A member with auth enabled (root, a user whose role reads and writes a prefix and reads one key)
is saved with ``etcdctl snapshot save`` and restored by the other implementation's restore; the
restored member then answers the reference etcdctl exactly as the source did: the user logs in with
its password, its permission allows and refuses the same requests, a wrong password and a missing
user are refused (auth is on), root still administers.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from procs import ETCDCTL_BIN, ServerProcess, without_zap_lines

from etcdpy.client import Client
from etcdpy.server.storage import etcddb

pytestmark = pytest.mark.interop

ROOT = "root:rootpw"
ALICE = "alice:alicepw"

SETUP = [
    ["user", "add", ROOT],
    ["role", "add", "root"],
    ["user", "grant-role", "root", "root"],
    ["role", "add", "r1"],
    ["role", "grant-permission", "r1", "--prefix", "readwrite", "foo/"],
    ["role", "grant-permission", "r1", "read", "bar"],
    ["user", "add", ALICE],
    ["user", "grant-role", "alice", "r1"],
    ["put", "foo/a", "1"],
    ["put", "bar", "2"],
    ["put", "secret", "3"],
    ["auth", "enable"],
]

# (etcdctl arguments, expected exit code, text expected in its output)
CHECKS: list[tuple[list[str], int, str]] = [
    (["--user", ALICE, "get", "foo/", "--prefix"], 0, "foo/a\n1\n"),
    (["--user", ALICE, "put", "foo/b", "new"], 0, "OK"),
    (["--user", ALICE, "get", "bar"], 0, "bar\n2\n"),
    (["--user", ALICE, "put", "bar", "x"], 1, "permission denied"),
    (["--user", ALICE, "get", "secret"], 1, "permission denied"),
    (["--user", ALICE, "user", "list"], 1, "permission denied"),
    (["--user", "alice:wrong", "get", "foo/a"], 2, "authentication failed"),
    (["get", "foo/a"], 1, "user name is empty"),
    (["--user", ROOT, "get", "secret"], 0, "secret\n3\n"),
    (["--user", ROOT, "role", "get", "r1"], 0, "[foo/, foo0) (prefix foo/)"),
    (["--user", ROOT, "user", "get", "alice"], 0, "Roles: r1"),
]


def etcdctl(*args: str) -> subprocess.CompletedProcess[str]:
    assert ETCDCTL_BIN is not None, "the reference etcdctl is not installed"
    return subprocess.run(
        [ETCDCTL_BIN, *args], capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
        check=False,
    )  # fmt: skip


def etcdpy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etcdpy", *args], capture_output=True, text=True, timeout=60, check=False
    )


def set_up(endpoint: str) -> None:
    for args in SETUP:
        result = etcdctl("--endpoints", endpoint, *args)
        assert result.returncode == 0, (args, result.stderr)


def transcript(endpoint: str) -> list[tuple[int, str]]:
    """Each check's exit code and output, asserted against what it must show."""
    out = []
    for args, code, expected in CHECKS:
        result = etcdctl("--endpoints", endpoint, *args)
        text = without_zap_lines(result.stdout + result.stderr)
        assert (result.returncode, expected in text) == (code, True), (args, text)
        out.append((result.returncode, text))
    return out


def auth_buckets(path: Path) -> dict[bytes, list[tuple[bytes, bytes]]]:
    with etcddb.open_snapshot(path) as reader:
        return {b: list(reader.items(b)) for b in (etcddb.AUTH, etcddb.AUTH_USERS, etcddb.AUTH_ROLES)}


def save(endpoint: str, path: Path) -> dict[bytes, list[tuple[bytes, bytes]]]:
    saved = etcdctl("--endpoints", endpoint, "--user", ROOT, "snapshot", "save", str(path))
    assert saved.returncode == 0, saved.stderr
    return auth_buckets(path)


def test_an_etcd_snapshot_with_auth_restores_into_etcdpy(etcd_server: ServerProcess, tmp_path: Path) -> None:
    set_up(etcd_server.endpoint)
    snapshot = tmp_path / "etcd.db"
    buckets = save(etcd_server.endpoint, snapshot)
    assert dict(buckets[etcddb.AUTH])[etcddb.AUTH_ENABLED] == b"\x01"
    revision = int.from_bytes(dict(buckets[etcddb.AUTH])[etcddb.AUTH_REVISION], "big")
    want = transcript(etcd_server.endpoint)

    member = ServerProcess("etcdpy", tmp_path / "restored", name="r1m")
    restored = etcdpy(
        "snapshot", "restore", str(snapshot), "--name", member.name, "--data-dir", str(member.data_dir),
        "--initial-cluster", f"{member.name}={member.peer_url}",
        "--initial-advertise-peer-urls", member.peer_url,
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    member.start()
    try:
        assert transcript(member.endpoint) == want
        with Client([member.endpoint], user="root", password="rootpw") as c:
            status = c.auth_status()
        assert (status.enabled, status.authRevision) == (True, revision)
    finally:
        member.stop()


def test_an_etcdpy_snapshot_with_auth_restores_into_etcd(
    etcdpy_server: ServerProcess, tmp_path: Path
) -> None:
    set_up(etcdpy_server.endpoint)
    snapshot = tmp_path / "etcdpy.db"
    buckets = save(etcdpy_server.endpoint, snapshot)
    assert dict(buckets[etcddb.AUTH])[etcddb.AUTH_ENABLED] == b"\x01"
    assert [name for name, _ in buckets[etcddb.AUTH_USERS]] == [b"alice", b"root"]
    assert [name for name, _ in buckets[etcddb.AUTH_ROLES]] == [b"r1", b"root"]
    want = transcript(etcdpy_server.endpoint)

    etcd = ServerProcess("etcd", tmp_path / "etcd.data", name="restored")
    restored = etcdctl(
        "snapshot", "restore", str(snapshot), "--name", etcd.name, "--data-dir", str(etcd.data_dir),
        "--initial-cluster", f"{etcd.name}={etcd.peer_url}", "--initial-advertise-peer-urls", etcd.peer_url,
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    etcd.start()
    try:
        assert transcript(etcd.endpoint) == want
        # etcd kept the records as etcdpy wrote them (its auth revision included)
        assert save(etcd.endpoint, tmp_path / "again.db") == buckets
    finally:
        etcd.stop()
