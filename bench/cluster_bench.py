"""cluster_bench: a 3-member etcdpy against a 3-member etcd 3.4, in one run, with ratios.

Each cluster is fresh (loopback ports, temp data dirs, etcd's default heartbeat
100 ms and election timeout 1 s) and is killed before the next starts.  For each:

* put throughput and p50/p99 latency at 1 and 100 clients, sent to the leader;
* range of one key, linearizable and serializable, at 1 and 100 clients, on the
  leader and on a follower;
* the linearizable/serializable latency ratio (p50) of each range pair;
* last, ``etcdctl check perf --load=m`` with every member as an endpoint, as an
  operator runs it (60 s of rate-limited 1 KiB puts from 200 clients; passes with
  throughput > 900 writes/s, slowest request <= 0.5 s, stddev <= 0.1 s);
  skipped with ``--quick`` or ``--no-check-perf``.  It runs last because etcd
  serves reads slowly for a while after its 60,000 writes.

Usage: ``python bench/cluster_bench.py [--quick] [--seconds N] [--no-check-perf] [--perf-only]
[--kind etcd|etcdpy] [--threads N]``; ``--threads N`` adds a column for etcdpy members started
with ``--experimental-grpc-threads N``.
Ratios in the last column are etcdpy / etcd (throughput: higher is better;
latency: lower is better).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from benchlib import REPO, Figures, check_perf, drive, report

sys.path.insert(0, str(REPO / "tests" / "e2e"))

from cluster_support import ProcCluster

DEFAULT_TIMES = ["--heartbeat-interval", "100", "--election-timeout", "1000"]  # etcd's defaults
CLIENTS = (1, 100)


def range_name(op: str, where: str, clients: int) -> str:
    return f"{'lin' if op == 'range' else 'ser'} range {where} x{clients}"


def lin_ser_ratios() -> dict[str, tuple[str, str]]:
    """Rows 'lin/ser p50 <where> x<clients>' comparing the two range kinds of each load."""
    return {
        f"lin/ser p50 {where} x{clients}": (
            f"{range_name('range', where, clients)} p50 ms",
            f"{range_name('srange', where, clients)} p50 ms",
        )
        for where in ("leader", "follower")
        for clients in CLIENTS
    }


def measure(kind: str, extra: list[str], *, perf: bool, loads: bool, seconds: float) -> Figures:
    """Every figure for one fresh 3-member cluster of `kind` ("etcd" or "etcdpy") with `extra` flags."""
    figures: Figures = {}
    with tempfile.TemporaryDirectory(prefix=f"cluster-bench-{kind}-") as tmp:
        cluster = ProcCluster(kind, Path(tmp), 3, extra_args=DEFAULT_TIMES + extra)
        try:
            cluster.start()
            leader = cluster.wait_leader()
            follower = next(m for m in cluster.members if m is not leader)
            for clients in CLIENTS if loads else ():
                figures.update(drive(leader.endpoint, "put", clients, seconds).figures(f"put x{clients}"))
            for where, member in (("leader", leader), ("follower", follower)) if loads else ():
                for clients in CLIENTS:
                    for op in ("range", "srange"):
                        load = drive(member.endpoint, op, clients, seconds)
                        figures.update(load.figures(range_name(op, where, clients)))
            if perf:  # last: etcd serves reads slowly for a while after check perf's 60,000 writes
                figures = {**check_perf(cluster.endpoints).figures(), **figures}
        finally:
            cluster.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip check perf; 1 s per load (smoke run)")
    parser.add_argument("--no-check-perf", action="store_true", help="skip check perf only")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per put/range load (default 5)")
    parser.add_argument("--perf-only", action="store_true", help="only check perf (no put/range loads)")
    parser.add_argument(
        "--kind", choices=("etcd", "etcdpy"), action="append", help="measure only this server (repeatable)"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="also measure etcdpy --experimental-grpc-threads N"
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="also measure etcdpy --experimental-client-workers N"
    )
    args = parser.parse_args()
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    perf = not (args.quick or args.no_check_perf)
    began = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load_before = os.getloadavg()
    variants: dict[str, tuple[str, list[str]]] = {
        kind: (kind, []) for kind in args.kind or ["etcd", "etcdpy"]
    }
    if args.threads:
        variants["etcdpy-threads"] = ("etcdpy", ["--experimental-grpc-threads", str(args.threads)])
    if args.workers:
        variants["etcdpy-workers"] = ("etcdpy", ["--experimental-client-workers", str(args.workers)])
    columns = {
        name: measure(kind, extra, perf=perf, loads=not args.perf_only, seconds=seconds)
        for name, (kind, extra) in variants.items()
    }
    load_after = os.getloadavg()
    print(f"# {began}; load average (1, 5, 15 min) before {load_before}, after {load_after}")
    print(report(columns, lin_ser_ratios()))


if __name__ == "__main__":
    main()
