"""The core's side of the client workers: the calls channel server and the workers' supervisor.

`CallServer` listens on a Unix socket of the data dir; each worker holds one connection to it and
forwards the calls its clients make, unary ones and streams (`calls.py` has the frames).  The core
decodes each request once, calls the member's own servicer (the very handler object grpcio and the
JSON gateway call, with a `CallContext` carrying the call's metadata and client address), and writes
back the encoded response (or a stream's responses, within the stream's window: watch responses the
hub encoded once go out as they are) or the status the handler aborted with.  Replies produced in
one turn of the event loop leave in one write.  The grpc_server_* metrics of these calls are counted
here, as grpcio's interceptor counts the calls it serves.

`WorkerPool` starts the worker processes (``python -m etcdpy.server.workers.worker``), starts a new one
when one dies (a worker holds no state: its clients reconnect, and what it had forwarded is answered
or lost with its connection, never half-applied), and stops them before the core's own grpcio stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pool, message, message_factory

from etcdpy.server.services import Service
from etcdpy.server.services.context import UNDECODABLE, Aborted, CallContext, Metadatum, unexpected
from etcdpy.server.services.grpc_metrics import GrpcMetrics, MethodMetrics
from etcdpy.server.tls import TLSInfo
from etcdpy.server.workers.calls import (
    CANCEL,
    COMMON_NAME_KEY,
    CREDIT,
    FIRST_CONTROL,
    HALF_CLOSE,
    MESSAGE,
    METHODS,
    STREAM_MESSAGE,
    WINDOW,
    FrameBuffer,
    FrameWriter,
    Method,
    decode_call,
    decode_credit,
    decode_metadata,
    encode_reply,
)

log = logging.getLogger("etcdpy.server.workers")

RESTART_DELAY_SECONDS = (0.1, 0.5, 1.0, 2.0)  # after the 1st, 2nd... death in a row; then the last
MAX_QUICK_DEATHS = 20  # in a row: a worker that cannot start is a bug to see, not a loop to spin in
STEADY_SECONDS = 10.0  # a worker that served this long before it died starts the delays over
STOP_SECONDS = 5.0  # beyond the workers' grace: then they are killed


@dataclass(frozen=True)
class Route:
    """What serves one method number: the member's handler and the request class."""

    method: Method
    handler: Any
    request_class: type[message.Message]


class _Stream:
    """The core's end of one forwarded stream: the requests the worker sent, the response credit left."""

    def __init__(self) -> None:
        self.requests: asyncio.Queue[bytes | None] = asyncio.Queue()  # None: the client half-closed
        self.credit = WINDOW
        self.credited = asyncio.Event()

    def grant(self, granted: int) -> None:
        self.credit += granted
        self.credited.set()

    async def spend(self, size: int) -> None:
        """Wait until `size` response bytes fit in the window (a larger one waits for a full window)."""
        while self.credit < min(size, WINDOW):
            self.credited.clear()
            await self.credited.wait()
        self.credit -= size


