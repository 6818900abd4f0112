"""datascale_bench: a large keyspace on one member, etcd 3.4 and etcdpy in one run.

``python bench/datascale_bench.py [--keys N] [--value-size B] [--gets G] [--kind etcd|etcdpy]
[--compact] [--join] [--etcdpy-args "..."]``

For each server (a fresh one-member etcd, then a fresh one-member etcdpy, loopback ports, temp
data dirs, an 8 GiB quota): load N keys of B bytes (default a million of 1 KiB, about 1 GB, written
as txns of 100 puts, eight in flight), then

- memory of the server's process group once loaded and idle: resident (VmRSS) and the heap alone
  (RssAnon: etcd's mmapped bbolt file and LevelDB's page cache do not count in it), and the data
  dir's size on disk;
- get latency: G gets of random keys, one at a time from one client, linearizable then
  serializable (p50 and p99);
- a count of every key (a count-only range over the prefix), a scan of the whole index;
- restart: SIGTERM, then a fresh process on the same data dir; the time from its launch to the
  first answered linearizable get, and its memory once idle; then G gets of keys the new process
  has not read yet (p50, p99), and its memory after them;
- crash restart: kill -9 of the group, and the same time to the first answered get;
- with ``--compact``: every key written once more, then a compaction at the head revision with
  ``physical`` set (the call returns once the old versions are deleted), timed, while one client puts
  a key in a loop: that client's p99 and slowest put during the compaction;
- with ``--join``: a learner added (``etcdctl member add --learner``) and started on an empty data dir;
  the time until it has applied the index the member had when it was added, and its memory then.

Figures go in one table with the ratio etcdpy/etcd (`benchlib.report`); the header gives the load
average before and after.
"""

from __future__ import annotations

import argparse
import random
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

import grpc
from benchlib import (
    REPO,
    Figures,
    LoadResult,
    compare_kinds,
    group_memory_kib,
    keyspace_arguments,
    load_keys,
)
from procs import ServerProcess, wait_group_gone

sys.path.insert(0, str(REPO / "tests" / "e2e"))

from cluster_support import endpoint_status, etcdctl

from etcdpy.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc

PREFIX = "bench/"


def key(i: int) -> bytes:
    return f"{PREFIX}{i:09d}".encode()


def memory(server: ServerProcess, name: str) -> Figures:
    assert server.proc is not None
    pgid = server.proc.pid
    return {
        f"{name}: RSS MiB": group_memory_kib(pgid) / 1024,
        f"{name}: heap (RssAnon) MiB": group_memory_kib(pgid, "RssAnon") / 1024,
    }


def gets(endpoint: str, indexes: list[int], serializable: bool, name: str) -> Figures:
    """One client, one get at a time; each answer must hold the key."""
    latencies = []
    with grpc.insecure_channel(endpoint) as channel:
        stub = rpc_pb2_grpc.KVStub(channel)  # type: ignore[no-untyped-call]
        stub.Range(rpc_pb2.RangeRequest(key=b"warm-up"), timeout=30)
        for i in indexes:
            started = time.perf_counter()
            response = stub.Range(rpc_pb2.RangeRequest(key=key(i), serializable=serializable), timeout=30)
            latencies.append(time.perf_counter() - started)
            assert response.count == 1, f"{key(i)!r} missing"
    result = LoadResult(len(latencies), sum(latencies), latencies)
    return {
        f"{name} p50 ms": result.percentile(0.50) * 1000,
        f"{name} p99 ms": result.percentile(0.99) * 1000,
    }


def first_answer(server: ServerProcess, timeout: float = 300.0) -> float:
    """Launch `server` and return the seconds until it answers a linearizable get of a loaded key."""
    started = time.monotonic()
    server.start(wait=False)
    deadline = started + timeout
    with grpc.insecure_channel(server.endpoint) as channel:
        stub = rpc_pb2_grpc.KVStub(channel)  # type: ignore[no-untyped-call]
        while True:
            assert server.proc is not None
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.kind} exited on restart; log:\n{server.read_log()[-3000:]}")
            try:
                if stub.Range(rpc_pb2.RangeRequest(key=key(0)), timeout=1).count == 1:
                    return time.monotonic() - started
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{server.kind} did not answer within {timeout} s of its restart")
            time.sleep(0.01)


def count_all(endpoint: str, keys: int) -> float:
    """Seconds for a count-only range over every loaded key (etcdctl 3.4 has no --count-only)."""
    with grpc.insecure_channel(endpoint) as channel:
        stub = rpc_pb2_grpc.KVStub(channel)  # type: ignore[no-untyped-call]
        started = time.monotonic()
        response = stub.Range(
            rpc_pb2.RangeRequest(key=PREFIX.encode(), range_end=b"bench0", count_only=True), timeout=300
        )
        seconds = time.monotonic() - started
    assert response.count == keys, f"counted {response.count} of {keys}"
    return seconds


