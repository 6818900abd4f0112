"""Benchmark the MVCC store directly (no server, no raft): puts/s and ranges/s.

Usage: python bench/mvcc_bench.py [--keys 100000] [--value-size 256] [--batch 100] [--dir PATH]

Puts go through `Applier.apply` as raft entries would (``--batch`` entries per
write batch, unsynced like the server's apply).  Reads go through
`Applier.range` (a snapshot per call, as the server's read path).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.server.apply import Applier
from etcdpy.server.storage.backend import Backend


def _entry(request_id: int, key: bytes, value: bytes) -> bytes:
    req = raft_internal_pb2.InternalRaftRequest(put=rpc_pb2.PutRequest(key=key, value=value))
    req.header.ID = request_id
    return req.SerializeToString()


def _rate(label: str, count: int, fn: Callable[[], None]) -> float:
    """Run fn, print ops/s by wall clock and by this process's CPU time (steadier on a shared machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label:<44} {count:>8} ops {wall:7.2f} s wall {count / wall:>9.0f}/s  cpu {count / cpu:>9.0f}/s")
    return count / wall


def run(data_dir: Path, keys: int, value_size: int, batch: int) -> None:
    backend = Backend(data_dir)
    applier = Applier(backend)
    value = b"v" * value_size
    names = [b"bench/key%08d" % i for i in range(keys)]
    index = [0]

    def put_all() -> None:
        for start in range(0, keys, batch):
            entries = []
            for key in names[start : start + batch]:
                index[0] += 1
                entries.append((index[0], _entry(index[0], key, value)))
            applier.apply(entries)

    print(f"store: {keys} keys, {value_size}-byte values, {batch} entries per apply batch, {data_dir}")
    _rate("put (new keys)", keys, put_all)
    _rate("put (overwrite: second version of every key)", keys, put_all)
    rng = random.Random(1)
    sample = [rng.choice(names) for _ in range(min(keys, 20_000))]
    past = applier.current_revision - keys  # every key's first version is visible here

    def get_current() -> None:
        for key in sample:
            applier.range(rpc_pb2.RangeRequest(key=key))

    def get_past() -> None:
        for key in sample:
            applier.range(rpc_pb2.RangeRequest(key=key, revision=past))

    scans = 50

    def scan(n: int, revision: int) -> Callable[[], None]:
        # each answer also counts every key after its start (etcd's count), the bulk of the cost
        starts = [rng.randrange(max(1, keys - n)) for _ in range(scans)]

        def go() -> None:
            for s in starts:
                applier.range(
                    rpc_pb2.RangeRequest(key=names[s], range_end=b"bench/l", limit=n, revision=revision)
                )

        return go

    _rate("range: one key, current revision", len(sample), get_current)
    _rate("range: one key, past revision", len(sample), get_past)
    _rate("range: 100 keys (limit) + count, current rev", scans, scan(100, 0))
    _rate("range: 100 keys (limit) + count, past rev", scans, scan(100, past))
    recent = applier.current_revision - 100  # a paginating client's pinned revision
    _rate("range: 100 keys (limit) + count, recent rev", scans, scan(100, recent))
    _rate(
        "range: count_only over all keys",
        5,
        lambda: [
            applier.range(rpc_pb2.RangeRequest(key=b"bench/", range_end=b"bench0", count_only=True))
            for _ in range(5)
        ],
    )
    start = time.perf_counter()
    applier.apply([(index[0] + 1, _entry(0, b"c", b""))])
    compact = raft_internal_pb2.InternalRaftRequest(
        compaction=rpc_pb2.CompactionRequest(revision=past + keys)
    )
    applier.apply([(index[0] + 2, compact.SerializeToString())])
    while not applier.compact_step(1000):
        pass
    print(f"{'compaction of the first versions':<44} {keys:>9} keys {time.perf_counter() - start:7.2f} s")
    print(f"database size: {backend.size_bytes() / 1e6:.1f} MB")
    backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--value-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--dir", type=Path, default=None, help="data dir (default: a fresh temp dir)")
    args = parser.parse_args()
    if args.dir is not None:
        run(args.dir, args.keys, args.value_size, args.batch)
        return
    with tempfile.TemporaryDirectory(prefix="mvcc-bench-") as tmp:
        run(Path(tmp), args.keys, args.value_size, args.batch)


if __name__ == "__main__":
    main()
