"""cpu_per_write: CPU seconds a member spends per write, etcd 3.4 and etcdpy in one run.

For each server kind it starts a fresh member (or a fresh 3-member cluster with
``--members 3``, etcd's default heartbeat and election timeout), warms it up,
then sends a fixed number of 1 KiB puts from a grpc.aio load generator in its own
process (to the leader), and reads utime+stime from /proc of every process in each
member's process group, threads included, before and after.  It prints, per
server, the CPU per write of each member and their sum, the CPU of the members'
threads grouped by name (``main`` is the first thread, etcdpy's event loop;
grpc's threads have their own names; Python's worker threads and LevelDB's
background compaction thread are all ``python``), each member's peak resident
memory, and the ratio etcdpy/etcd.
CPU per write is far less sensitive to the machine's load than throughput, but
not immune: the load average before and after each measurement is printed.

Usage: ``python bench/cpu_per_write.py [--members 1|3] [--writes N] [--clients N] [--kind K]
[--repeat N] [--extra ARG] [--op put|srange]``; ``--extra`` passes an argument to etcdpy members
(repeatable); ``--op srange`` sends serializable ranges instead (no raft: the cost of a unary call).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import grpc
from benchlib import CHANNELS, REPO, group_processes, stat_fields

sys.path.insert(0, str(REPO / "tests" / "e2e"))

from cluster_support import ProcCluster
from procs import ServerProcess

from etcdpy.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc

VALUE = os.urandom(1024)  # incompressible, as check perf's values are random
DEFAULT_TIMES = ["--heartbeat-interval", "100", "--election-timeout", "1000"]  # etcd's defaults
TICKS = os.sysconf("SC_CLK_TCK")


async def _put_many(endpoint: str, writes: int, clients: int, op: str) -> float:
    channels = [grpc.aio.insecure_channel(endpoint) for _ in range(min(clients, CHANNELS))]
    stubs = [rpc_pb2_grpc.KVStub(c) for c in channels]
    left = writes
    serializable = rpc_pb2.RangeRequest(key=b"bench/1", serializable=True)

    async def client(n: int) -> None:
        nonlocal left
        stub = stubs[n % len(stubs)]
        while left > 0:
            left -= 1
            if op == "put":
                await stub.Put(rpc_pb2.PutRequest(key=b"bench/%d" % (left % 10_000), value=VALUE))
            else:
                await stub.Range(serializable)

    began = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.perf_counter() - began
    for channel in channels:
        await channel.close(None)
    return elapsed


def _put_in_process(endpoint: str, writes: int, clients: int, op: str) -> float:
    return asyncio.run(_put_many(endpoint, writes, clients, op))


def put_many(endpoint: str, writes: int, clients: int, op: str = "put") -> float:
    """Send `writes` puts (or serializable ranges: `op` "srange") from `clients` clients in a separate
    process; return the seconds it took."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_put_in_process, (endpoint, writes, clients, op))


def threads_cpu(pgid: int) -> dict[str, float]:
    """CPU seconds (user+system) per thread name of every process in process group `pgid`."""
    per_name: dict[str, float] = defaultdict(float)
    for proc in group_processes(pgid):
        for task in (proc / "task").iterdir():
            tfields = stat_fields(task / "stat")
            if tfields is None:
                continue
            try:
                name = (task / "comm").read_text().strip()
            except OSError:
                continue
            name = name.rstrip("0123456789-_ ") or name  # one row per pool, not per thread
            if task.name == proc.name:
                name = "main"  # a member's event loop (etcd: its first thread)
            per_name[name] += (int(tfields[11]) + int(tfields[12])) / TICKS  # utime, stime
    return dict(per_name)


@dataclass
class CpuPerWrite:
    """One measurement: throughput, µs of CPU per write per member, their sum, and per thread name."""

    writes_per_second: float
    members: list[float]
    threads: dict[str, float]
    peak_rss_mib: list[float]  # each member's peak resident memory

    @property
    def total(self) -> float:
        return sum(self.members)


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(
    kind: str, members: int, writes: int, clients: int, extra: list[str], op: str = "put"
) -> CpuPerWrite:
    """Start fresh member(s) of `kind`, warm up, then CPU per write over `writes` puts."""
    with tempfile.TemporaryDirectory(prefix=f"cpu-{kind}-") as tmp:
        args = extra if kind == "etcdpy" else []
        if members == 1:
            single = ServerProcess(kind, Path(tmp) / "data", extra_args=args).start()
            servers, leader, stop = [single], single, single.stop
        else:
            cluster = ProcCluster(kind, Path(tmp), members, extra_args=DEFAULT_TIMES + args)
            try:
                cluster.start()
                leader = cluster.wait_leader()
            except BaseException:
                cluster.stop()
                raise
            servers, stop = cluster.members, cluster.stop
        try:
            put_many(leader.endpoint, min(2000, writes), clients)  # warm up: connections, memtable
            pids = [s.proc.pid for s in servers if s.proc is not None]
            before = [threads_cpu(pid) for pid in pids]
            seconds = put_many(leader.endpoint, writes, clients, op)
            after = [threads_cpu(pid) for pid in pids]
            rss = [peak_rss_mib(pid) for pid in pids]
        finally:
            stop()
    per_member = []
    threads: dict[str, float] = defaultdict(float)
    for b, a in zip(before, after, strict=True):
        per_member.append(sum(a.values()) - sum(b.values()))
        for name, value in a.items():
            threads[name] += value - b.get(name, 0.0)
    return CpuPerWrite(
        writes / seconds,
        [1e6 * cpu / writes for cpu in per_member],
        {name: 1e6 * cpu / writes for name, cpu in sorted(threads.items(), key=lambda kv: -kv[1])},
        rss,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, choices=(1, 3), default=1)
    parser.add_argument("--writes", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--kind", choices=("etcd", "etcdpy"), action="append")
    parser.add_argument(
        "--repeat", type=int, default=1, help="measure each kind this many times, alternating"
    )
    parser.add_argument("--extra", action="append", default=[], help="an argument for etcdpy members")
    parser.add_argument(
        "--op",
        choices=("put", "srange"),
        default="put",
        help="srange: serializable ranges, no raft (gRPC cost)",
    )
    args = parser.parse_args()
    kinds = args.kind or ["etcd", "etcdpy"]
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; {args.members} member(s), "
        f"{args.writes} {args.op} of 1 KiB from {args.clients} clients; etcdpy extra {args.extra}"
    )
    totals: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.repeat):
        for kind in kinds:
            load = os.getloadavg()[0]
            result = measure(kind, args.members, args.writes, args.clients, args.extra, args.op)
            members = " + ".join(f"{m:.0f}" for m in result.members)
            totals[kind].append(result.total)
            print(
                f"{kind:7} load {load:5.2f}->{os.getloadavg()[0]:5.2f}  {result.writes_per_second:7.0f} "
                f"writes/s  CPU/write {result.total:6.0f} µs ({members})"
            )
            top = list(result.threads.items())[:6]
            print("        threads: " + ", ".join(f"{n} {v:.0f}" for n, v in top))
            print("        peak RSS MiB: " + " + ".join(f"{m:.0f}" for m in result.peak_rss_mib))
    if len(totals) == 2:
        best = {k: min(v) for k, v in totals.items()}
        print(f"best CPU/write etcd {best['etcd']:.0f} µs, etcdpy {best['etcdpy']:.0f} µs, "
              f"ratio {best['etcdpy'] / best['etcd']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
