"""peer_protocol_bench: CPU per write of a 3-member etcdpy with raft messages on gRPC and on the peer stream.

For each protocol in turn (``--experimental-peer-protocol``, in the order given, back to back), a fresh
3-member etcdpy cluster (loopback ports, temp data dirs, etcd's default heartbeat 100 ms and election
timeout 1 s) runs ``etcdctl check perf --load=m`` with every member as an endpoint.  The CPU the members
spent meanwhile (utime + stime from /proc, of each member and of its child processes: the client port's
splicer) is divided by the writes made (the revision's growth), summed over the three members.  Each
row also gives check perf's own figures and the load average before and after, since the machine is
shared.

Usage: ``python bench/peer_protocol_bench.py [--protocols grpc,stream,stream,grpc]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import REPO, check_perf

sys.path.insert(0, str(REPO / "tests" / "e2e"))

from cluster_support import ProcCluster
from procs import ETCDCTL_BIN

DEFAULT_TIMES = ["--heartbeat-interval", "100", "--election-timeout", "1000"]  # etcd's defaults


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and of its live children (all threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        total += cpu_seconds(int(child))
    return total


def revision(endpoints: str) -> int:
    assert ETCDCTL_BIN is not None, "etcdctl not installed"
    out = subprocess.run(
        [ETCDCTL_BIN, f"--endpoints={endpoints}", "endpoint", "status", "-w", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return max(int(entry["Status"]["header"]["revision"]) for entry in json.loads(out))


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def measure(protocol: str) -> str:
    """One markdown row: protocol, CPU per write, per member, check perf's figures, load averages."""
    with tempfile.TemporaryDirectory(prefix=f"peer-bench-{protocol}-") as tmp:
        extra = [*DEFAULT_TIMES, f"--experimental-peer-protocol={protocol}"]
        cluster = ProcCluster("etcdpy", Path(tmp), 3, extra_args=extra)
        try:
            cluster.start()
            cluster.wait_leader()
            load_before = loadavg()
            pids = [m.proc.pid for m in cluster.members if m.proc is not None]
            rev_before = revision(cluster.endpoints)
            cpu_before = [cpu_seconds(pid) for pid in pids]
            perf = check_perf(cluster.endpoints)
            cpu_after = [cpu_seconds(pid) for pid in pids]
            writes = revision(cluster.endpoints) - rev_before
            load_after = loadavg()
        finally:
            cluster.stop()
    spent = [after - before for before, after in zip(cpu_before, cpu_after, strict=True)]
    per_write = sum(spent) / writes * 1e6
    members = " / ".join(f"{s / writes * 1e6:,.0f}" for s in spent)
    verdict = "PASS" if perf.passed else "FAIL"
    return (
        f"| {protocol} | {per_write:,.0f} | {members} | {writes:,} | {perf.throughput:,.0f} |"
        f" {perf.slowest:.3f} | {perf.stddev:.3f} | {verdict} | {load_before} | {load_after} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--protocols", default="grpc,stream", help="comma-separated, measured in this order (repeats allowed)"
    )
    args = parser.parse_args()
    print(
        "| protocol | CPU µs per write (sum of 3) | per member | writes | writes/s | slowest s | stddev s"
        " | check perf | load before | load after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for protocol in args.protocols.split(","):
        print(measure(protocol.strip()), flush=True)


if __name__ == "__main__":
    main()
