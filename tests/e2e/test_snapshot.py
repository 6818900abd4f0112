"""snapshot save / status / restore against real etcdpy members: disaster recovery end to end, bad input.

The recovery: a 3-member etcdpy cluster under a put load saves a snapshot through one
member; a new 3-member cluster restored from it serves the snapshot's revision with the
same HashKV there, the same keys and the leases with their TTLs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from cluster_support import TOKEN, ProcCluster, running_cluster
from procs import ServerProcess

from etcdpy.client import Client


def etcdpy(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etcdpy", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


def status_json(path: Path) -> dict[str, Any]:
    result = etcdpy("snapshot", "status", str(path), "-w", "json")
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def restore_into(cluster: ProcCluster, snapshot: Path) -> None:
    """Restore every member's data dir of a not yet started cluster from `snapshot`."""
    initial = ",".join(f"{m.name}={m.peer_url}" for m in cluster.members)
    for m in cluster.members:
        result = etcdpy(
            "snapshot", "restore", str(snapshot),
            "--name", m.name,
            "--initial-cluster", initial,
            "--initial-cluster-token", TOKEN,
            "--initial-advertise-peer-urls", m.peer_url,
            "--data-dir", str(m.data_dir),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout == ""


class PutLoad:
    """Puts on a thread of their own until stopped; every put must succeed."""

    def __init__(self, endpoints: list[str]) -> None:
        self.client = Client(endpoints)
        self.stopped = threading.Event()
        self.puts = 0
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self.stopped.is_set():
                self.client.put(f"load/{self.puts % 200:03d}", f"v{self.puts}")
                self.puts += 1
        except BaseException as exc:  # reported by stop()
            self.errors.append(exc)

    def __enter__(self) -> PutLoad:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=30)
        self.client.close()
        assert not self.errors, self.errors


def test_disaster_recovery_into_a_new_cluster(tmp_path: Path) -> None:
    snapshot = tmp_path / "backup.db"
    (tmp_path / "source").mkdir()
    with running_cluster("etcdpy", tmp_path / "source", 3) as source:
        with Client(source.endpoints.split(",")) as c:
            lease = c.lease_grant(600)
            for i in range(50):
                c.put(f"leased/{i:02d}", f"x{i}", lease=lease.ID)
            c.put("big", "b" * 20000)
            c.delete("leased/00")
            source_id = c.status().header.cluster_id
        saver = source.members[1]  # a follower or the leader: any member serves its own state
        with PutLoad([source.members[0].endpoint]) as load:
            while load.puts < 50:
                load.stopped.wait(0.01)
            result = etcdpy("--endpoints", saver.endpoint, "snapshot", "save", str(snapshot))
            assert result.returncode == 0, result.stderr
            assert result.stdout == f"Snapshot saved at {snapshot}\n"
            assert result.stderr == ""  # piped: no progress bar
        assert not Path(str(snapshot) + ".part").exists()
        revision = status_json(snapshot)["revision"]
        with Client([saver.endpoint]) as c:
            source_hash = c.hash_kv(revision).hash
            assert c.status().header.revision > revision  # the load went on after the snapshot
            source_kvs = [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)
                          for kv in c.get("", prefix=True, revision=revision).kvs]  # fmt: skip

    restored = ProcCluster("etcdpy", tmp_path / "restored", 3)
    restore_into(restored, snapshot)
    try:
        restored.start()
        for m in restored.members:
            with Client([m.endpoint]) as c:
                assert c.status().header.cluster_id != source_id
                assert c.hash_kv(revision).hash == source_hash
                got = c.get("", prefix=True, serializable=True)
                assert got.header.revision == revision
                assert [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)
                        for kv in got.kvs] == source_kvs  # fmt: skip
        with Client(restored.endpoints.split(",")) as c:
            ttl = c.lease_time_to_live(lease.ID, keys=True)
            assert ttl.grantedTTL == 600 and 0 < ttl.TTL <= 600
            assert sorted(ttl.keys) == [f"leased/{i:02d}".encode() for i in range(1, 50)]
            members = c.member_list().members
            assert sorted(m.name for m in members) == ["m0", "m1", "m2"]
            assert c.put("after", "restore").header.revision == revision + 1
    finally:
        restored.stop()


def test_save_refuses_several_endpoints_and_removes_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "s.db"
    result = etcdpy("--endpoints", "127.0.0.1:1,127.0.0.1:2", "snapshot", "save", str(target))
    assert result.returncode == 5
    assert (
        result.stderr
        == "Error: snapshot must be requested to one selected node, not multiple [127.0.0.1:1 127.0.0.1:2]\n"
    )
    # nothing answers: the stream fails, and neither the file nor its .part is left
    result = etcdpy("--endpoints", "127.0.0.1:1", "--dial-timeout", "1s", "snapshot", "save", str(target))
    assert result.returncode == 5, result.stderr
    assert result.stderr.startswith("Error: ")
    assert list(tmp_path.iterdir()) == []


