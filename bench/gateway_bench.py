"""gateway_bench: the JSON gateway's put and range per second, etcd 3.4's and etcdpy's, in one run.

One fresh one-member etcd and one fresh one-member etcdpy (free loopback ports, temp data dirs), each
serving the gateway on its client URL. The load is N concurrent HTTP/1.1 keep-alive connections, one
request in flight on each, driven by one asyncio process of its own over raw sockets (a request's
bytes are built once; the answer is read by its Content-Length or chunks), so the client costs far
less per request than either server. Per op (put of a 256-byte value, linearizable range of one key)
and client count, after a 1 s warm-up, etcd then etcdpy then etcdpy then etcd, S/2 seconds each, so
that drift weighs on both alike; req/s, p50/p99 ms, and etcdpy's ratio to etcd.

For gRPC throughput through the shared port against grpcio on it directly, see client_port_bench.py.

Usage: ``python bench/gateway_bench.py [--seconds S] [--clients 1,16] [--ops put,range]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

from benchlib import LoadResult, report
from procs import ServerProcess

VALUE = b"v" * 256
KEY = b"bench/gateway"


def request_bytes(op: str, port: int) -> bytes:
    key = base64.b64encode(KEY).decode()
    if op == "put":
        path, body = "/v3/kv/put", {"key": key, "value": base64.b64encode(VALUE).decode()}
    else:
        path, body = "/v3/kv/range", {"key": key}
    data = json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(data)}\r\n\r\n"
    return head.encode() + data


async def _read_answer(reader: asyncio.StreamReader) -> int:
    """Read one answer; its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = head.lower()
    if b"transfer-encoding: chunked" in headers:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                return status
            await reader.readexactly(size + 2)
    length = int(headers.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
    await reader.readexactly(length)
    return status


async def _drive(port: int, op: str, clients: int, seconds: float) -> LoadResult:
    request = request_bytes(op, port)
    latencies: list[float] = []
    failures = 0
    deadline = time.monotonic() + seconds

    async def one_client() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                writer.write(request)
                if await _read_answer(reader) != 200:
                    failures += 1
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    if failures:
        raise RuntimeError(f"{failures} requests failed")
    return LoadResult(len(latencies), time.monotonic() - started, latencies)


def _drive_in_process(port: int, op: str, clients: int, seconds: float) -> LoadResult:
    return asyncio.run(_drive(port, op, clients, seconds))


def drive(port: int, op: str, clients: int, seconds: float) -> LoadResult:
    """The load, in a process of its own (the bench's own process stays idle)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_drive_in_process, (port, op, clients, seconds))


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per op, client count and server")
    parser.add_argument("--clients", default="1,16", help="client counts (default 1,16)")
    parser.add_argument("--ops", default="put,range", help="put, range (default both)")
    args = parser.parse_args()
    print(f"load average before: {loadavg()}  ({time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC)")
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        servers = {kind: ServerProcess(kind, Path(tmp) / kind) for kind in ("etcd", "etcdpy")}
        try:
            for server in servers.values():
                server.start()
                drive(server.client_port, "put", 1, 0.5)  # the key exists; warm-up, not counted
            for op in args.ops.split(","):
                for clients in (int(c) for c in args.clients.split(",")):
                    results = {kind: LoadResult(0, 0.0, []) for kind in servers}
                    for kind in ("etcd", "etcdpy", "etcdpy", "etcd"):
                        result = drive(servers[kind].client_port, op, clients, args.seconds / 2)
                        total = results[kind]
                        results[kind] = LoadResult(
                            total.requests + result.requests,
                            total.seconds + result.seconds,
                            total.latencies + result.latencies,
                        )
                    columns = {
                        kind: {k.strip(): v for k, v in r.figures("").items()} for kind, r in results.items()
                    }
                    print(f"\ngateway {op}, {clients} client(s), {args.seconds:g} s per server:")
                    print(report(columns))
            print(f"\nload average after: {loadavg()}")
        finally:
            for server in servers.values():
                server.stop()


if __name__ == "__main__":
    sys.exit(main())