class CallServer:
    """Serves the calls the workers forward with the member's `services`."""

    def __init__(self, services: Sequence[Service], grpc_metrics: GrpcMetrics | None) -> None:
        served = {service.name: service.handlers for service in services}
        pool = descriptor_pool.Default()
        self.routes: list[Route | None] = []
        for method in METHODS:
            handlers = served.get(method.service)
            if handlers is None:
                self.routes.append(None)
                continue
            input_type = pool.FindMethodByName(f"{method.service}.{method.name}").input_type
            self.routes.append(
                Route(method, getattr(handlers, method.name), message_factory.GetMessageClass(input_type))
            )
        # Each method's series are made at its first call, as grpcio's interceptor makes them (etcd
        # lists Lock's and Election's only once called).
        self._grpc_metrics = grpc_metrics
        self._server: asyncio.AbstractServer | None = None
        self.path = ""  # the socket it listens on, once started
        self._connections: set[_WorkerConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, path: str) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _WorkerConnection(self), path)
        self.path = path

    async def close(self) -> None:
        """Stop listening, drop the workers' connections; their calls still running are cancelled."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_SECONDS)

    def dispatch(self, connection: _WorkerConnection, frame: bytes) -> None:
        call_id, number, peer, metadata, payload = decode_call(frame)
        if number >= FIRST_CONTROL:
            self._control(connection, call_id, number, payload)
            return
        route = self.routes[number] if number < len(self.routes) else None
        if route is None:
            connection.send(encode_reply(call_id, grpc.StatusCode.UNIMPLEMENTED.value[0], "", b""))
            return
        m = self._grpc_metrics.method(route.method.path) if self._grpc_metrics is not None else None
        if m is not None:
            m.started.inc()
        context = _context(metadata, peer)
        stream: _Stream | None = None
        if not route.method.unary:
            stream = connection.streams[call_id] = _Stream()
        serving = self._serve(connection, call_id, route, m, payload, stream, context)
        task = asyncio.get_running_loop().create_task(serving)
        self._tasks.add(task)
        connection.calls[call_id] = task

        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            if connection.calls.get(call_id) is task:
                del connection.calls[call_id]
                connection.streams.pop(call_id, None)

        task.add_done_callback(done)

    @staticmethod
    def _control(connection: _WorkerConnection, call_id: int, control: int, payload: bytes) -> None:
        if control == CANCEL:
            running = connection.calls.get(call_id)
            if running is not None:
                running.cancel()  # answered by no one: the worker has dropped the call already
            return
        stream = connection.streams.get(call_id)
        if stream is None:
            return  # the stream ended meanwhile
        if control == MESSAGE:
            stream.requests.put_nowait(payload)
        elif control == HALF_CLOSE:
            stream.requests.put_nowait(None)
        elif control == CREDIT:
            stream.grant(decode_credit(payload))

    async def _serve(
        self,
        connection: _WorkerConnection,
        call_id: int,
        route: Route,
        m: MethodMetrics | None,
        payload: bytes,
        stream: _Stream | None,
        context: CallContext,
    ) -> None:
        """Serve one call (a unary one from `payload`, else the `stream`) and answer how it ended: OK
        with its response (a stream's carries none), or the status it ended with."""
        began = time.perf_counter()
        try:
            if stream is None:
                response = await route.handler(self._decode(route, m, payload), context)
                if m is not None:
                    m.sent.inc()
                encoded: bytes = response.SerializeToString()
            else:
                encoded = await self._stream(connection, call_id, route, m, stream, context)
        except Aborted as aborted:
            self._end(connection, call_id, m, began, aborted.code, aborted.details)
            return
        except asyncio.CancelledError:  # the worker's client gave up on the call
            if m is not None:
                m.ended(grpc.StatusCode.CANCELLED, began)
            raise
        except Exception as exc:  # grpc answers UNKNOWN for any exception; so does the channel
            failed = unexpected(exc, route.method.path)
            self._end(connection, call_id, m, began, failed.code, failed.details)
            return
        self._end(connection, call_id, m, began, grpc.StatusCode.OK, "", encoded)

    async def _stream(
        self,
        connection: _WorkerConnection,
        call_id: int,
        route: Route,
        m: MethodMetrics | None,
        stream: _Stream,
        context: CallContext,
    ) -> bytes:
        """A stream's responses, sent within its window as its requests come in frames; the end carries
        no response (b"")."""
        responses: Any = None
        try:
            if route.method.client_streaming:
                responses = route.handler(self._requests(route, m, stream), context)
            else:
                first = await stream.requests.get()
                if first is None:
                    raise Aborted(grpc.StatusCode.INTERNAL, "the stream ended before its request")
                responses = route.handler(self._decode(route, m, first), context)
            if not hasattr(responses, "__aiter__"):
                await responses  # a method the servicer does not stream (UNIMPLEMENTED): it aborts
                responses = None
            else:
                async for response in responses:
                    encoded = response if isinstance(response, bytes) else response.SerializeToString()
                    await stream.spend(len(encoded))
                    if m is not None:
                        m.sent.inc()
                    connection.send(encode_reply(call_id, STREAM_MESSAGE, "", encoded))
        finally:
            closing = getattr(responses, "aclose", None)
            if closing is not None:
                await closing()
        return b""

    @staticmethod
    def _decode(route: Route, m: MethodMetrics | None, payload: bytes) -> Any:
        if m is not None:
            m.received.inc()
        try:
            return route.request_class.FromString(payload)
        except message.DecodeError as exc:
            raise Aborted(grpc.StatusCode.INTERNAL, UNDECODABLE + str(exc)) from None

    async def _requests(self, route: Route, m: MethodMetrics | None, stream: _Stream) -> AsyncIterator[Any]:
        while (payload := await stream.requests.get()) is not None:
            yield self._decode(route, m, payload)

    @staticmethod
    def _end(
        connection: _WorkerConnection,
        call_id: int,
        m: MethodMetrics | None,
        began: float,
        code: grpc.StatusCode,
        details: str,
        response: bytes = b"",
    ) -> None:
        if m is not None:
            m.ended(code, began)
        connection.send(encode_reply(call_id, code.value[0], details, response))


def _context(metadata: bytes, peer: str) -> CallContext:
    """The call's context: its metadata, its client, the common name its worker verified (if any)."""
    pairs = []
    common_name: str | None = None
    for key, value in decode_metadata(metadata):
        if key == COMMON_NAME_KEY:
            common_name = value if isinstance(value, str) else value.decode()
        else:
            pairs.append(Metadatum(key, value))
    return CallContext(tuple(pairs), peer, common_name)


class _WorkerConnection(asyncio.Protocol):
    """One worker's connection: frames in, replies out (those of one loop turn in one write)."""

    def __init__(self, server: CallServer) -> None:
        self.server = server
        self.frames = FrameBuffer()
        self.writer = FrameWriter()  # replies; after the worker is gone, dropped (its clients saw it go)
        self.calls: dict[int, asyncio.Task[None]] = {}  # call id -> its handler, while it runs
        self.streams: dict[int, _Stream] = {}  # call id -> the stream's state, while it runs
        self.send = self.writer.send

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.writer.attach(transport)
        self.server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """The worker is gone, and its clients' connections with it: their calls are cancelled."""
        self.server._connections.discard(self)
        self.writer.detach()
        for task in list(self.calls.values()):
            task.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.frames.feed(data)
        except ValueError as exc:
            log.error("a client worker sent a bad frame (%s): dropping its connection", exc)
            self.close()
            return
        for frame in frames:
            self.server.dispatch(self, frame)

    def close(self) -> None:
        if self.writer.transport is not None:
            self.writer.transport.close()


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker is started with."""

    channel_path: str  # the CallServer's socket
    grpc_path: str  # the core's grpcio, for the calls a worker proxies (grpc.health.v1)
    max_receive_bytes: int
    max_concurrent_streams: int
    tls: TLSInfo | None = None  # the client URLs' TLS: the worker's grpcio serves it, checks included
    log_level: str = "WARNING"  # the member's (a logging level name): workers log to its stderr


class WorkerPool:
    """Keeps one worker process running per socket path in `socket_paths`."""

    def __init__(self, settings: WorkerSettings, socket_paths: Sequence[str]) -> None:
        self.settings = settings
        self.socket_paths = list(socket_paths)
        self._stopping = False
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._keep(index), name=f"etcdpy-worker-{index}")
            for index in range(len(self.socket_paths))
        ]

    def _command(self, index: int) -> list[str]:
        s = self.settings
        return [
            sys.executable,
            "-m",
            "etcdpy.server.workers.worker",
            "--index",
            str(index),
            "--socket",
            self.socket_paths[index],
            "--channel",
            s.channel_path,
            "--grpc",
            s.grpc_path,
            "--max-receive-bytes",
            str(s.max_receive_bytes),
            "--max-concurrent-streams",
            str(s.max_concurrent_streams),
            "--log-level",
            s.log_level,
            *(["--tls", json.dumps(dataclasses.asdict(s.tls))] if s.tls is not None else []),
        ]

    async def _keep(self, index: int) -> None:
        deaths = 0
        while not self._stopping:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_paths[index])  # a killed worker's: the splicer skips it until then
            began = time.monotonic()
            process = await asyncio.create_subprocess_exec(*self._command(index))
            self._processes[index] = process
            code = await process.wait()
            if self._stopping:
                return
            deaths = 0 if time.monotonic() - began > STEADY_SECONDS else deaths + 1
            if deaths > MAX_QUICK_DEATHS:
                log.critical(
                    "client worker %d keeps ending (last: %s): not restarted; the member serves its share",
                    index,
                    code,
                )
                return
            delay = RESTART_DELAY_SECONDS[min(deaths, len(RESTART_DELAY_SECONDS)) - 1] if deaths else 0.0
            log.error("client worker %d (pid %d) ended with %s: starting another", index, process.pid, code)
            await asyncio.sleep(delay)

    async def stop(self, grace_seconds: float) -> None:
        """Ask every worker to stop (they finish their calls within `grace_seconds`), then kill the rest."""
        self._stopping = True
        running = [p for p in self._processes.values() if p.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        if running:
            _, late = await asyncio.wait(
                [asyncio.ensure_future(p.wait()) for p in running], timeout=grace_seconds + STOP_SECONDS
            )
            for process in running:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            if late:
                await asyncio.wait(late)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        for process in self._processes.values():  # one started while the signals went out
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        for path in self.socket_paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
