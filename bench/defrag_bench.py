"""Put latency while a member defragments: etcd 3.4 (which blocks reads and writes) and etcdpy (online).

Usage: python bench/defrag_bench.py [--keys 20000] [--value-size 1024] [--clients 8] [--kind etcd,etcdpy]

For each server kind, in one run: a fresh one-member server on loopback ports and a temp data dir is
filled with ``--keys`` keys, two thirds of them deleted and the history compacted (garbage for the
defragmentation), then a put load (``--clients`` concurrent clients, in a process of its own) runs
while the member is defragmented through Maintenance.Defragment.  Printed per kind, with the ratio
etcdpy/etcd: the database size before and after, how long the defragmentation took, and the latency
of the puts that overlapped it (p50, p99, max) against those that did not.  The load average before
and after is in the header: on a shared machine the figures move with it.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import tempfile
import time
from multiprocessing.synchronize import Event
from pathlib import Path

import grpc
from benchlib import Figures, report  # also puts the repository and its tests on sys.path
from procs import ServerProcess

from etcdpy.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.client import Client

SETTLE_SECONDS = 1.0  # load before and after the defragmentation, for the baseline latencies
Span = tuple[float, float]  # (start, end) of one put, time.monotonic (one clock for every process)


async def _put_load(endpoint: str, clients: int, stop: Event) -> list[Span]:
    channels = [grpc.aio.insecure_channel(endpoint) for _ in range(min(clients, 4))]
    stubs = [rpc_pb2_grpc.KVStub(channel) for channel in channels]
    spans: list[Span] = []

    async def client(n: int) -> None:
        stub = stubs[n % len(stubs)]
        i = 0
        while not stop.is_set():
            start = time.monotonic()
            await stub.Put(rpc_pb2.PutRequest(key=b"load/%d/%d" % (n, i % 100), value=b"x" * 256))
            spans.append((start, time.monotonic()))
            i += 1

    await asyncio.gather(*(client(n) for n in range(clients)))
    for channel in channels:
        await channel.close(None)
    return spans


def _load_process(
    endpoint: str, clients: int, stop: Event, results: multiprocessing.Queue[list[Span]]
) -> None:
    results.put(asyncio.run(_put_load(endpoint, clients, stop)))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def db_mb(client: Client) -> float:
    return client.status().dbSize / 1e6


def measure(kind: str, keys: int, value_size: int, clients: int, workdir: Path) -> Figures:
    server = ServerProcess(kind, workdir / kind, extra_args=["--quota-backend-bytes", str(8 << 30)]).start()
    try:
        with Client([server.endpoint], command_timeout=600) as client:
            value = b"v" * value_size
            for index in range(keys):
                client.put(f"fill/{index:08d}", value)
            for index in range(keys):
                if index % 3:
                    client.delete(f"fill/{index:08d}")
            revision = client.get("fill/", prefix=True, count_only=True).header.revision
            client.compact(revision, physical=True)
            before = db_mb(client)
            ctx = multiprocessing.get_context("spawn")
            stop, results = ctx.Event(), ctx.Queue()
            load = ctx.Process(target=_load_process, args=(server.endpoint, clients, stop, results))
            load.start()
            time.sleep(SETTLE_SECONDS * 2)  # the load process starts and warms up
            began = time.monotonic()
            client.defragment(server.endpoint, timeout=600)
            ended = time.monotonic()
            time.sleep(SETTLE_SECONDS)
            stop.set()
            spans = results.get(timeout=120)
            load.join(60)
            after = db_mb(client)
    finally:
        server.stop()
    during = [end - start for start, end in spans if start < ended and end > began]
    outside = [end - start for start, end in spans if not (start < ended and end > began)]
    return {
        "db MB before": before,
        "db MB after": after,
        "defrag s": ended - began,
        "puts during defrag": float(len(during)),
        "put p50 ms during": percentile(during, 0.50) * 1000,
        "put p99 ms during": percentile(during, 0.99) * 1000,
        "put max ms during": max(during, default=float("nan")) * 1000,
        "put p99 ms outside": percentile(outside, 0.99) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=20000)
    parser.add_argument("--value-size", type=int, default=1024)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--kind", default="etcd,etcdpy", help="comma-separated server kinds, etcd first")
    args = parser.parse_args()
    print(
        f"defrag bench: {args.keys} keys of {args.value_size} bytes, 2/3 deleted and compacted, "
        f"{args.clients} put clients; load average {os.getloadavg()[0]:.1f}"
    )
    columns: dict[str, Figures] = {}
    with tempfile.TemporaryDirectory(prefix="defrag-bench-") as tmp:
        for kind in args.kind.split(","):
            columns[kind] = measure(kind, args.keys, args.value_size, args.clients, Path(tmp))
    print(report(columns))
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