def test_restore_refuses_a_data_dir_in_use_and_leaves_it_untouched(
    etcdpy_server: ServerProcess, tmp_path: Path
) -> None:
    snapshot = tmp_path / "s.db"
    with Client([etcdpy_server.endpoint]) as c:
        c.put("k", "v")
    assert etcdpy("--endpoints", etcdpy_server.endpoint, "snapshot", "save", str(snapshot)).returncode == 0
    before = sorted(p.name for p in etcdpy_server.data_dir.rglob("*"))
    result = etcdpy("snapshot", "restore", str(snapshot), "--data-dir", str(etcdpy_server.data_dir))
    assert result.returncode == 1
    assert result.stderr == f'Error: data-dir "{etcdpy_server.data_dir}" exists\n'
    assert sorted(p.name for p in etcdpy_server.data_dir.rglob("*")) == before
    with Client([etcdpy_server.endpoint]) as c:
        assert c.get("k").kvs[0].value == b"v"


def test_restore_of_a_damaged_snapshot_writes_nothing(etcdpy_server: ServerProcess, tmp_path: Path) -> None:
    snapshot = tmp_path / "s.db"
    with Client([etcdpy_server.endpoint]) as c:
        for i in range(100):
            c.put(f"k{i}", "v" * 100)
    assert etcdpy("--endpoints", etcdpy_server.endpoint, "snapshot", "save", str(snapshot)).returncode == 0
    data = bytearray(snapshot.read_bytes())
    damaged = tmp_path / "damaged.db"
    data[3 * 4096 + 40] ^= 0xFF
    damaged.write_bytes(bytes(data))
    out = tmp_path / "out"
    result = etcdpy("snapshot", "restore", str(damaged), "--data-dir", str(out))
    assert result.returncode == 1
    assert result.stderr.startswith("Error: expected sha256 [")
    # with the hash check skipped, what is read is checked: a key's length
    result = etcdpy("snapshot", "restore", str(damaged), "--data-dir", str(out), "--skip-hash-check")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: the snapshot is damaged: a "), result.stderr
    # ... and the pages: a page header
    header = bytearray(snapshot.read_bytes())
    header[3 * 4096] ^= 0xFF
    damaged.write_bytes(bytes(header))
    result = etcdpy("snapshot", "restore", str(damaged), "--data-dir", str(out), "--skip-hash-check")
    assert result.returncode == 1
    assert "snapshot file integrity check failed: " in result.stderr and "page 3: damaged" in result.stderr
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    result = etcdpy("snapshot", "restore", str(truncated), "--data-dir", str(out), "--skip-hash-check")
    assert result.returncode == 1 and "truncated" in result.stderr, result.stderr
    result = etcdpy("snapshot", "status", str(truncated))
    assert result.returncode == 1 and "truncated" in result.stderr, result.stderr
    unknown = tmp_path / "unknown.db"
    unknown.write_bytes(b"PK\x03\x04" + bytes(9000))
    result = etcdpy("snapshot", "restore", str(unknown), "--data-dir", str(out), "--skip-hash-check")
    assert (result.returncode, result.stderr) == (1, "Error: invalid database\n")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.restoring")]


def test_save_shows_a_progress_bar_on_a_terminal_only(etcdpy_server: ServerProcess, tmp_path: Path) -> None:
    with Client([etcdpy_server.endpoint]) as c:
        c.put("k", "v" * 100000)
    target = tmp_path / "s.db"
    result = subprocess.run(
        [sys.executable, "-m", "etcdpy", "--endpoints", etcdpy_server.endpoint, "snapshot", "save",
         str(target)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "TTY_COMPATIBLE": "1", "COLUMNS": "100"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Snapshot saved at {target}\n"
    assert "snapshot" in result.stderr and "kB" in result.stderr  # rich's bar with the bytes received
    assert status_json(target)["revision"] == 2


def test_a_client_leaving_mid_stream_leaves_the_member_serving(
    etcdpy_server: ServerProcess, tmp_path: Path
) -> None:
    with Client([etcdpy_server.endpoint]) as c:
        for i in range(50):
            c.put(f"k{i}", "v" * 20000)  # about 1 MB: many blobs
        stream = c.snapshot()
        first = next(stream)
        assert first.remaining_bytes > 0 and len(first.blob) == 32 * 1024
        stream.close()  # cancels the call
        blobs = list(c.snapshot())
        assert blobs[-1].remaining_bytes == 0 and len(blobs[-1].blob) == 32
        assert sum(len(b.blob) for b in blobs[:-1]) % 4096 == 0
        assert c.put("after", "1").header.revision == 52


@pytest.mark.server_flags("--experimental-grpc-threads", "4")
def test_save_through_the_threaded_server(server: ServerProcess, tmp_path: Path) -> None:
    with Client([server.endpoint]) as c:
        c.put("k", "v")
    target = tmp_path / "s.db"
    result = etcdpy("--endpoints", server.endpoint, "snapshot", "save", str(target))
    assert result.returncode == 0, result.stderr
    assert status_json(target)["revision"] == 2
