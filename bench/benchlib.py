"""benchlib: what the etcd-vs-etcdpy benchmarks share.

* a grpc.aio load generator run in its own process (`drive`): put, linearizable
  range or serializable range of one key, N concurrent clients over a few HTTP/2
  connections, for a fixed time; it returns every latency;
* ``etcdctl check perf`` and the figures it prints (`check_perf`);
* a table of figures, one column per server, with ratios to the first (`report`);
* a large keyspace written fast, in txns (`load_keys`), and the memory of a server's process group
  (`group_memory_kib`).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # reuse the test suite's process launcher
sys.path.insert(0, str(REPO))

from procs import ETCDCTL_BIN  # noqa: E402

from etcdpy.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc  # noqa: E402

VALUE = b"v" * 256
RANGE_KEY = b"bench/range"
CHANNELS = 8  # concurrent clients share this many HTTP/2 connections, as a pool of clients would
OPS = ("put", "range", "srange")  # srange: serializable range
Figures = dict[str, float | str]


@dataclass
class LoadResult:
    """Requests completed in a timed window and their latencies (seconds)."""

    requests: int
    seconds: float
    latencies: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    def figures(self, name: str) -> Figures:
        """Throughput and p50/p99 latency (ms) under keys starting with `name`."""
        return {
            f"{name} req/s": self.throughput,
            f"{name} p50 ms": self.percentile(0.50) * 1000,
            f"{name} p99 ms": self.percentile(0.99) * 1000,
        }


async def _drive(endpoint: str, op: str, clients: int, seconds: float) -> LoadResult:
    channels = [grpc.aio.insecure_channel(endpoint) for _ in range(min(clients, CHANNELS))]
    stubs = [rpc_pb2_grpc.KVStub(c) for c in channels]
    await stubs[0].Put(rpc_pb2.PutRequest(key=RANGE_KEY, value=VALUE))
    range_request = rpc_pb2.RangeRequest(key=RANGE_KEY, serializable=op == "srange")
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client(n: int) -> None:
        stub = stubs[n % len(stubs)]
        i = 0
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            if op == "put":
                await stub.Put(rpc_pb2.PutRequest(key=b"bench/%d/%d" % (n, i % 1000), value=VALUE))
            else:
                await stub.Range(range_request)
            latencies.append(time.perf_counter() - start)
            i += 1

    began = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.perf_counter() - began
    for channel in channels:
        await channel.close()
    return LoadResult(len(latencies), elapsed, latencies)


def _drive_in_process(endpoint: str, op: str, clients: int, seconds: float) -> LoadResult:
    return asyncio.run(_drive(endpoint, op, clients, seconds))


def drive(endpoint: str, op: str, clients: int, seconds: float) -> LoadResult:
    """Run `op` (one of OPS) from `clients` clients against `endpoint` in a separate process (own GIL)."""
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}")
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_drive_in_process, (endpoint, op, clients, seconds))


@dataclass
class CheckPerf:
    passed: bool
    throughput: float
    slowest: float
    stddev: float
    output: str

    def figures(self) -> Figures:
        return {
            "check perf m": "PASS" if self.passed else "FAIL",
            "check perf writes/s": self.throughput,
            "check perf slowest s": self.slowest,
            "check perf stddev s": self.stddev,
        }


def check_perf(endpoints: str, load: str = "m") -> CheckPerf:
    """``etcdctl check perf --load=<load>`` against `endpoints` (comma-separated) and its figures."""
    assert ETCDCTL_BIN is not None, "etcdctl not installed"
    result = subprocess.run(
        [ETCDCTL_BIN, f"--endpoints={endpoints}", "check", "perf", f"--load={load}"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    text = (result.stdout + result.stderr).replace("\r", "\n")

    def number(pattern: str) -> float:
        match = re.search(pattern, text)
        return float(match.group(1)) if match else float("nan")

    lines = [line for line in text.splitlines() if line.strip()]
    return CheckPerf(
        passed=bool(lines) and lines[-1].strip() == "PASS",
        throughput=number(r"Throughput (?:is|too low:) (\d+)"),
        slowest=number(r"Slowest request took(?: too long:)? ([\d.]+)s"),
        stddev=number(r"Stddev(?: too high:| is) ([\d.]+)s"),
        output="\n".join(line for line in lines if not re.match(r"^\s*\d+ / 60", line)),
    )


def _cell(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:.3f}"


def report(columns: dict[str, Figures], ratios: dict[str, tuple[str, str]] | None = None) -> str:
    """One row per figure: the first column's, then each other column's with its ratio to the first.

    `ratios` adds rows ``name -> (numerator metric, denominator metric)`` computed within each column.
    """
    names = list(columns)
    reference_name = names[0]
    for column in columns.values():
        for name, (top, bottom) in (ratios or {}).items():
            a, b = column.get(top), column.get(bottom)
            if isinstance(a, float) and isinstance(b, float) and b:
                column[name] = a / b
    reference = columns[reference_name]
    header = [reference_name]
    for name in names[1:]:
        header += [name, f"{name}/{reference_name}"]
    rows = [("metric", *header)]
    for metric, theirs in reference.items():
        cells = [_cell(theirs)]
        for name in names[1:]:
            mine = columns[name].get(metric, "")
            if isinstance(theirs, str) or isinstance(mine, str):
                cells += [str(mine), ""]
            else:
                cells += [f"{mine:.3f}", f"{mine / theirs:.2f}" if theirs else "nan"]
        rows.append((metric, *cells))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


TXN_OPS = 100  # puts per txn when loading a keyspace (etcd's --max-txn-ops is 128)


def load_keys(endpoint: str, keys: int, value_size: int, prefix: str = "bench/") -> None:
    """Write `keys` keys ``<prefix><9-digit index>`` of `value_size` random bytes, TXN_OPS per txn,
    eight txns in flight."""
    value = os.urandom(value_size)
    with grpc.insecure_channel(endpoint, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        stub = rpc_pb2_grpc.KVStub(channel)  # type: ignore[no-untyped-call]
        pending = []
        for start in range(0, keys, TXN_OPS):
            ops = [
                rpc_pb2.RequestOp(
                    request_put=rpc_pb2.PutRequest(key=f"{prefix}{i:09d}".encode(), value=value)
                )
                for i in range(start, min(keys, start + TXN_OPS))
            ]
            pending.append(stub.Txn.future(rpc_pb2.TxnRequest(success=ops), timeout=120))
            if len(pending) >= 8:
                pending.pop(0).result()
        for future in pending:
            future.result()


def stat_fields(path: Path) -> list[str] | None:
    """The fields of a /proc stat file after "pid (comm) " (so [2] is the process group); None if gone."""
    try:
        text = path.read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def group_processes(pgid: int) -> Iterator[Path]:
    """The /proc directory of every process in process group `pgid`."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            fields = stat_fields(proc / "stat")
            if fields is not None and int(fields[2]) == pgid:
                yield proc


