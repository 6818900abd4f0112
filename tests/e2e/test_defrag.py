"""defrag against real etcdpy members: online (writes go on and none fails), space reclaimed, --data-dir.

The space is LevelDB's directory on disk, measured before and after: deleted and compacted data
must leave it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import plyvel
import pytest
from cli_tools import run_tool
from cluster_support import running_cluster
from procs import ServerProcess, free_port

from etcdpy.client import Client
from etcdpy.server.storage.backend import FENCE_HIGH, FENCE_LOW

VALUE = b"v" * 2048
KEYS = 4000  # 8 MB of values: the history, the current keys and the raft log each hold them


def db_bytes(server: ServerProcess) -> int:
    """Bytes of the member's LevelDB on disk."""
    db = server.data_dir / "member" / "db"
    return sum(path.stat().st_size for path in db.iterdir() if path.is_file())


def fill_delete_compact(client: Client) -> None:
    """Write KEYS keys, delete them all, compact the history physically: garbage for defrag."""
    for index in range(KEYS):
        client.put(f"fill/{index:05d}", VALUE)
    deleted = client.delete("fill/", prefix=True)
    assert deleted.deleted == KEYS
    client.compact(deleted.header.revision, physical=True)


class PutLoad:
    """Puts, each read back, on a thread of their own until stopped; every failure kept."""

    def __init__(self, endpoint: str) -> None:
        self.client = Client([endpoint])
        self.done = 0
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            key = f"load/{self.done % 500:03d}"
            try:
                self.client.put(key, b"x" * 100)
                read = self.client.get(key)  # linearizable: through the member's read index
                assert [kv.value for kv in read.kvs] == [b"x" * 100]
                self.done += 1
            except Exception as err:  # a failed write or read is what the test looks for
                self.failures.append(err)

    def __enter__(self) -> PutLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self.client.close()


@pytest.mark.server_flags("--snapshot-count", "1000")
def test_defrag_during_a_load_fails_no_write_or_read_and_the_space_is_reclaimed(
    etcdpy_server: ServerProcess,
) -> None:
    with Client([etcdpy_server.endpoint]) as client:
        fill_delete_compact(client)
        before = db_bytes(etcdpy_server)
        with PutLoad(etcdpy_server.endpoint) as load:
            started = load.done
            run = run_tool("etcdpy", etcdpy_server.endpoint, "defrag")
            during = load.done - started
        assert (run.returncode, run.stdout, run.stderr) == (
            0,
            f"Finished defragmenting etcd member[{etcdpy_server.endpoint}]\n",
            "",
        )
        assert load.failures == []
        assert during > 0, "no put and read completed while the member defragmented"
        assert client.get("load/", prefix=True, count_only=True).count == min(load.done, 500)
        # What the defrag under load leaves depends on where LevelDB's compaction met the load's
        # writes (once, on a loaded machine, the directory grew); a defrag of the quiet member must
        # reclaim the deleted values: KEYS * len(VALUE) bytes in the history and the current keys.
        again = run_tool("etcdpy", etcdpy_server.endpoint, "defrag")
        assert again.returncode == 0, again.stderr
        after = db_bytes(etcdpy_server)
        assert after < before - KEYS * len(VALUE), (before, after)


def test_two_defrags_at_once_both_succeed(etcdpy_server: ServerProcess) -> None:
    with Client([etcdpy_server.endpoint]) as client:
        fill_delete_compact(client)
    argv = [sys.executable, "-m", "etcdpy", "--endpoints", etcdpy_server.endpoint, "defrag"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    results = [(proc.wait(60), *proc.communicate()) for proc in procs]
    line = f"Finished defragmenting etcd member[{etcdpy_server.endpoint}]\n"
    assert results == [(0, line, ""), (0, line, "")]


def test_defrag_cluster_uses_the_member_list(etcdpy_server: ServerProcess) -> None:
    run = run_tool("etcdpy", etcdpy_server.endpoint, "defrag", "--cluster")
    line = f"Finished defragmenting etcd member[{etcdpy_server.client_url}]\n"
    assert (run.returncode, run.stdout) == (0, line)


def test_defrag_of_a_member_that_is_down_fails_with_etcdctls_line() -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    run = run_tool("etcdpy", endpoint, "--command-timeout=1s", "defrag")
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr == f"Failed to defragment etcd member[{endpoint}] (context deadline exceeded)\n"


def test_defrag_data_dir_refuses_a_running_member_and_compacts_a_stopped_one(
    etcdpy_server: ServerProcess,
) -> None:
    data_dir = str(etcdpy_server.data_dir)
    with Client([etcdpy_server.endpoint]) as client:
        fill_delete_compact(client)
        client.put("kept", "value")
    in_use = run_tool("etcdpy", etcdpy_server.endpoint, "defrag", "--data-dir", data_dir)
    assert in_use.returncode == 1 and in_use.stdout == ""
    assert in_use.stderr == (
        f"Failed to defragment etcd data[{data_dir}] (data dir {data_dir} is in use by another running "
        "server (LevelDB lock held); to defragment a running member, omit --data-dir)\n"
    )
    etcdpy_server.stop()
    before = db_bytes(etcdpy_server)
    offline = run_tool("etcdpy", etcdpy_server.endpoint, "defrag", "--data-dir", data_dir)
    assert (offline.returncode, offline.stdout, offline.stderr) == (0, "", "")
    assert db_bytes(etcdpy_server) < before - KEYS * len(VALUE)
    db = plyvel.DB(str(etcdpy_server.data_dir / "member" / "db"))
    try:  # the fence keys defragment writes around the key space are gone again
        assert db.get(FENCE_LOW) is None and db.get(FENCE_HIGH) is None
    finally:
        db.close()
    etcdpy_server.start()
    with Client([etcdpy_server.endpoint]) as client:
        assert [(kv.key, kv.value) for kv in client.get("kept").kvs] == [(b"kept", b"value")]
        assert client.get("fill/", prefix=True, count_only=True).count == 0


def test_defrag_data_dir_of_no_member_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "nothing"
    run = run_tool("etcdpy", "127.0.0.1:1", "defrag", "--data-dir", str(missing))
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr == (
        f"Failed to defragment etcd data[{missing}] (no etcdpy database at {missing}/member/db "
        f"(is {missing} an etcdpy data dir?))\n"
    )
    assert not missing.exists()


def test_defrag_cluster_of_three_members_under_load_keeps_them_in_agreement(tmp_path: Path) -> None:
    with running_cluster("etcdpy", tmp_path, 3) as cluster:
        endpoints = cluster.endpoints
        with Client(endpoints.split(",")) as client:
            fill_delete_compact(client)
            with PutLoad(endpoints.split(",")[0]) as load:
                run = run_tool("etcdpy", endpoints.split(",")[0], "defrag", "--cluster")
            assert run.returncode == 0, run.stderr
            assert sorted(run.stdout.splitlines()) == sorted(
                f"Finished defragmenting etcd member[{member.client_url}]" for member in cluster.members
            )
            assert load.failures == []
            # Defragmenting changes no member's state: their KV hashes at one revision agree.
            revision = client.put("last", "write").header.revision
            hashes = set()
            for member in cluster.members:
                with Client([member.endpoint]) as one:
                    one.get("last")  # linearizable: this member has applied the last write
                    hashes.add(one.hash_kv(revision).hash)
            assert len(hashes) == 1