def compaction(endpoint: str) -> Figures:
    """Compact at the head revision (physical), timed, with one client's put latencies meanwhile."""
    latencies: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with grpc.insecure_channel(endpoint) as channel:
            stub = rpc_pb2_grpc.KVStub(channel)  # type: ignore[no-untyped-call]
            while not done.is_set():
                started = time.perf_counter()
                stub.Put(rpc_pb2.PutRequest(key=b"probe", value=b"v"), timeout=60)
                latencies.append(time.perf_counter() - started)

    with grpc.insecure_channel(endpoint) as channel:
        stub = rpc_pb2_grpc.KVStub(channel)  # type: ignore[no-untyped-call]
        head = stub.Range(rpc_pb2.RangeRequest(key=b"probe"), timeout=30).header.revision
        prober = threading.Thread(target=probe)
        prober.start()
        time.sleep(1)
        started = time.monotonic()
        try:
            stub.Compact(rpc_pb2.CompactionRequest(revision=head, physical=True), timeout=600)
        finally:
            seconds = time.monotonic() - started
            done.set()
            prober.join()
    puts = LoadResult(len(latencies), seconds, latencies)
    return {
        "compaction (physical), s": seconds,
        "a put meanwhile: p99 ms": puts.percentile(0.99) * 1000,
        "a put meanwhile: slowest ms": max(latencies) * 1000,
    }


def applied_index(endpoint: str) -> int | None:
    """The member's raftAppliedIndex as ``etcdctl endpoint status`` gives it (None: no answer)."""
    status = endpoint_status(endpoint)
    return None if status is None else int(status["raftAppliedIndex"])


def join_learner(server: ServerProcess, extra: list[str], root: Path) -> Figures:
    """Add a learner to `server`'s cluster and time its catching up from an empty data dir."""
    learner = ServerProcess(server.kind, root / f"{server.kind}.learner", name="learner")
    learner.extra_args = [
        *extra,
        "--initial-cluster",
        f"{server.name}={server.peer_url},learner={learner.peer_url}",
        "--initial-cluster-state",
        "existing",
    ]  # fmt: skip  (after the launcher's own --initial-cluster: the last one counts)
    etcdctl(server.endpoint, "member", "add", "learner", "--learner", f"--peer-urls={learner.peer_url}")
    target = applied_index(server.endpoint)
    assert target is not None
    started = time.monotonic()
    learner.start(wait=False)
    try:
        while (index := applied_index(learner.endpoint)) is None or index < target:
            assert learner.proc is not None
            if learner.proc.poll() is not None:
                raise RuntimeError(f"the learner exited; log:\n{learner.read_log()[-3000:]}")
            if time.monotonic() - started > 900:
                raise TimeoutError(f"the learner applied {index} of {target} in 900 s")
            time.sleep(0.2)
        figures: Figures = {"learner: caught up, s": time.monotonic() - started}
        figures.update(memory(learner, "learner, caught up"))
    finally:
        learner.stop()
    return figures


def settle(seconds: float = 3.0) -> None:
    time.sleep(seconds)


def du_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / (1 << 20)


def measure(kind: str, args: argparse.Namespace, root: Path) -> Figures:
    extra = ["--quota-backend-bytes", str(8 << 30)]
    if kind == "etcdpy":
        extra += shlex.split(args.etcdpy_args)
    data_dir = root / f"{kind}.data"
    server = ServerProcess(kind, data_dir, extra_args=extra)
    figures: Figures = {}
    rng = random.Random(7)

    def sample() -> list[int]:
        return rng.sample(range(args.keys), args.gets)

    try:
        server.start(timeout=60)
        started = time.monotonic()
        load_keys(server.endpoint, args.keys, args.value_size, PREFIX)
        figures["load: puts/s"] = args.keys / (time.monotonic() - started)
        settle()
        figures.update(memory(server, "loaded, idle"))
        figures["data dir MiB"] = du_mib(data_dir)
        figures.update(gets(server.endpoint, sample(), False, "get"))
        figures.update(gets(server.endpoint, sample(), True, "serializable get"))
        figures["count every key, s"] = count_all(server.endpoint, args.keys)

        server.kill(signal.SIGTERM)
        assert server.proc is not None
        wait_group_gone(server.proc.pid)  # its splicer too: the new process binds the same port
        figures["restart: to first answer, s"] = first_answer(server)
        settle()
        figures.update(memory(server, "restarted, idle"))
        figures.update(gets(server.endpoint, sample(), False, "get after restart"))
        figures.update(memory(server, "restarted, after gets"))

        server.kill(signal.SIGKILL)
        figures["crash restart (kill -9): to first answer, s"] = first_answer(server)

        if args.compact:
            load_keys(server.endpoint, args.keys, args.value_size, PREFIX)  # a second version of each key
            figures.update(compaction(server.endpoint))
            settle()
            figures.update(memory(server, "compacted"))
        if args.join:
            figures.update(join_learner(server, extra, root))
    finally:
        server.stop()
    return figures


def main() -> None:
    parser = keyspace_arguments(__doc__)
    parser.add_argument("--gets", type=int, default=2000)
    parser.add_argument("--compact", action="store_true", help="also time a compaction of a version per key")
    parser.add_argument("--join", action="store_true", help="also time a learner catching up")
    parser.add_argument("--etcdpy-args", default="", help="extra flags for etcdpy's server")
    args = parser.parse_args()
    compare_kinds("datascale_bench", args, lambda kind, root: measure(kind, args, root))


if __name__ == "__main__":
    main()
