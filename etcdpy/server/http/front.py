"""Front: the listener that owns a public client URL and tells gRPC from HTTP/1.1 on each connection.

grpcio cannot adopt an accepted socket, so grpcio listens on a private Unix socket and the front
owns the public ones (docs/client-port.md).  For each connection a thread peeks at the first bytes:

* plain: ``PRI`` (the HTTP/2 client preface, ``PRI * HTTP/2.0``) means gRPC; anything else HTTP/1.1;
* TLS (the first byte a handshake record's): the ClientHello's ALPN extension, read in the clear
  (`clienthello.offered_alpn`): ``h2`` means gRPC, the TLS bytes going on to grpcio untouched (it
  listens with the same certificates, so the session and client certificate stay end to end);
  anything else is HTTP/1.1 over TLS, terminated by the front's `ssl_context`.

A gRPC connection is joined to a fresh connection to grpcio's socket and its bytes move with
`os.splice` through a pipe each way, one thread per direction blocked in the kernel (the GIL is
released while they wait and copy): no Python code touches a frame.  grpcio's peer is then the
front's Unix socket, not the client's address.  An HTTP/1.1 connection goes to the member's event
loop (`http11.serve_connection` with the listener's application).  A listener with no gRPC socket
(``--listen-client-http-urls``, ``--listen-metrics-urls``) serves HTTP/1.1 alone.

Bounds: the first bytes must arrive within `HEAD_SECONDS`; past `MAX_HTTP_CONNECTIONS` open HTTP
connections a new one gets 503 and is closed; a full descriptor table pauses accepting briefly
instead of spinning.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Sequence

from etcdpy.server.http import clienthello
from etcdpy.server.http.http11 import HEAD_SECONDS, MAX_HEAD_BYTES, App, serve_connection

log = logging.getLogger("etcdpy.server.http")

H2_PREFACE_START = b"PRI"  # no HTTP/1.1 method starts so; three bytes tell them apart
MAX_HTTP_CONNECTIONS = 4096
SPLICE_CHUNK = 1 << 16
ACCEPT_BACKOFF_SECONDS = 0.05  # out of descriptors: wait for some to be freed, do not spin
SERVICE_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\nContent-Length: 28\r\n\r\ntoo many open connections\r\n\r\n"
)


def bind(address: tuple[str, int]) -> socket.socket:
    """A listening TCP socket on `address` (host, port); OSError if the port is in use."""
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024, reuse_port=False)


def peer_name(sock: socket.socket) -> str:
    """The client's address as grpc writes a peer: ``ipv4:127.0.0.1:5555``, ``ipv6:[::1]:5555``."""
    try:
        host, port = sock.getpeername()[:2]
    except OSError:
        return "unknown"
    return f"ipv6:[{host}]:{port}" if sock.family == socket.AF_INET6 else f"ipv4:{host}:{port}"


