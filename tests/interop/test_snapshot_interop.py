"""Backups move between etcd 3.4 and etcdpy both ways, and snapshot status reads as etcdctl's.

- a real etcd's snapshot (``etcdctl snapshot save``) restored into a 3-member etcdpy cluster
  serves the same keys at every revision since the compaction, and the same leases;
- an etcdpy snapshot saved by etcdctl (which checks its sha256) and restored by ``etcdctl
  snapshot restore`` gives an etcd serving what etcdpy served;
- ``snapshot status`` transcripts (every ``-w``, and errors) equal etcdctl's on both files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from e2e.cluster_support import TOKEN, ProcCluster
from procs import ETCDCTL_BIN, ServerProcess, without_zap_lines

from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.client import Client

pytestmark = pytest.mark.interop

FORMATS = ("simple", "table", "json", "fields", "protobuf")


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, cwd=cwd, env={"PATH": "/usr/bin:/bin"}, check=False
    )


def etcdctl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert ETCDCTL_BIN is not None, "the reference etcdctl is not installed"
    return run([ETCDCTL_BIN, *args], cwd)


def etcdpy(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etcdpy", *args], capture_output=True, text=True, timeout=120, cwd=cwd,
        check=False,
    )  # fmt: skip


def workload(c: Client) -> tuple[int, list[int]]:
    """Puts, overwrites, deletes, a txn, leases with keys, a compaction; (compact revision, lease IDs)."""
    leases = [c.lease_grant(600).ID, c.lease_grant(900).ID]
    for i in range(40):
        c.put(f"k/{i:02d}", f"v{i}")
    c.put("bin\x00key", "\x00\x01\x02")
    c.put("big", "B" * 50000)
    for i in range(0, 40, 3):
        c.put(f"k/{i:02d}", f"again{i}", lease=leases[i % 2])
    c.delete("k/1", prefix=True)
    puts = [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=b"1")) for k in (b"t/a", b"t/b")]
    c.send_txn(rpc_pb2.TxnRequest(success=puts))
    compact = c.put("k/05", "five").header.revision - 5
    c.compact(compact, physical=True)
    c.put("k/06", "after compaction")
    c.delete("t/a")
    return compact, leases


def history(c: Client, first: int, last: int) -> dict[int, list[tuple[Any, ...]]]:
    """Every key at every revision in [first, last], as (key, value, create, mod, version, lease)."""
    return {
        rev: [
            (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)
            for kv in c.get("\x00", "\x00", revision=rev, serializable=True).kvs
        ]
        for rev in range(first, last + 1)
    }


def leases_of(c: Client, ids: list[int]) -> list[tuple[int, int, list[bytes]]]:
    out = []
    for lease_id in ids:
        ttl = c.lease_time_to_live(lease_id, keys=True)
        assert 0 < ttl.TTL <= ttl.grantedTTL
        out.append((lease_id, ttl.grantedTTL, sorted(ttl.keys)))
    return out


def same_status(path: Path) -> None:
    """`snapshot status FILE` of etcdpy and etcdctl: the same stdout, stderr and exit code."""
    for fmt in FORMATS:
        want = etcdctl("snapshot", "status", str(path), "-w", fmt)
        got = etcdpy("snapshot", "status", str(path), "-w", fmt)
        assert (got.returncode, got.stdout) == (want.returncode, want.stdout), fmt
        if want.returncode != 0:
            assert got.stderr == want.stderr, fmt


def test_status_errors_as_etcdctl(tmp_path: Path) -> None:
    (tmp_path / "zero.db").write_bytes(bytes(9000))
    for args in (["missing.db"], ["zero.db"], [], ["a", "b"]):
        want = etcdctl("snapshot", "status", *args, cwd=tmp_path)
        got = etcdpy("snapshot", "status", *args, cwd=tmp_path)
        assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr), args


def test_an_etcd_snapshot_restores_into_an_etcdpy_cluster(etcd_server: ServerProcess, tmp_path: Path) -> None:
    with Client([etcd_server.endpoint]) as c:
        compact, lease_ids = workload(c)
        snapshot = tmp_path / "etcd.db"
        saved = etcdctl("--endpoints", etcd_server.endpoint, "snapshot", "save", str(snapshot))
        assert saved.returncode == 0, saved.stderr
        revision = c.status().header.revision
        want = history(c, compact, revision)
        want_leases = leases_of(c, lease_ids)
    same_status(snapshot)

    cluster = ProcCluster("etcdpy", tmp_path / "restored", 3)
    initial = ",".join(f"{m.name}={m.peer_url}" for m in cluster.members)
    for m in cluster.members:
        result = etcdpy(
            "snapshot", "restore", str(snapshot), "--name", m.name, "--initial-cluster", initial,
            "--initial-cluster-token", TOKEN, "--initial-advertise-peer-urls", m.peer_url,
            "--data-dir", str(m.data_dir),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    try:
        cluster.start()
        for m in cluster.members:
            with Client([m.endpoint]) as c:
                assert history(c, compact, revision) == want
                with pytest.raises(Exception, match="compacted"):
                    c.get("k/00", revision=compact - 1, serializable=True)
        with Client(cluster.endpoints.split(",")) as c:
            assert leases_of(c, lease_ids) == want_leases
            assert sorted(lease.ID for lease in c.lease_leases().leases) == sorted(lease_ids)
    finally:
        cluster.stop()


def test_an_etcdpy_snapshot_restores_into_etcd(etcdpy_server: ServerProcess, tmp_path: Path) -> None:
    with Client([etcdpy_server.endpoint]) as c:
        compact, lease_ids = workload(c)
        revision = c.status().header.revision
        want = history(c, compact, revision)
        want_leases = leases_of(c, lease_ids)
    snapshot = tmp_path / "etcdpy.db"
    saved = etcdctl("--endpoints", etcdpy_server.endpoint, "snapshot", "save", str(snapshot))
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout == f"Snapshot saved at {snapshot}\n"
    same_status(snapshot)
    ours = tmp_path / "etcdpy-saved.db"
    assert etcdpy("--endpoints", etcdpy_server.endpoint, "snapshot", "save", str(ours)).returncode == 0
    # etcdpy's own save gives a file etcdctl reads the same (the hash moves with the applied index
    # and the leases' checkpointed TTLs, which go on changing between two saves)
    mine = json.loads(etcdctl("snapshot", "status", str(ours), "-w", "json").stdout)
    theirs = json.loads(etcdctl("snapshot", "status", str(snapshot), "-w", "json").stdout)
    assert mine["revision"] == theirs["revision"] == revision
    assert mine["totalKey"] == theirs["totalKey"]

    etcd = ServerProcess("etcd", tmp_path / "etcd.data", name="restored")
    restored = etcdctl(
        "snapshot", "restore", str(snapshot), "--name", etcd.name, "--data-dir", str(etcd.data_dir),
        "--initial-cluster", f"{etcd.name}={etcd.peer_url}", "--initial-advertise-peer-urls", etcd.peer_url,
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    etcd.start()
    try:
        with Client([etcd.endpoint]) as c:
            assert history(c, compact, revision) == want
            assert leases_of(c, lease_ids) == want_leases
            assert c.put("more", "1").header.revision == revision + 1
    finally:
        etcd.stop()


def test_restore_errors_as_etcdctl(etcd_server: ServerProcess, tmp_path: Path) -> None:
    saved = tmp_path / "saved.db"
    assert etcdctl("--endpoints", etcd_server.endpoint, "snapshot", "save", str(saved)).returncode == 0
    data = saved.read_bytes()
    damaged = bytearray(data)
    damaged[3 * 4096 + 100] ^= 1
    dirs = {}
    for tool in ("etcdctl", "etcdpy"):  # each tool works in a folder of its own
        folder = tmp_path / tool
        (folder / "used" / "member").mkdir(parents=True)
        (folder / "s.db").write_bytes(data)
        (folder / "unhashed.db").write_bytes(data[:-32])
        (folder / "damaged.db").write_bytes(bytes(damaged))
        dirs[tool] = folder
    cases = [
        ["s.db", "--name", "foo", "--data-dir", "out"],
        ["missing.db", "--data-dir", "out"],
        ["unhashed.db", "--data-dir", "out"],
        ["s.db", "--data-dir", "used"],
        [],
    ]
    for args in cases:
        want = etcdctl("snapshot", "restore", *args, cwd=dirs["etcdctl"])
        got = etcdpy("snapshot", "restore", *args, cwd=dirs["etcdpy"])
        assert (got.returncode, got.stdout, got.stderr) == (
            want.returncode, want.stdout, without_zap_lines(want.stderr),
        ), args  # fmt: skip
        shutil.rmtree(dirs["etcdctl"] / "out", ignore_errors=True)  # etcdctl may leave a partial one
        assert not (dirs["etcdpy"] / "out").exists()
    # a damaged body: both refuse it (each prints the two digests)
    want = etcdctl("snapshot", "restore", "damaged.db", "--data-dir", "out", cwd=dirs["etcdctl"])
    got = etcdpy("snapshot", "restore", "damaged.db", "--data-dir", "out", cwd=dirs["etcdpy"])
    assert want.returncode == got.returncode == 1
    assert without_zap_lines(want.stderr) == got.stderr
    assert not (dirs["etcdpy"] / "out").exists()
