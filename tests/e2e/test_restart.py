"""Durability across restarts: clean stops, and kill -9 in the middle of a concurrent write load."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import grpc
import pytest
from e2e_support import connect, run_to_exit
from procs import ServerProcess

from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.server import failpoints
from etcdpy.server.storage.backend import Backend
from etcdpy.server.storage.raftlog import RaftLogStorage, entry_key


def status(server: ServerProcess) -> rpc_pb2.StatusResponse:
    client = connect(server)
    try:
        return client.maintenance.Status(rpc_pb2.StatusRequest())
    finally:
        client.channel.close()


def test_sigterm_stops_cleanly_and_a_restart_keeps_data_with_a_new_term(tmp_path: Path) -> None:
    server = ServerProcess("etcdpy", tmp_path / "d").start()
    try:
        client = connect(server)
        client.kv.Put(rpc_pb2.PutRequest(key=b"kept", value=b"yes"))
        client.channel.close()
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=15) == 0
        assert "etcdpy: stopped" in server.read_log()
        # The restart ignores --initial-* flags (the data dir has its member) and, like etcd,
        # appends a new term's empty entry and a fresh publish: index 5 -> 7, term 2 -> 3.
        server.extra_args = ["--initial-cluster-token", "ignored-now"]
        server.start()
        after = status(server)
        assert (after.raftIndex, after.raftAppliedIndex, after.raftTerm, after.header.revision) == (
            7,
            7,
            3,
            2,
        )
        assert "ignoring the --initial-* flags" in server.read_log()
        client = connect(server)
        got = client.kv.Range(rpc_pb2.RangeRequest(key=b"kept"))
        assert [(kv.value, kv.mod_revision) for kv in got.kvs] == [(b"yes", 2)]
        client.channel.close()
    finally:
        server.stop()


def test_kill_9_under_concurrent_writes_loses_no_acknowledged_put_and_applies_none_twice(
    tmp_path: Path,
) -> None:
    server = ServerProcess("etcdpy", tmp_path / "d").start()
    acknowledged: list[bytes] = []
    lock = threading.Lock()
    enough = threading.Event()
    stop = threading.Event()

    def writer(worker: int) -> None:
        client = connect(server)  # one channel per writer, so the writes really run concurrently
        n = 0
        try:
            while not stop.is_set():
                key = b"w%02d-%06d" % (worker, n)
                try:
                    client.kv.Put(rpc_pb2.PutRequest(key=key, value=key), timeout=10)
                except grpc.RpcError:
                    return  # the server died under us; this put may or may not have landed
                with lock:
                    acknowledged.append(key)
                    if len(acknowledged) >= 400:
                        enough.set()
                n += 1
        finally:
            client.channel.close()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(16)]
    try:
        for t in threads:
            t.start()
        assert enough.wait(timeout=60), "the write load never got going"
        server.kill(signal.SIGKILL)  # mid-load: writes are in flight
        stop.set()
        for t in threads:
            t.join(timeout=30)
        server.start()
        client = connect(server)
        every = client.kv.Range(rpc_pb2.RangeRequest(key=b"w", range_end=b"x"))
        stored = {kv.key: kv for kv in every.kvs}
        missing = [k for k in acknowledged if k not in stored]
        assert missing == [], f"{len(missing)} acknowledged puts lost"
        # Each key was put exactly once: applying any entry twice would bump a version or burn a revision.
        assert all(kv.version == 1 and kv.value == kv.key for kv in stored.values())
        assert sorted(kv.mod_revision for kv in stored.values()) == list(range(2, 2 + len(stored)))
        assert every.header.revision == 1 + len(stored)
        after = client.maintenance.Status(rpc_pb2.StatusRequest())
        assert after.raftAppliedIndex == after.raftIndex
        client.channel.close()
    finally:
        stop.set()
        server.stop()


@pytest.mark.parametrize("point", ["raftAfterSave", "beforeApply", "afterApply"])
def test_a_crash_between_log_and_answer_replays_the_durable_entry_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    monkeypatch.setenv(failpoints.ENV, f"{point}=crash@7")  # index 5 is the first put, so the third put dies
    server = ServerProcess("etcdpy", tmp_path / "d").start()
    try:
        client = connect(server)
        client.kv.Put(rpc_pb2.PutRequest(key=b"k5", value=b"5"))
        client.kv.Put(rpc_pb2.PutRequest(key=b"k6", value=b"6"))
        with pytest.raises(grpc.RpcError):
            client.kv.Put(rpc_pb2.PutRequest(key=b"k7", value=b"7"), timeout=10)
        client.channel.close()
        assert server.proc is not None
        assert server.proc.wait(timeout=10) == failpoints.CRASH_EXIT_CODE
        monkeypatch.delenv(failpoints.ENV)
        server.start()
        client = connect(server)
        got = client.kv.Range(rpc_pb2.RangeRequest(key=b"k", range_end=b"l"))
        # The unanswered put was durable, so it is there: exactly once, at the next revision.
        assert [(kv.key, kv.version, kv.mod_revision) for kv in got.kvs] == [
            (b"k5", 1, 2),
            (b"k6", 1, 3),
            (b"k7", 1, 4),
        ]
        after = client.maintenance.Status(rpc_pb2.StatusRequest())
        assert (after.raftIndex, after.raftAppliedIndex, after.header.revision) == (9, 9, 4)
        client.channel.close()
    finally:
        server.stop()


def test_snapshots_trim_the_log_to_a_catch_up_tail_and_restarts_still_work(tmp_path: Path) -> None:
    args = ["--snapshot-count", "20", "--snapshot-catchup-entries", "5"]
    server = ServerProcess("etcdpy", tmp_path / "d", extra_args=args).start()
    try:
        client = connect(server)
        for i in range(60):
            client.kv.Put(rpc_pb2.PutRequest(key=b"t%02d" % i, value=b"v"))
        client.channel.close()
        server.kill(signal.SIGTERM)
        backend = Backend(server.data_dir)
        try:
            log = RaftLogStorage.open(backend)
            assert log.last_index() == 64
            assert log.snapshot_meta.index == 60  # snapshots at 20, 40 and 60 applied entries
            assert log.first_index() == 56, "the log keeps 5 entries below the last snapshot"
        finally:
            backend.close()
        server.start()
        assert status(server).raftAppliedIndex == 66
        client = connect(server)
        assert client.kv.Range(rpc_pb2.RangeRequest(key=b"t", range_end=b"u", count_only=True)).count == 60
        client.channel.close()
    finally:
        server.stop()


def test_a_log_that_ends_below_the_applied_index_is_refused(tmp_path: Path) -> None:
    server = ServerProcess("etcdpy", tmp_path / "d").start()
    client = connect(server)
    client.kv.Put(rpc_pb2.PutRequest(key=b"a", value=b"1"))  # index 5, applied
    client.channel.close()
    server.kill(signal.SIGTERM)
    backend = Backend(server.data_dir)
    backend.db.delete(entry_key(5), sync=True)  # as if the log lost its applied tail
    backend.close()
    result = run_to_exit(server)
    assert result.returncode == 1
    assert "the store applied index 5 but the raft log ends at 4" in result.stderr
