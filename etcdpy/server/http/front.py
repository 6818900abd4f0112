"""Front: the member's side of a public client listener, gRPC and HTTP/1.1 on one port.

grpcio cannot adopt an accepted socket, so grpcio listens on a private Unix socket and the front
owns the public ones (docs/client-port.md).  The `Splicer` (splicer.py) accepts, tells the
protocols apart and splices gRPC connections to grpcio; it runs

* ``process`` (the default for client URLs): as a process of its own, which inherits the listening
  sockets and sends each HTTP/1.1 connection's descriptor back over a Unix socket pair; its threads
  never wait for the member's GIL, and it ends when the member closes the pair or dies (one that dies
  on its own is started again);
* ``thread``: as threads of the member (HTTP-only listeners always run so: they splice nothing).

Either way an HTTP/1.1 connection is served on the member's event loop by `http11.serve_connection`
with the listener's application (or by the listener's own `handler`, as the peer port's streams are),
TLS terminated there with `ssl_context` when the listener has one.
Past `MAX_HTTP_CONNECTIONS` open HTTP connections a new one gets 503 and is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence

from etcdpy.server.http.http11 import HEAD_SECONDS, MAX_HEAD_BYTES, App, serve_connection
from etcdpy.server.http.splicer import Splicer

log = logging.getLogger("etcdpy.server.http")

MAX_HTTP_CONNECTIONS = 4096
MAX_SPLICER_RESTARTS = 100  # a splicer that keeps dying is a bug to see, not a loop to spin in
SERVICE_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\nContent-Length: 26\r\n\r\ntoo many open connections\n"
)


LISTEN_BACKLOG = 1024
# Serves one non-gRPC connection in place of HTTP/1.1 with an App: (reader, writer, peer name).
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, str], Awaitable[None]]


def bind(address: tuple[str, int]) -> socket.socket:
    """A TCP socket bound to `address` (host, port), OSError if the port is in use; it listens once
    its `Front` starts, so the port answers only when everything behind it serves."""
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as create_server: TIME_WAIT is no use
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def peer_name(sock: socket.socket) -> str:
    """The client's address as grpc writes a peer: ``ipv4:127.0.0.1:5555``, ``ipv6:[::1]:5555``."""
    try:
        host, port = sock.getpeername()[:2]
    except OSError:
        return "unknown"
    return f"ipv6:[{host}]:{port}" if sock.family == socket.AF_INET6 else f"ipv4:{host}:{port}"


