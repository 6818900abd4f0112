"""client_port_bench: what a front listener on the client port costs gRPC (issues 16 and 18).

The HTTP gateway issue wants the client URL to answer both gRPC and HTTP/1.1 JSON, at a cost to gRPC of at
most 5 % of its throughput. grpcio cannot adopt an accepted socket, so one design is a listener of
etcdpy's own that owns the public client port, peeks at each connection's first bytes and hands gRPC
connections to grpcio listening on a private loopback port, the kernel moving the bytes. This bench
measures that hand-off before anything is built into etcdpy.

etcdpy members (``python -m etcdpy server``, temp data dirs, free loopback ports): one with
``--experimental-client-front=off`` (grpcio binds its client port itself), and one per front mode
etcdpy ships (the front owns the client port, grpcio listens on a private Unix socket). The bench
also starts one front process per prototype copy mode in front of the first member, each listening
on its own public port:

* ``direct``: the clients connect to the first member's port itself, grpcio's (the reference);
* ``member-process``: a member with ``--experimental-client-front=process`` (the default): its
  splicer is a process of its own (a thread pair per connection splicing to grpcio's Unix socket,
  HTTP connections sent back to the member); the splicer's CPU is read from its own /proc entry;
* ``member-thread``: a member with ``--experimental-client-front=thread``: the same splicer as
  threads of the member process (its CPU is the member's: the front column stays empty);
* ``member-workers``: ``member-process`` with ``--experimental-client-workers=2``: the splicer sends
  the gRPC connections to two client worker processes, which forward each call to the member (the
  member column is the member process alone, the front column the splicer; the workers' CPU is in
  neither);
* ``splice``: a front process accepts each connection, peeks its first 24 bytes with
  ``recv(MSG_PEEK | MSG_WAITALL)``: the HTTP/2 client preface (``PRI * HTTP/2.0``...) means gRPC,
  anything else gets a fixed ``501`` and is closed (where the HTTP/1.1 gateway would go). For gRPC it
  connects to the member's private port and moves the bytes both ways with ``os.splice`` through a
  pipe, one blocking thread per direction per connection (a thread pair per connection: the kernel
  moves the bytes, the threads only sleep in ``splice``, which releases the GIL);
* ``splice-loop``: the same classification (in a short-lived thread per connection), then every
  connection's bytes, both ways, moved by one thread running an epoll loop (``selectors``) over
  non-blocking sockets with ``os.splice(..., flags=SPLICE_F_NONBLOCK)`` through a pipe per direction;
* ``copy``: the thread-pair front moving the bytes with ``recv_into`` / ``sendall`` through a
  userspace buffer instead of splice, to show what splice saves.

The fronts run in processes of their own, not threads of the bench: the deployed front would be a
process (or a thread of the member) beside grpcio, and a process of its own keeps its CPU time
separate (read from /proc/<pid>/stat) and its GIL out of the load generator's and the member's way.

The load is benchlib's: unary serializable Range of one small key from N concurrent grpc.aio clients
over up to 8 HTTP/2 connections, in a separate process. For each client count, after a 1 s warm-up,
the loads run against the same member in the order direct, splice, splice-loop, copy, then the
reverse, S/2 seconds each (S seconds per mode in all), so that drift weighs on every mode alike. Per
mode: requests/s, p50/p99 ms, the ratio to direct's, the front's CPU µs per request and the member's
CPU µs per request, and whether the ratio meets the issue's bound (front req/s >= 0.95 x direct's).

Usage: ``python bench/client_port_bench.py [--seconds S] [--clients 1,4,32] [--modes member-front,...]``.
A run with the defaults takes about 70 s. On the shared two-core machine the client process, the member
and the front compete for two cores: compare figures within one run, and run it more than once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchlib import Figures, LoadResult, drive, report
from procs import ServerProcess, free_port, wait_for_port

from etcdpy.server.http.splicer import pump as splice_pump  # the member's own, measured as shipped

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HTTP_501 = b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
CHUNK = 1 << 16
BOUND = 0.95  # issue 16: answering both on one port costs gRPC at most 5 % of its throughput
PROCESS_MODES = ("splice", "splice-loop", "copy")
WORKERS = 2
MEMBER_MODES = {
    "member-process": ["--experimental-client-front=process"],
    "member-thread": ["--experimental-client-front=thread"],
    # the splicer process spreading gRPC connections over client worker processes (issue 18)
    "member-workers": ["--experimental-client-front=process", f"--experimental-client-workers={WORKERS}"],
}
MODES = (*MEMBER_MODES, *PROCESS_MODES)


# --- the front (runs in its own process: `client_port_bench.py --front MODE PUBLIC_PORT PRIVATE_PORT`) ---


def _pump_copy(src: socket.socket, dst: socket.socket) -> None:
    """Move bytes src -> dst through a userspace buffer until src's EOF, then half-close dst."""
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    try:
        while True:
            n = src.recv_into(buffer)
            if n == 0:
                break
            dst.sendall(view[:n])
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class _Direction:
    """One direction of a spliced connection in the selector loop: src -> pipe -> dst."""

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src, self.dst = src, dst
        self.read_end, self.write_end = os.pipe()
        self.pending = 0  # bytes in the pipe not yet spliced to dst
        self.eof = False

    def reading(self) -> bool:
        return not self.pending and not self.eof

    def drain(self) -> None:
        while self.pending:
            try:
                self.pending -= os.splice(
                    self.read_end, self.dst.fileno(), self.pending, flags=os.SPLICE_F_NONBLOCK
                )
            except BlockingIOError:
                return
        if self.eof:
            with contextlib.suppress(OSError):
                self.dst.shutdown(socket.SHUT_WR)

    def fill(self) -> None:
        try:
            n = os.splice(self.src.fileno(), self.write_end, CHUNK, flags=os.SPLICE_F_NONBLOCK)
        except BlockingIOError:
            return
        if n == 0:
            self.eof = True
        self.pending += n
        self.drain()

    def close(self) -> None:
        os.close(self.read_end)
        os.close(self.write_end)


