"""Watch benchmark: event latency under load and memory per watcher, etcdpy and etcd 3.4 in one run.

Usage: python bench/watch_bench.py [--rate 1000] [--watchers 100] [--seconds 10] [--idle-watchers 10000]
       [--client-procs 4] [--max-inflight 200] [--only etcd|etcdpy]

Latency: one process puts at ``--rate`` puts/s (one key per put, under ``bench/``), at most
``--max-inflight`` at a time (as etcd's benchmark tool bounds its clients), and notes
when each put was acknowledged; ``--watchers`` prefix watchers, spread over
``--client-procs`` processes (a Python client cannot read 100,000 responses/s alone),
note when each event arrived.  Latency = arrival - acknowledgement, per (watcher, event);
an event that arrives before its put is acknowledged counts as 0.  Clocks are
CLOCK_MONOTONIC, shared by the processes.

A watch stream that breaks is reported with its status, not taken for a crash of the run.
(Without the in-flight bound, a server that falls behind piles up thousands of Put calls on one
connection: past grpc's pending-call limit, which etcdpy's server now raises, grpc cancelled
Puts and once dropped every connection, watch streams included.  See bench/RESULTS.md.)

Memory: the server's resident set (every process of its group: etcdpy's splicer and client workers
too) before and after opening ``--idle-watchers`` watchers (100 per stream), divided by their number.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # reuse the test suite's process launcher
sys.path.insert(0, str(REPO))

from benchlib import group_memory_kib, memory_by_role  # noqa: E402
from procs import ServerProcess  # noqa: E402

from etcdpy.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc  # noqa: E402

PREFIX = b"bench/"
PREFIX_END = b"bench0"  # "/" + 1


async def _watchers(
    endpoint: str, count: int, ready: multiprocessing.Event, seconds: float, out: list
) -> None:  # type: ignore[type-arg]
    """Open ``count`` watchers on one stream; record (value, arrival) per event until ``seconds`` pass.

    Raises the call's AioRpcError if the stream breaks.
    """
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stub = rpc_pb2_grpc.WatchStub(channel)  # type: ignore[no-untyped-call]
        requests = [
            rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=PREFIX, range_end=PREFIX_END))
            for _ in range(count)
        ]
        call = stub.Watch(iter(requests))
        created = 0
        deadline = None
        async for response in call:
            now = time.monotonic()
            if response.created:
                created += 1
                if created == count:
                    ready.set()
                    deadline = now + seconds + 2
                continue
            for event in response.events:
                out.append((bytes(event.kv.value), now))
            if deadline is not None and now > deadline:
                break
        call.cancel()


def _watch_process(
    endpoint: str, count: int, ready: multiprocessing.Event, seconds: float, queue: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    arrivals: list[tuple[bytes, float]] = []
    broken = ""
    try:
        asyncio.run(asyncio.wait_for(_watchers(endpoint, count, ready, seconds, arrivals), seconds + 30))
    except TimeoutError:  # report what arrived even if the stream never ended
        pass
    except grpc.aio.AioRpcError as err:
        broken = f"{err.code().name}: {err.details()}"
    queue.put((arrivals, broken))


async def _writer(
    endpoint: str, rate: float, seconds: float, max_inflight: int
) -> tuple[dict[bytes, float], float]:
    """Acknowledgement time per value, and the put rate achieved."""
    acks: dict[bytes, float] = {}
    inflight = asyncio.Semaphore(max_inflight)
    async with grpc.aio.insecure_channel(endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)  # type: ignore[no-untyped-call]
        start = time.monotonic()
        total = int(rate * seconds)

        async def put(i: int) -> None:
            value = b"%d" % i
            async with inflight:
                await kv.Put(rpc_pb2.PutRequest(key=PREFIX + b"%d" % (i % 1000), value=value))
            acks[value] = time.monotonic()

        tasks = []
        for i in range(total):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(put(i)))
        await asyncio.gather(*tasks)
        achieved = total / (time.monotonic() - start)
    return acks, achieved


def latency(
    server: ServerProcess, rate: float, watchers: int, seconds: float, procs: int, max_inflight: int
) -> str:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    readies = []
    workers = []
    for p in range(procs):
        share = watchers // procs + (1 if p < watchers % procs else 0)
        ready = ctx.Event()
        readies.append(ready)
        worker = ctx.Process(target=_watch_process, args=(server.endpoint, share, ready, seconds, queue))
        worker.start()
        workers.append(worker)
    for ready in readies:
        ready.wait(60)
    acks, achieved = asyncio.run(_writer(server.endpoint, rate, seconds, max_inflight))
    reports = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
    arrivals = [item for got, _ in reports for item in got]
    broken = [why for _, why in reports if why]
    delays = sorted(max(0.0, at - acks[value]) for value, at in arrivals if value in acks)
    expected = len(acks) * watchers
    if not delays:
        return "no events received"
    p50, p99 = delays[len(delays) // 2], delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    summary = (
        f"p50 {p50 * 1000:7.2f} ms  p99 {p99 * 1000:7.2f} ms  events {len(delays)}/{expected}"
        f"  puts/s {achieved:.0f}"
    )
    return summary + (f"  BROKEN streams {len(broken)}: {broken[0]}" if broken else "")


async def _idle(endpoint: str, count: int, per_stream: int) -> list[object]:
    channel = grpc.aio.insecure_channel(endpoint)
    stub = rpc_pb2_grpc.WatchStub(channel)  # type: ignore[no-untyped-call]
    calls = []
    for first in range(0, count, per_stream):
        n = min(per_stream, count - first)
        reqs = [
            rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"idle/%d" % (first + i)))
            for i in range(n)
        ]
        call = stub.Watch(iter(reqs))
        for _ in range(n):
            await call.read()  # created
        calls.append(call)
    return [channel, *calls]


def memory(server: ServerProcess, count: int) -> str:
    assert server.proc is not None
    pid = server.proc.pid

    async def run() -> tuple[int, int, dict[str, int], dict[str, int]]:
        await asyncio.sleep(1)
        before, heap_before = group_memory_kib(pid), memory_by_role(pid, "RssAnon")
        held = await _idle(server.endpoint, count, 100)
        await asyncio.sleep(2)
        after, heap_after = group_memory_kib(pid), memory_by_role(pid, "RssAnon")
        for call in held[1:]:
            call.cancel()  # type: ignore[attr-defined]
        await held[0].close()  # type: ignore[attr-defined]
        return before, after, heap_before, heap_after

    before, after, heap_before, heap_after = asyncio.run(run())
    per_watcher = (after - before) * 1024 / count
    # The heap's share of each role (a worker holds a second copy of each stream's gRPC state).
    roles = "  ".join(
        f"{role} {(heap_after[role] - heap_before.get(role, 0)) * 1024 / count:.0f}"
        for role in sorted(heap_after)
    )
    return (
        f"rss {before / 1024:7.1f} MiB -> {after / 1024:7.1f} MiB  = {per_watcher:7.0f} B/watcher"
        f"  (heap B/watcher: {roles})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--idle-watchers", type=int, default=10000)
    parser.add_argument("--client-procs", type=int, default=4)
    parser.add_argument("--max-inflight", type=int, default=200)
    parser.add_argument("--only", choices=("etcd", "etcdpy"))
    parser.add_argument(
        "--etcdpy-args", default="", help='more flags for etcdpy, e.g. "--experimental-client-workers 2"'
    )
    args = parser.parse_args()
    kinds = [args.only] if args.only else ["etcd", "etcdpy"]
    extra = {"etcd": [], "etcdpy": args.etcdpy_args.split()}
    for kind in kinds:
        label = f"{kind:<7} latency ({args.watchers} watchers, {args.rate:.0f} puts/s): "
        _measure(
            kind,
            extra[kind],
            label,
            lambda s: latency(
                s, args.rate, args.watchers, args.seconds, args.client_procs, args.max_inflight
            ),
        )
        label = f"{kind:<7} memory ({args.idle_watchers} idle watchers): "
        _measure(kind, extra[kind], label, lambda s: memory(s, args.idle_watchers))


def _measure(kind: str, extra: list[str], label: str, measure: Callable[[ServerProcess], str]) -> None:
    """Run one measurement on a fresh server; if it fails, say so with the server's last log lines."""
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(kind, Path(tmp) / "data", extra_args=extra).start()
        try:
            print(label + measure(server), flush=True)
        except Exception as exc:  # a benchmark reports, it does not stop the other measurements
            alive = server.proc is not None and server.proc.poll() is None
            print(
                f"{label}FAILED ({type(exc).__name__}; server {'alive' if alive else 'exited'})", flush=True
            )
            print(server.read_log()[-3000:], flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
