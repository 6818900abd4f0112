"""perf_compare: one-member etcdpy against one-member etcd 3.4, in one run, with ratios.

For each server (fresh data dir, loopback ports) it measures

* ``etcdctl check perf --load=m`` (60 s of rate-limited 1 KiB puts from 200 clients;
  etcd's pass criteria: throughput > 90 % of 1000/s, slowest request <= 0.5 s,
  latency stddev <= 0.1 s), skipped with ``--quick``;
* put and range (linearizable get of one existing key) throughput and p50/p99
  latency at 1 and 100 concurrent clients, driven by a grpc.aio client in a
  separate process so it does not share the server's interpreter.

Usage: ``python bench/perf_compare.py [--quick] [--seconds N] [--threads N]``.
Ratios are etcdpy / etcd (throughput: higher is better; latency: lower is better);
``--threads N`` adds a column for ``etcdpy --experimental-grpc-threads N``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # reuse the test suite's process launcher
sys.path.insert(0, str(REPO))

from procs import ETCDCTL_BIN, ServerProcess  # noqa: E402

from etcdpy.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc  # noqa: E402

VALUE = b"v" * 256
CHANNELS = 8  # concurrent clients share this many HTTP/2 connections, as a pool of clients would


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


async def _drive(endpoint: str, op: str, clients: int, seconds: float) -> LoadResult:
    channels = [grpc.aio.insecure_channel(endpoint) for _ in range(min(clients, CHANNELS))]
    stubs = [rpc_pb2_grpc.KVStub(c) for c in channels]
    await stubs[0].Put(rpc_pb2.PutRequest(key=b"bench/range", value=VALUE))
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
                await stub.Range(rpc_pb2.RangeRequest(key=b"bench/range"))
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
    """Run the load from a separate process (its own interpreter and GIL)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_drive_in_process, (endpoint, op, clients, seconds))


@dataclass
class CheckPerf:
    passed: bool
    throughput: float
    slowest: float
    stddev: float
    output: str


def check_perf(endpoint: str) -> CheckPerf:
    """``etcdctl check perf --load=m`` and the figures it prints."""
    assert ETCDCTL_BIN is not None, "etcdctl not installed"
    result = subprocess.run(
        [ETCDCTL_BIN, f"--endpoints={endpoint}", "check", "perf", "--load=m"],
        capture_output=True,
        text=True,
        timeout=180,
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


def measure(kind: str, quick: bool, seconds: float, extra_args: list[str]) -> dict[str, float | str]:
    """Every figure for one fresh server of `kind` ("etcd" or "etcdpy")."""
    figures: dict[str, float | str] = {}
    with tempfile.TemporaryDirectory(prefix=f"perf-{kind}-") as tmp:
        server = ServerProcess(kind, Path(tmp) / "data", extra_args=extra_args).start()
        try:
            if not quick:
                perf = check_perf(server.endpoint)
                figures["check perf m"] = "PASS" if perf.passed else "FAIL"
                figures["check perf writes/s"] = perf.throughput
                figures["check perf slowest s"] = perf.slowest
                figures["check perf stddev s"] = perf.stddev
            for op in ("put", "range"):
                for clients in (1, 100):
                    load = drive(server.endpoint, op, clients, seconds)
                    figures[f"{op} x{clients} req/s"] = load.throughput
                    figures[f"{op} x{clients} p50 ms"] = load.percentile(0.50) * 1000
                    figures[f"{op} x{clients} p99 ms"] = load.percentile(0.99) * 1000
        finally:
            server.stop()
    return figures


def report(columns: dict[str, dict[str, float | str]]) -> str:
    """One row per figure: etcd's, then each etcdpy variant's with its ratio to etcd."""
    names = list(columns)
    reference = columns[names[0]]
    header = [names[0]]
    for name in names[1:]:
        header += [name, f"{name}/etcd"]
    rows = [("metric", *header)]
    for metric, theirs in reference.items():
        cells = [theirs if isinstance(theirs, str) else f"{theirs:.3f}"]
        for name in names[1:]:
            mine = columns[name][metric]
            if isinstance(theirs, str) or isinstance(mine, str):
                cells += [str(mine), ""]
            else:
                cells += [f"{mine:.3f}", f"{mine / theirs:.2f}" if theirs else "nan"]
        rows.append((metric, *cells))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip check perf; 2 s per load (smoke run)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per put/range load (default 10)")
    parser.add_argument(
        "--threads", type=int, default=0, help="also measure etcdpy --experimental-grpc-threads N"
    )
    args = parser.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    variants = {"etcd": ("etcd", []), "etcdpy": ("etcdpy", [])}
    if args.threads:
        variants["etcdpy-threads"] = ("etcdpy", ["--experimental-grpc-threads", str(args.threads)])
    columns = {name: measure(kind, args.quick, seconds, extra) for name, (kind, extra) in variants.items()}
    print(report(columns))


if __name__ == "__main__":
    main()