class _SpliceLoop:
    """Every gRPC connection's bytes, both ways, moved with non-blocking os.splice by one epoll thread."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.new: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_read, False)
        self.selector.register(self.wake_read, selectors.EVENT_READ, None)
        threading.Thread(target=self.run, daemon=True).start()

    def add(self, conn: socket.socket, backend: socket.socket) -> None:
        with self.lock:
            self.new.append((conn, backend))
        os.write(self.wake_write, b"x")

    def _update(self, sock: socket.socket, pair: tuple[_Direction, _Direction]) -> None:
        events = 0
        for d in pair:
            if d.src is sock and d.reading():
                events |= selectors.EVENT_READ
            if d.dst is sock and d.pending:
                events |= selectors.EVENT_WRITE
        registered = self._registered(sock)
        if events and registered:
            self.selector.modify(sock, events, pair)
        elif events:
            self.selector.register(sock, events, pair)
        elif registered:
            self.selector.unregister(sock)

    def _registered(self, sock: socket.socket) -> bool:
        try:
            self.selector.get_key(sock)
        except KeyError:
            return False
        return True

    def _close(self, pair: tuple[_Direction, _Direction]) -> None:
        for d in pair:
            if self._registered(d.src):
                self.selector.unregister(d.src)
            d.close()
            d.src.close()

    def run(self) -> None:
        while True:
            for key, mask in self.selector.select():
                if key.data is None:
                    os.read(self.wake_read, 4096)
                    with self.lock:
                        new, self.new = self.new, []
                    for conn, backend in new:
                        for sock in (conn, backend):
                            sock.setblocking(False)
                        pair = (_Direction(conn, backend), _Direction(backend, conn))
                        self._update(conn, pair)
                        self._update(backend, pair)
                    continue
                sock = key.fileobj
                pair = key.data
                try:
                    for d in pair:
                        if d.dst is sock and mask & selectors.EVENT_WRITE:
                            d.drain()
                        if d.src is sock and mask & selectors.EVENT_READ and d.reading():
                            d.fill()
                except OSError:
                    self._close(pair)
                    continue
                if all(d.eof and not d.pending for d in pair):
                    self._close(pair)
                    continue
                for d in pair:
                    self._update(d.src, pair)


def _classify(conn: socket.socket, private_port: int) -> socket.socket | None:
    """Peek the first bytes: for the HTTP/2 preface, a connection to the member's private port; else None."""
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.settimeout(10.0)
    try:
        first = conn.recv(len(H2_PREFACE), socket.MSG_PEEK | socket.MSG_WAITALL)
    except OSError:
        return None
    if first != H2_PREFACE:
        if first:  # HTTP/1.1 (or anything else): the gateway would answer here
            with contextlib.suppress(OSError):
                conn.sendall(HTTP_501)
        return None
    conn.settimeout(None)
    try:
        backend = socket.create_connection(("127.0.0.1", private_port))
    except OSError:
        return None
    backend.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return backend