def group_memory_kib(pgid: int, field: str = "VmRSS") -> int:
    """A /proc/<pid>/status memory field (VmRSS, RssAnon: the heap, RssFile: mapped files) summed over
    every process of process group `pgid` (etcdpy's splicer and client workers count with the member)."""
    return sum(memory_by_role(pgid, field).values())


ROLES = {"etcdpy.server.http.splicer": "splicer", "etcdpy.server.workers.worker": "workers"}


def memory_by_role(pgid: int, field: str = "VmRSS") -> dict[str, int]:
    """`group_memory_kib` per role in the group: "splicer", "workers" (all of them) and "member" (the rest:
    the member itself, or etcd)."""
    kib: dict[str, int] = {}
    for proc in group_processes(pgid):
        try:
            status = (proc / "status").read_text()
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        role = next((ROLES[arg] for arg in map(bytes.decode, argv) if arg in ROLES), "member")
        for line in status.splitlines():
            if line.startswith(field + ":"):
                kib[role] = kib.get(role, 0) + int(line.split()[1])
    return kib


def keyspace_arguments(doc: str) -> argparse.ArgumentParser:
    """The options of a benchmark over a loaded keyspace: --keys, --value-size, --kind (repeatable)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--value-size", type=int, default=1024)
    parser.add_argument("--kind", choices=("etcd", "etcdpy"), action="append")
    return parser


def compare_kinds(name: str, args: argparse.Namespace, measure: Callable[[str, Path], Figures]) -> None:
    """Measure each kind of server in args.kind (default etcd, then etcdpy) in a temp dir of its own, then
    print one table with the load average before and after (the machine is shared)."""
    before = os.getloadavg()[0]
    columns = {}
    for kind in args.kind or ["etcd", "etcdpy"]:
        with tempfile.TemporaryDirectory(prefix=f"{name}-{kind}-") as tmp:
            columns[kind] = measure(kind, Path(tmp))
    after = os.getloadavg()[0]
    print(f"{name}: {args.keys} keys of {args.value_size} B; load average {before:.1f} -> {after:.1f}")
    print(report(columns))