class Front:
    """Serves `listeners`: gRPC spliced to `grpc_path` (None: HTTP only), HTTP/1.1 by `app` on `loop`.

    With `worker_paths` (client workers' sockets) gRPC connections go to them in turn, `grpc_path` when
    none answers.

    `mode` is "process" or "thread" (see the module docstring); `ssl_context`: the listeners speak TLS;
    `handler`, given instead of `app`, serves the non-gRPC connections itself.
    """

    def __init__(
        self,
        listeners: Sequence[socket.socket],
        *,
        app: App | None = None,
        handler: Handler | None = None,
        loop: asyncio.AbstractEventLoop,
        grpc_path: str | None,
        mode: str = "thread",
        ssl_context: ssl.SSLContext | None = None,
        worker_paths: Sequence[str] = (),
    ) -> None:
        assert mode in ("process", "thread"), mode
        self.listeners = list(listeners)
        assert (app is None) != (handler is None), "an app or a handler"
        self.app = app
        self.handler = handler
        self.loop = loop
        self.grpc_path = grpc_path
        self.mode = mode if grpc_path is not None else "thread"
        self.ssl_context = ssl_context
        self.worker_paths = list(worker_paths)  # client workers' grpcio sockets, ahead of `grpc_path`
        self._http_tasks: set[asyncio.Task[None]] = set()  # touched on the loop only
        self._http_count = 0  # open HTTP connections, under _lock
        self._lock = threading.Lock()
        self._stopped = False
        self._splicer: Splicer | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._handoff: socket.socket | None = None
        self._restarts = 0

    def start(self) -> None:
        """Start accepting: the splicer's threads, or its process (which inherits the listening sockets)."""
        tls = self.ssl_context is not None
        for listener in self.listeners:
            listener.listen(LISTEN_BACKLOG)
        if self.mode == "thread":
            self._splicer = Splicer(
                self.listeners,
                grpc_path=self.grpc_path,
                hand_http=self._from_thread,
                tls=tls,
                worker_paths=self.worker_paths,
            )
            self._splicer.start()
            return
        self._spawn_splicer()

    def _spawn_splicer(self) -> None:
        """Start the splicer process on (inherited copies of) the listening sockets."""
        assert self.grpc_path is not None
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fds = [listener.fileno() for listener in self.listeners]
        command = [sys.executable, "-m", "etcdpy.server.http.splicer", "--grpc", self.grpc_path]
        command += ["--handoff", str(theirs.fileno()), "--listeners", ",".join(map(str, fds))]
        if self.ssl_context is not None:
            command.append("--tls")
        if self.worker_paths:
            command += ["--workers", ",".join(self.worker_paths)]
        self._process = subprocess.Popen(command, pass_fds=[theirs.fileno(), *fds])
        theirs.close()  # the listeners stay open here too: shutting them down ends the splicer's accepts
        mine.setblocking(False)
        self._handoff = mine
        self.loop.add_reader(mine.fileno(), self._from_process)

    def stop_accepting(self) -> None:
        """No new connections; the HTTP ones end. Spliced gRPC ones go on (grpcio's grace)."""
        self._stopped = True
        if self._splicer is not None:
            self._splicer.stop_accepting()
        else:
            for listener in self.listeners:
                with contextlib.suppress(OSError):
                    listener.shutdown(socket.SHUT_RDWR)  # the same socket as the splicer's: its accept ends
                listener.close()
        for task in list(self._http_tasks):
            task.cancel()

    async def stop(self) -> None:
        """Stop accepting, end every HTTP connection and every spliced gRPC one still open."""
        self.stop_accepting()
        if self._http_tasks:
            await asyncio.wait(self._http_tasks)
        if self._splicer is not None:
            self._splicer.close_spliced()
        if self._handoff is not None:
            self.loop.remove_reader(self._handoff.fileno())
            self._handoff.close()  # the splicer process sees the end and exits
            self._handoff = None
        if self._process is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(self._process.wait), 5.0)
            except TimeoutError:
                self._process.kill()
                await asyncio.to_thread(self._process.wait)

    def _from_process(self) -> None:
        """Descriptors of HTTP connections the splicer process accepted (one message each)."""
        assert self._handoff is not None
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self._handoff, 16, 16)
            except BlockingIOError:
                return
            except OSError as exc:
                self._splicer_gone(str(exc))
                return
            if not data and not fds:
                self._splicer_gone("it closed its end")
                return
            for fd in fds:
                self._admit(socket.socket(fileno=fd))

    def _splicer_gone(self, why: str) -> None:
        """The splicer process ended: unless the member stops, start another (its connections are gone)."""
        if self._handoff is not None:
            self.loop.remove_reader(self._handoff.fileno())
            self._handoff.close()
            self._handoff = None
        if self._stopped:
            return
        code = self._process.poll() if self._process is not None else None
        self._restarts += 1
        if self._restarts > MAX_SPLICER_RESTARTS:
            log.critical(
                "the client port's splicer process ended (%s, exit %s) too often: not restarted", why, code
            )
            return
        log.error("the client port's splicer process ended (%s, exit %s): starting another", why, code)
        self._spawn_splicer()

    def _from_thread(self, conn: socket.socket) -> None:
        try:
            self.loop.call_soon_threadsafe(self._admit, conn)
        except RuntimeError:  # the loop is closed: the member is gone
            conn.close()

    def _admit(self, conn: socket.socket) -> None:
        """Serve an HTTP connection on the loop, or refuse it when too many are open."""
        if self._stopped or self._http_count >= MAX_HTTP_CONNECTIONS:
            if not self._stopped:
                with contextlib.suppress(OSError):
                    conn.setblocking(True)
                    conn.settimeout(1.0)
                    conn.send(SERVICE_UNAVAILABLE)
            conn.close()
            return
        conn.setblocking(False)
        self._http_count += 1
        task = self.loop.create_task(self._serve_http(conn))
        self._http_tasks.add(task)
        task.add_done_callback(self._http_done)

    def _http_done(self, task: asyncio.Task[None]) -> None:
        self._http_tasks.discard(task)
        self._http_count -= 1

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
            if self.handler is not None:
                await self.handler(reader, writer, peer)
            else:
                assert self.app is not None
                await serve_connection(reader, writer, self.app, peer)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            log.debug("HTTP connection from %s ended: %s", peer, exc)
            conn.close()