def _serve_connection(conn: socket.socket, private_port: int, mode: str, loop: _SpliceLoop | None) -> None:
    backend = _classify(conn, private_port)
    if backend is None:
        conn.close()
        return
    if loop is not None:
        loop.add(conn, backend)
        return
    with conn, backend:
        pump = splice_pump if mode == "splice" else _pump_copy
        back = threading.Thread(target=pump, args=(backend, conn), daemon=True)
        back.start()
        pump(conn, backend)
        back.join()


def run_front(mode: str, public_port: int, private_port: int) -> None:
    """Accept on public_port forever; a thread classifies each connection, then pumps it or hands it on."""
    listener = socket.create_server(("127.0.0.1", public_port), backlog=128)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    loop = _SpliceLoop() if mode == "splice-loop" else None
    while True:
        conn, _ = listener.accept()
        args = (conn, private_port, mode, loop)
        threading.Thread(target=_serve_connection, args=args, daemon=True).start()


# --- the bench ---


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_workers(data_dir: Path, count: int, timeout: float = 20.0) -> None:
    """Until `count` client workers serve their sockets (the splicer skips those that do not yet)."""
    deadline = time.monotonic() + timeout
    while len(list(data_dir.glob("grpc-worker-*.sock"))) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} client workers did not start in {timeout:g} s")
        time.sleep(0.1)


def splicer_pid(member_pid: int) -> int | None:
    """The member's splicer process (--experimental-client-front=process), if it has one."""
    children = Path(f"/proc/{member_pid}/task/{member_pid}/children").read_text().split()
    for child in children:
        if b"etcdpy.server.http.splicer" in Path(f"/proc/{child}/cmdline").read_bytes():
            return int(child)
    return None


def start_front(mode: str, private_port: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--front", mode, str(port), str(private_port)], start_new_session=True
    )
    wait_for_port(port, proc)
    return proc, port


def check_http_answer(port: int) -> bool:
    """An HTTP/1.1 request on the port gets an HTTP/1.1 answer (the protocols are told apart)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        return s.recv(100).startswith(b"HTTP/1.1 ")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass(frozen=True)
class Target:
    """Where one mode's clients connect, the member serving them, and the front process (if any)."""

    port: int
    member_pid: int
    front_pid: int | None


