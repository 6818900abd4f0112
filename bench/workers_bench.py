"""workers_bench: one member under ``etcdctl check perf``, etcd 3.4 and etcdpy with 0..N client workers,
each on all CPUs and limited to fewer (taskset), in one run, ratios to etcd printed.

Issue 18's first target: one member, ``check perf --load=l``, at least 2,200 writes/s on this 2-core
machine, and more with more cores (the same run with the member on 1 core and on 2).  Every server
is fresh; its whole process group (splicer and workers included) runs on the CPUs given; the load
generator (etcdctl) is not limited.  CPU per write: user+system time of every thread of the server's
process group over the run, divided by the writes check perf reports (throughput x 60 s).

Usage: ``python bench/workers_bench.py [--load l] [--workers 0,1,2] [--cpus 0,0-1] [--runs 1]``
(``--cpus`` takes taskset lists separated by commas of groups: ``0`` and ``0-1``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchlib import Figures, check_perf, report
from cpu_per_write import threads_cpu
from procs import ServerProcess

CHECK_PERF_SECONDS = 60.0  # how long every check perf load writes


def measure(kind: str, workers: int, cpus: str, load: str) -> Figures:
    extra = ["--experimental-client-workers", str(workers)] if kind == "etcdpy" else []
    with tempfile.TemporaryDirectory(prefix=f"workers-{kind}-") as tmp:
        server = ServerProcess(kind, Path(tmp) / "data", extra_args=extra, cpus=cpus).start()
        try:
            assert server.proc is not None
            before = sum(threads_cpu(server.proc.pid).values())
            result = check_perf(server.endpoint, load)
            used = sum(threads_cpu(server.proc.pid).values()) - before
        finally:
            server.stop()
    figures = result.figures()
    writes = result.throughput * CHECK_PERF_SECONDS
    figures["cpu_us_per_write"] = used / writes * 1e6 if writes else float("nan")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", default="l", choices=("s", "m", "l", "xl"))
    parser.add_argument("--workers", default="0,1,2", help="etcdpy's --experimental-client-workers values")
    parser.add_argument("--cpus", default="0,0-1", help="taskset CPU lists to run the servers on")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    throughputs: dict[str, list[float]] = {}
    for run in range(1, args.runs + 1):
        for cpus in args.cpus.split(","):
            columns: dict[str, Figures] = {f"etcd cpus={cpus}": measure("etcd", 0, cpus, args.load)}
            for count in workers:
                columns[f"etcdpy w={count} cpus={cpus}"] = measure("etcdpy", count, cpus, args.load)
            print(f"\nrun {run}, check perf --load={args.load}, servers on CPUs {cpus}")
            print(report(columns))
            for name, figures in columns.items():
                value = figures.get("check perf writes/s")
                if isinstance(value, float):
                    throughputs.setdefault(name, []).append(value)
    print("\nwrites/s over the runs: min / median / max")
    for name, values in throughputs.items():
        print(f"  {name}: {min(values):.0f} / {statistics.median(values):.0f} / {max(values):.0f}")


if __name__ == "__main__":
    main()