class Front:
    """Accepts on `listeners`; gRPC connections spliced to `grpc_path`, HTTP/1.1 served by `app` on `loop`.

    `grpc_path` None: HTTP/1.1 only.  `ssl_context`: the listeners speak TLS (server side).
    """

    def __init__(
        self,
        listeners: Sequence[socket.socket],
        *,
        app: App,
        loop: asyncio.AbstractEventLoop,
        grpc_path: str | None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.listeners = list(listeners)
        self.app = app
        self.loop = loop
        self.grpc_path = grpc_path
        self.ssl_context = ssl_context
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()  # every accepted socket and grpc leg still open
        self._http_tasks: set[asyncio.Task[None]] = set()  # touched on the loop only
        self._http_count = 0  # open HTTP connections, under _lock
        self._stopped = False

    def start(self) -> None:
        for listener in self.listeners:
            name = f"etcdpy-front-{listener.getsockname()[1]}"
            threading.Thread(target=self._accept, args=(listener,), name=name, daemon=True).start()

    def stop_accepting(self) -> None:
        """Close the listeners and end the HTTP connections; spliced gRPC ones go on (grpcio's grace)."""
        self._stopped = True
        for listener in self.listeners:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept thread (Linux)
            listener.close()
        for task in list(self._http_tasks):
            task.cancel()

    async def stop(self) -> None:
        """Stop accepting, end every HTTP connection and every spliced gRPC one still open."""
        self.stop_accepting()
        if self._http_tasks:
            await asyncio.wait(self._http_tasks)
        with self._lock:
            still_open, self._open = self._open, set()
        for sock in still_open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # the splice threads see the end and close

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
            conn.settimeout(HEAD_SECONDS)
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
            self._hand_to_loop(conn)

    def _is_grpc(self, conn: socket.socket) -> bool | None:
        """True for gRPC, False for HTTP/1.1, None for a connection closed before its first bytes."""
        first = conn.recv(len(H2_PREFACE_START), socket.MSG_PEEK | socket.MSG_WAITALL)
        if not first:
            return None
        if self.ssl_context is None:
            return self.grpc_path is not None and first == H2_PREFACE_START
        if not clienthello.looks_like_tls(first):
            raise clienthello.NotClientHello("plain bytes on a TLS listener")
        return self.grpc_path is not None and "h2" in _peek_alpn(conn)

    def _track(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._stopped:
                return False
            self._open.add(sock)
            return True

    def _untrack(self, *socks: socket.socket) -> None:
        with self._lock:
            for sock in socks:
                self._open.discard(sock)
                sock.close()

    def _splice(self, conn: socket.socket) -> None:
        assert self.grpc_path is not None
        conn.settimeout(None)
        backend = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            backend.connect(self.grpc_path)
        except OSError as exc:
            log.warning("cannot reach grpc at %s: %s", self.grpc_path, exc)
            backend.close()
            conn.close()
            return
        if not (self._track(conn) and self._track(backend)):
            self._untrack(conn, backend)
            return
        back = threading.Thread(target=_pump, args=(backend, conn), name="etcdpy-front-splice", daemon=True)
        back.start()
        _pump(conn, backend)
        back.join()
        self._untrack(conn, backend)

    def _hand_to_loop(self, conn: socket.socket) -> None:
        with self._lock:
            full = self._http_count >= MAX_HTTP_CONNECTIONS
            if not full:
                self._http_count += 1
        if full:
            with contextlib.suppress(OSError):
                conn.sendall(SERVICE_UNAVAILABLE)
            conn.close()
            return
        conn.settimeout(None)
        conn.setblocking(False)
        try:
            self.loop.call_soon_threadsafe(self._start_http, conn)
        except RuntimeError:  # the loop is closed: the member is gone
            self._http_done()
            conn.close()

    def _http_done(self) -> None:
        with self._lock:
            self._http_count -= 1

    def _start_http(self, conn: socket.socket) -> None:
        if self._stopped:
            self._http_done()
            conn.close()
            return
        task = self.loop.create_task(self._serve_http(conn))
        self._http_tasks.add(task)
        task.add_done_callback(self._http_tasks.discard)

    async def _serve_http(self, conn: socket.socket) -> None:
        peer = peer_name(conn)
        try:
            reader = asyncio.StreamReader(limit=MAX_HEAD_BYTES)
            protocol = asyncio.StreamReaderProtocol(reader)
            transport, _ = await self.loop.connect_accepted_socket(
                lambda: protocol,
                conn,
                ssl=self.ssl_context,
                ssl_handshake_timeout=HEAD_SECONDS if self.ssl_context else None,
            )
            writer = asyncio.StreamWriter(transport, protocol, reader, self.loop)
            await serve_connection(reader, writer, self.app, peer)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            log.debug("HTTP connection from %s ended: %s", peer, exc)
            conn.close()
        finally:
            self._http_done()


def _peek_alpn(conn: socket.socket) -> tuple[str, ...]:
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


def _pump(src: socket.socket, dst: socket.socket) -> None:
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
