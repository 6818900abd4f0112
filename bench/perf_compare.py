"""perf_compare: one-member etcdpy against one-member etcd 3.4, in one run, with ratios.

For each server (fresh data dir, loopback ports) it measures

* ``etcdctl check perf --load=m`` (60 s of rate-limited 1 KiB puts from 200 clients;
  etcd's pass criteria: throughput > 90 % of 1000/s, slowest request <= 0.5 s,
  latency stddev <= 0.1 s), skipped with ``--quick``;
* put and range (linearizable get of one existing key) throughput and p50/p99
  latency at 1 and 100 concurrent clients, driven by a grpc.aio client in a
  separate process so it does not share the server's interpreter.

Usage: ``python bench/perf_compare.py [--quick] [--seconds N] [--threads N] [--workers N]``.
Ratios are etcdpy / etcd (throughput: higher is better; latency: lower is better);
``--threads N`` adds a column for ``etcdpy --experimental-grpc-threads N``, ``--workers N`` one for
``etcdpy --experimental-client-workers N``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchlib import Figures, check_perf, drive, report
from procs import ServerProcess


def measure(kind: str, quick: bool, seconds: float, extra_args: list[str]) -> Figures:
    """Every figure for one fresh server of `kind` ("etcd" or "etcdpy")."""
    figures: Figures = {}
    with tempfile.TemporaryDirectory(prefix=f"perf-{kind}-") as tmp:
        server = ServerProcess(kind, Path(tmp) / "data", extra_args=extra_args).start()
        try:
            if not quick:
                figures.update(check_perf(server.endpoint).figures())
            for op in ("put", "range"):
                for clients in (1, 100):
                    figures.update(drive(server.endpoint, op, clients, seconds).figures(f"{op} x{clients}"))
        finally:
            server.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip check perf; 2 s per load (smoke run)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per put/range load (default 10)")
    parser.add_argument(
        "--threads", type=int, default=0, help="also measure etcdpy --experimental-grpc-threads N"
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="also measure etcdpy --experimental-client-workers N"
    )
    args = parser.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    variants = {"etcd": ("etcd", []), "etcdpy": ("etcdpy", [])}
    if args.threads:
        variants["etcdpy-threads"] = ("etcdpy", ["--experimental-grpc-threads", str(args.threads)])
    if args.workers:
        variants["etcdpy-workers"] = ("etcdpy", ["--experimental-client-workers", str(args.workers)])
    columns = {name: measure(kind, args.quick, seconds, extra) for name, (kind, extra) in variants.items()}
    print(report(columns))


if __name__ == "__main__":
    main()
