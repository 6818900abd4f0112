"""Splicer: accepts on the public client sockets, tells gRPC from HTTP/1.1, splices gRPC to grpcio.

Threads only, no asyncio: it runs inside the member (`Front` in thread mode) or as a process of its
own (``python -m etcdpy.server.http.splicer``, `Front` in process mode), where its threads never wait
for the member's GIL.  For each accepted connection a thread peeks at the first bytes:

* plain: ``PRI`` (the HTTP/2 client preface, ``PRI * HTTP/2.0``) means gRPC; anything else HTTP/1.1;
* TLS (the first byte a handshake record's): the ClientHello's ALPN extension, read in the clear
  (`clienthello.offered_alpn`): ``h2`` means gRPC, the TLS bytes going on to grpcio untouched (it
  listens with the same certificates, so the session and client certificate stay end to end);
  anything else is HTTP/1.1 over TLS, which the member terminates.

A gRPC connection is joined to a fresh connection to grpcio's Unix socket and its bytes move with
`os.splice` through a pipe each way, one thread per direction blocked in the kernel: no Python code
touches a frame.  grpcio's peer is then this Unix socket, which is bound to an abstract name that
carries the client's address: `client_peer` reads it back from grpcio's peer.  An HTTP/1.1
connection is handed to `hand_http` (the member's event loop, directly or over a Unix socket).

Bounds: the first bytes must arrive within `FIRST_BYTES_SECONDS`; a full descriptor table pauses
accepting briefly instead of spinning.

With client workers (`etcdpy.server.workers`), gRPC connections go to the workers' sockets in turn,
skipping one that does not answer (being replaced), and to grpcio's own when none does.

As a process: ``splicer --grpc PATH --handoff FD --listeners FD[,FD...] [--tls] [--workers P,...]``;
the listening sockets and one end of a Unix socket pair are inherited from the member.  Each HTTP connection's
descriptor goes back over the pair (SCM_RIGHTS); the process exits when the member closes its end
(or dies), taking its spliced connections with it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import itertools
import logging
import os
import signal
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence

from etcdpy.server.http import clienthello

log = logging.getLogger("etcdpy.server.http")

H2_PREFACE_START = b"PRI"  # no HTTP/1.1 method starts so; three bytes tell them apart
FIRST_BYTES_SECONDS = 10.0  # a connection that says nothing for this long is closed
SPLICE_CHUNK = 1 << 16
ACCEPT_BACKOFF_SECONDS = 0.05  # out of descriptors: wait for some to be freed, do not spin
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
THREAD_STACK_BYTES = 256 * 1024  # the splicer process's threads only loop over splice calls
SPLICED_PEER = "unix-abstract:etcdpy/"  # grpcio's peer of a spliced connection: see `client_peer`
_spliced = itertools.count()


def _name_backend(backend: socket.socket, conn: socket.socket) -> None:
    """Bind the Unix socket to grpcio to an abstract name ending in the client's address, as grpc
    writes a TCP peer (unique: this process's ID and a counter before it); unnamed if it cannot be."""
    try:
        host, port = conn.getpeername()[:2]
    except OSError:
        return
    address = f"ipv6:[{host}]:{port}" if conn.family == socket.AF_INET6 else f"ipv4:{host}:{port}"
    with contextlib.suppress(OSError):
        backend.bind(f"\0etcdpy/{os.getpid()}/{next(_spliced)}/{address}")


def client_peer(peer: str) -> str:
    """The client's address (``ipv4:127.0.0.1:5555``) for grpcio's peer of a spliced connection; any
    other peer as it is."""
    if not peer.startswith(SPLICED_PEER):
        return peer
    return urllib.parse.unquote(peer).rsplit("/", 1)[1]


class Splicer:
    """Accept threads over `listeners`; gRPC spliced to `grpc_path` (None: HTTP only), HTTP to `hand_http`."""

    def __init__(
        self,
        listeners: Sequence[socket.socket],
        *,
        grpc_path: str | None,
        hand_http: Callable[[socket.socket], None],
        tls: bool = False,
        worker_paths: Sequence[str] = (),
    ) -> None:
        self.listeners = list(listeners)
        self.grpc_path = grpc_path
        self.worker_paths = list(worker_paths)
        self._turns = itertools.count()
        self.hand_http = hand_http
        self.tls = tls
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()  # spliced sockets (both legs) still open
        self._stopped = False

    def start(self) -> None:
        for listener in self.listeners:
            name = f"etcdpy-front-{listener.getsockname()[1]}"
            threading.Thread(target=self._accept, args=(listener,), name=name, daemon=True).start()

    def stop_accepting(self) -> None:
        """Close the listeners (in-flight connections go on)."""
        self._stopped = True
        for listener in self.listeners:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept thread (Linux)
            listener.close()

    def close_spliced(self) -> None:
        """End every spliced connection still open (its threads see the end and exit)."""
        with self._lock:
            still_open, self._open = self._open, set()
        for sock in still_open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped:
            try:
                conn, _ = listener.accept()
            except OSError as exc:
                if self._stopped or exc.errno in (errno.EINVAL, errno.EBADF):
                    return
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("client listener: %s; accepting again shortly", exc)
                    time.sleep(ACCEPT_BACKOFF_SECONDS)
                continue
            threading.Thread(target=self._serve, args=(conn,), name="etcdpy-front-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        """Classify one connection; splice it (gRPC: this thread pumps one direction) or hand it on."""
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(FIRST_BYTES_SECONDS)
            grpc = self._is_grpc(conn)
        except (OSError, clienthello.NotClientHello) as exc:
            log.debug("client connection dropped before it said what it speaks: %s", exc)
            conn.close()
            return
        if grpc is None:
            conn.close()
        elif grpc:
            self._splice(conn)
        else:
            conn.settimeout(None)
            self.hand_http(conn)

    def _is_grpc(self, conn: socket.socket) -> bool | None:
        """True for gRPC, False for HTTP/1.1, None for a connection closed before its first bytes."""
        first = conn.recv(len(H2_PREFACE_START), socket.MSG_PEEK | socket.MSG_WAITALL)
        if not first:
            return None
        if not self.tls:
            if clienthello.looks_like_tls(first):
                # A TLS client on a plaintext listener: neither protocol here; closed at once, as etcd's
                # listener (cmux) does with what it cannot match, so the client learns it quickly.
                raise clienthello.NotClientHello("a TLS handshake on a plaintext listener")
            return self.grpc_path is not None and first == H2_PREFACE_START
        if not clienthello.looks_like_tls(first):
            raise clienthello.NotClientHello("plain bytes on a TLS listener")
        return self.grpc_path is not None and "h2" in peek_alpn(conn)

    def _track(self, *socks: socket.socket) -> bool:
        with self._lock:
            if self._stopped:
                return False
            self._open.update(socks)
            return True

    def _untrack(self, *socks: socket.socket) -> None:
        with self._lock:
            for sock in socks:
                self._open.discard(sock)
                sock.close()

    def _backends(self) -> list[str]:
        """Where a gRPC connection may go, in order: the workers from the next one's turn on, then grpcio."""
        assert self.grpc_path is not None
        workers = self.worker_paths
        if not workers:
            return [self.grpc_path]
        turn = next(self._turns) % len(workers)
        return [*workers[turn:], *workers[:turn], self.grpc_path]

    def _connect(self, conn: socket.socket) -> socket.socket | None:
        """A connection to the first backend that takes it (a worker being replaced does not)."""
        failure: OSError | None = None
        for path in self._backends():
            backend = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            _name_backend(backend, conn)
            try:
                backend.connect(path)
            except OSError as exc:
                backend.close()
                failure = exc
                continue
            return backend
        log.warning("cannot reach grpc at %s: %s", self.grpc_path, failure)
        return None

    def _splice(self, conn: socket.socket) -> None:
        conn.settimeout(None)
        backend = self._connect(conn)
        if backend is None:
            conn.close()
            return
        if not self._track(conn, backend):
            self._untrack(conn, backend)
            return
        back = threading.Thread(target=pump, args=(backend, conn), name="etcdpy-front-splice", daemon=True)
        back.start()
        pump(conn, backend)
        back.join()
        self._untrack(conn, backend)


def peek_alpn(conn: socket.socket) -> tuple[str, ...]:
    """The ALPN protocols of the ClientHello the connection starts with, peeked (left in the socket)."""
    wanted = clienthello.RECORD_HEADER
    while True:
        data = conn.recv(wanted, socket.MSG_PEEK | socket.MSG_WAITALL)
        if len(data) < wanted:
            raise clienthello.NotClientHello("the connection closed inside its ClientHello")
        offered = clienthello.offered_alpn(data)
        if offered is not None:
            return offered
        wanted = _next_record_end(data)


def _next_record_end(data: bytes) -> int:
    """How many bytes hold the records `data` has begun (a record's header tells its length)."""
    pos = 0
    while pos + clienthello.RECORD_HEADER <= len(data):
        pos += clienthello.RECORD_HEADER + int.from_bytes(data[pos + 3 : pos + 5], "big")
    if pos > clienthello.MAX_CLIENT_HELLO:
        raise clienthello.NotClientHello("ClientHello too large")
    return pos if pos > len(data) else pos + clienthello.RECORD_HEADER


def pump(src: socket.socket, dst: socket.socket) -> None:
    """Move bytes src -> dst through a pipe with os.splice until src ends, then half-close dst."""
    read_end, write_end = os.pipe()
    try:
        src_fd, dst_fd = src.fileno(), dst.fileno()
        while True:
            moved = os.splice(src_fd, write_end, SPLICE_CHUNK)
            if moved == 0:
                break
            while moved:
                moved -= os.splice(read_end, dst_fd, moved)
    except OSError:
        pass  # either side reset or closed: the other direction sees it too
    finally:
        os.close(read_end)
        os.close(write_end)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def die_with_parent() -> None:
    """Ask the kernel to kill this process when the member dies (Linux's PR_SET_PDEATHSIG).

    For the splicer, the end of the hand-off socket tells the same, but only once this process is
    scheduled to read it; a member restarted at once must find its port free, so the kernel ends the
    splicer as part of the member's own exit.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())


def main(argv: Sequence[str] | None = None) -> None:
    """The splicer as a process of its own: serve until the member closes the hand-off socket."""
    parser = argparse.ArgumentParser(prog="etcdpy-splicer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--grpc", required=True, help="grpcio's Unix socket")
    parser.add_argument(
        "--handoff", type=int, required=True, help="descriptor: HTTP connections go back here"
    )
    parser.add_argument(
        "--listeners", required=True, help="descriptors of the listening sockets, comma-separated"
    )
    parser.add_argument("--tls", action="store_true", help="the listeners speak TLS")
    parser.add_argument("--workers", default="", help="the client workers' grpcio sockets, comma-separated")
    args = parser.parse_args(argv)
    member = os.getppid()
    for sig in (signal.SIGINT, signal.SIGTERM):  # sent to the whole group (Ctrl-C, systemd): the member
        signal.signal(sig, signal.SIG_IGN)  # stops gracefully and then closes the hand-off socket
    die_with_parent()
    if os.getppid() != member:
        os._exit(0)  # the member died before the death signal was armed
    threading.stack_size(THREAD_STACK_BYTES)  # a thread per connection: small stacks, many connections
    handoff = socket.socket(fileno=args.handoff)
    listeners = [socket.socket(fileno=int(fd)) for fd in args.listeners.split(",")]
    sending = threading.Lock()

    def hand_http(conn: socket.socket) -> None:
        try:
            with sending:
                socket.send_fds(handoff, [b"c"], [conn.fileno()])
        except OSError:
            pass  # the member is gone: so is its HTTP side
        finally:
            conn.close()  # the member holds its own copy now

    workers = [path for path in args.workers.split(",") if path]
    splicer = Splicer(listeners, grpc_path=args.grpc, hand_http=hand_http, tls=args.tls, worker_paths=workers)
    splicer.start()
    with contextlib.suppress(OSError):
        while handoff.recv(1):
            pass  # the member never writes: EOF means it closed its end or died
    os._exit(0)  # daemon threads hold spliced connections: end them all with the process


if __name__ == "__main__":
    main()
