"""metrics_bench: what counting costs the write path (issue 16: "counting must not slow the write path").

Two one-member servers are compared, alike in everything but their metrics:

* ``on``: the member as ``etcdpy server`` builds it, with its Prometheus registry (fsync and
  commit histograms, put and failed-proposal counters, ...), and the grpc.aio interceptor that
  keeps grpc_server_* (``--metrics extensive`` with ``--extensive``: the handling-time histograms too);
* ``off``: the same member built with `NO_METRICS` (instruments that do nothing) and no interceptor.

Each server is a process of its own (``python bench/metrics_bench.py --serve on|off ...``: the member
and grpc.aio on a loopback port, no HTTP front, so only the metrics differ), fresh data dir each
run.  benchlib's load generator (its own process) sends puts, then serializable ranges, from N
clients.  The modes alternate on, off, off, on, ... for R rounds so that drift weighs on both alike.
Printed per mode: median req/s over the rounds and the server's CPU time per request (from
/proc/<pid>/stat, far steadier than throughput on a loaded machine), and the ratio on/off.

    python bench/metrics_bench.py [--rounds 3] [--seconds 5] [--clients 32] [--extensive]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import REPO, Figures, drive, report

from etcdpy.server.config import Config
from etcdpy.server.member import build, load_cluster, recover
from etcdpy.server.metrics import NO_METRICS, Metrics
from etcdpy.server.services import register_services
from etcdpy.server.services.grpc_metrics import AioInterceptor, GrpcMetrics
from etcdpy.server.storage.backend import Backend

sys.path.insert(0, str(REPO / "tests"))
from procs import free_port, wait_for_port

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


async def _serve(mode: str, port: int, data_dir: str, extensive: bool) -> None:
    import grpc

    peer_url = f"http://127.0.0.1:{free_port()}"  # never listened on: a lone member has no peers
    config = Config(
        data_dir=data_dir,
        listen_client_urls=(f"http://127.0.0.1:{port}",),
        initial_advertise_peer_urls=(peer_url,),
        listen_peer_urls=(peer_url,),
        metrics="extensive" if extensive else "basic",
    ).validate()
    backend = Backend(config.data_dir)
    raftlog = recover(config, backend)
    cluster = await load_cluster(config, backend, raftlog)
    metrics = Metrics(extensive=extensive) if mode == "on" else NO_METRICS
    member = build(config, backend, raftlog, cluster, metrics=metrics)
    member.start()
    await member.server.published.wait()
    interceptors = [AioInterceptor(GrpcMetrics(metrics))] if mode == "on" else []
    server = grpc.aio.server(interceptors=interceptors)
    await register_services(server, member.services)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0)
    await member.stop()
    backend.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def measure(mode: str, root: Path, args: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    data_dir = tempfile.mkdtemp(dir=root)
    command = [sys.executable, __file__, "--serve", mode, str(port), data_dir]
    if args.extensive:
        command.append("--extensive")
    proc = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        wait_for_port(port, proc, timeout=30)
        figures: dict[str, float] = {}
        for op in ("put", "srange"):
            drive(f"127.0.0.1:{port}", op, args.clients, 1.0)  # warm-up
            before = cpu_seconds(proc.pid)
            result = drive(f"127.0.0.1:{port}", op, args.clients, args.seconds)
            used = cpu_seconds(proc.pid) - before
            figures[f"{op} req/s"] = result.throughput
            figures[f"{op} server CPU µs/req"] = used / max(result.requests, 1) * 1e6
        return figures
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--extensive", action="store_true")
    parser.add_argument("--serve", nargs=3, metavar=("MODE", "PORT", "DATA_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        mode, port, data_dir = args.serve
        asyncio.run(_serve(mode, int(port), data_dir, args.extensive))
        return
    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="metrics-bench-") as root:
        for n in range(args.rounds):
            for mode in ("on", "off") if n % 2 == 0 else ("off", "on"):
                started = time.monotonic()
                runs[mode].append(measure(mode, Path(root), args))
                print(
                    f"round {n + 1} {mode}: {runs[mode][-1]} ({time.monotonic() - started:.0f} s)", flush=True
                )
    columns: dict[str, Figures] = {
        mode: {key: statistics.median(run[key] for run in results) for key in results[0]}
        for mode, results in (("off", runs["off"]), ("on", runs["on"]))
    }
    level = "extensive" if args.extensive else "basic"
    print(
        f"\nmetrics {level} vs none, {args.clients} clients, {args.rounds} rounds of {args.seconds:.0f} s, "
        f"medians; load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    print(report(columns))


if __name__ == "__main__":
    main()