def measure(targets: dict[str, Target], warm_port: int, clients: int, seconds: float) -> dict[str, Figures]:
    """Every mode at `clients` clients, in A B C C B A order; figures per mode."""
    columns: dict[str, Figures] = {}
    for port in {warm_port, *(t.port for t in targets.values())}:
        drive(f"127.0.0.1:{port}", "srange", clients, min(1.0, seconds))  # warm-up, not counted
    results = {mode: LoadResult(0, 0.0, []) for mode in targets}
    member_cpu = dict.fromkeys(targets, 0.0)
    front_cpu = dict.fromkeys(targets, 0.0)
    order = list(targets)
    for mode in order + order[::-1]:  # A B C C B A: drift over the run weighs on every mode alike
        target = targets[mode]
        member_before = cpu_seconds(target.member_pid)
        front_before = cpu_seconds(target.front_pid) if target.front_pid else 0.0
        result = drive(f"127.0.0.1:{target.port}", "srange", clients, seconds / 2)
        member_cpu[mode] += cpu_seconds(target.member_pid) - member_before
        front_cpu[mode] += cpu_seconds(target.front_pid) - front_before if target.front_pid else 0.0
        total = results[mode]
        results[mode] = LoadResult(
            total.requests + result.requests,
            total.seconds + result.seconds,
            total.latencies + result.latencies,
        )
    for mode, result in results.items():
        figures = {key.strip(): value for key, value in result.figures("").items()}
        figures["member CPU µs/req"] = member_cpu[mode] / max(1, result.requests) * 1e6
        figures["front CPU µs/req"] = front_cpu[mode] / max(1, result.requests) * 1e6
        columns[mode] = figures
    return columns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per load (default 5)")
    parser.add_argument("--clients", default="1,4,32", help="client counts, comma-separated (default 1,4,32)")
    parser.add_argument(
        "--modes", default="member-process,member-thread", help=f"modes besides direct, of {', '.join(MODES)}"
    )
    parser.add_argument("--front", nargs=3, metavar=("MODE", "PUBLIC", "PRIVATE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.front:
        run_front(args.front[0], int(args.front[1]), int(args.front[2]))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below: kill members and fronts
    modes = [m for m in args.modes.split(",") if m]
    if any(m not in MODES for m in modes):
        parser.error(f"modes are {', '.join(MODES)}")
    client_counts = [int(c) for c in args.clients.split(",")]
    print(f"load average before: {loadavg()}  ({time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC)")
    fronts: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    with tempfile.TemporaryDirectory(prefix="client-port-bench-") as tmp:
        direct = ServerProcess("etcdpy", Path(tmp) / "direct", extra_args=["--experimental-client-front=off"])
        members = [direct]
        try:
            direct.start()
            assert direct.proc is not None
            targets = {"direct": Target(direct.client_port, direct.proc.pid, None)}
            for mode, flags in MEMBER_MODES.items():
                if mode in modes:
                    member = ServerProcess("etcdpy", Path(tmp) / mode, extra_args=flags)
                    members.append(member)
                    member.start()
                    assert member.proc is not None
                    wait_for_workers(member.data_dir, WORKERS if mode == "member-workers" else 0)
                    print(f"{mode}: HTTP/1.1 answered: {check_http_answer(member.client_port)}")
                    # Read after an answer: the splicer process (if any) runs by now.
                    targets[mode] = Target(member.client_port, member.proc.pid, splicer_pid(member.proc.pid))
            for mode in modes:
                if mode in PROCESS_MODES:
                    proc, port = fronts[mode] = start_front(mode, direct.client_port)
                    targets[mode] = Target(port, direct.proc.pid, proc.pid)
                    print(f"front {mode}: HTTP/1.1 answered 501: {check_http_answer(port)}")
            for clients in client_counts:
                columns = measure(targets, direct.client_port, clients, args.seconds)
                print(f"\n{clients} client(s), serializable Range of one key, {args.seconds:g} s per load:")
                print(report(columns))
                reference = columns["direct"]["req/s"]
                for mode in modes:
                    mine = columns[mode]["req/s"]
                    assert isinstance(mine, float) and isinstance(reference, float)
                    ratio = mine / reference
                    ok = ratio >= BOUND
                    print(
                        f"{mode} x{clients}: {ratio:.3f} of direct's req/s: "
                        f"{'meets' if ok else 'MISSES'} the bound (>= {BOUND})"
                    )
            print(f"\nload average after: {loadavg()}")
        finally:
            for proc, _ in fronts.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            for member in members:
                member.stop()


if __name__ == "__main__":
    main()
