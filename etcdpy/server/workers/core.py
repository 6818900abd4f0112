"""The core's side of the client workers: the calls channel server and the workers' supervisor.

`CallServer` listens on a Unix socket of the data dir; each worker holds one connection to it and
forwards the unary calls its clients make (`calls.py` has the frames).  The core decodes each request
once, calls the member's own servicer (the very handler object grpcio and the JSON gateway call, with
a `CallContext` carrying the call's metadata and client address), and writes back the encoded
response or the status the handler aborted with.  Replies produced in one turn of the event loop leave
in one write.  The grpc_server_* metrics of these calls are counted here, as grpcio's interceptor
counts the calls it serves.

`WorkerPool` starts the worker processes (``python -m etcdpy.server.workers.worker``), starts a new one
when one dies (a worker holds no state: its clients reconnect, and what it had forwarded is answered
or lost with its connection, never half-applied), and stops them before the core's own grpcio stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pool, message, message_factory

from etcdpy.server.services import Service
from etcdpy.server.services.context import Aborted, CallContext, Metadatum, unexpected
from etcdpy.server.services.grpc_metrics import GrpcMetrics, MethodMetrics
from etcdpy.server.workers.calls import (
    CANCEL,
    METHODS,
    FrameBuffer,
    decode_call,
    decode_metadata,
    encode_reply,
)

log = logging.getLogger("etcdpy.server.workers")

RESTART_DELAY_SECONDS = (0.1, 0.5, 1.0, 2.0)  # after the 1st, 2nd... death in a row; then the last
MAX_QUICK_DEATHS = 20  # in a row: a worker that cannot start is a bug to see, not a loop to spin in
STEADY_SECONDS = 10.0  # a worker that served this long before it died starts the delays over
STOP_SECONDS = 5.0  # beyond the workers' grace: then they are killed
UNDECODABLE = "Exception deserializing request!"  # grpcio's answer to a request it cannot parse


@dataclass(frozen=True)
class Route:
    """What serves one method number: the member's handler, the request class, the method's series."""

    path: str
    handler: Any
    request_class: type[message.Message]
    metrics: MethodMetrics | None


class CallServer:
    """Serves the calls the workers forward with the member's `services`."""

    def __init__(self, services: Sequence[Service], grpc_metrics: GrpcMetrics | None) -> None:
        served = {service.name: service.handlers for service in services}
        pool = descriptor_pool.Default()
        self.routes: list[Route | None] = []
        for method in METHODS:
            handlers = served.get(method.service)
            if not method.unary or handlers is None:
                self.routes.append(None)
                continue
            input_type = pool.FindMethodByName(f"{method.service}.{method.name}").input_type
            self.routes.append(
                Route(
                    method.path,
                    getattr(handlers, method.name),
                    message_factory.GetMessageClass(input_type),
                    grpc_metrics.method(method.path) if grpc_metrics is not None else None,
                )
            )
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[_WorkerConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, path: str) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _WorkerConnection(self), path)

    async def close(self) -> None:
        """Stop listening, drop the workers' connections; calls still running finish unanswered."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_SECONDS)

    def dispatch(self, connection: _WorkerConnection, frame: bytes) -> None:
        call_id, number, peer, metadata, payload = decode_call(frame)
        if number == CANCEL:  # the client gave up: stop its handler, as grpcio does
            running = connection.calls.pop(call_id, None)
            if running is not None:
                running.cancel()
            return
        route = self.routes[number] if number < len(self.routes) else None
        if route is None:
            connection.send(encode_reply(call_id, grpc.StatusCode.UNIMPLEMENTED.value[0], "", b""))
            return
        m = route.metrics
        if m is not None:
            m.started.inc()
            m.received.inc()
        try:
            request = route.request_class.FromString(payload)
        except message.DecodeError:
            self._answer(connection, call_id, m, time.perf_counter(), grpc.StatusCode.INTERNAL, UNDECODABLE)
            return
        context = CallContext(tuple(Metadatum(k, v) for k, v in decode_metadata(metadata)), peer)
        serving = self._serve(connection, call_id, route, request, context)
        task = asyncio.get_running_loop().create_task(serving)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        connection.calls[call_id] = task
        task.add_done_callback(lambda _: connection.calls.pop(call_id, None))

    async def _serve(
        self, connection: _WorkerConnection, call_id: int, route: Route, request: Any, context: CallContext
    ) -> None:
        began = time.perf_counter()
        try:
            response = await route.handler(request, context)
        except asyncio.CancelledError:
            self._answer(connection, call_id, route.metrics, began, grpc.StatusCode.CANCELLED, "")
            raise
        except Aborted as aborted:
            self._answer(connection, call_id, route.metrics, began, aborted.code, aborted.details)
            return
        except Exception as exc:  # grpc answers UNKNOWN for any exception; so does the channel
            failed = unexpected(exc, route.path)
            self._answer(connection, call_id, route.metrics, began, failed.code, failed.details)
            return
        if route.metrics is not None:
            route.metrics.sent.inc()
        encoded = response.SerializeToString()
        self._answer(connection, call_id, route.metrics, began, grpc.StatusCode.OK, "", encoded)

    @staticmethod
    def _answer(
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


class _WorkerConnection(asyncio.Protocol):
    """One worker's connection: frames in, replies out (those of one loop turn in one write)."""

    def __init__(self, server: CallServer) -> None:
        self.server = server
        self.frames = FrameBuffer()
        self.transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self.calls: dict[int, asyncio.Task[None]] = {}  # by call id, while its handler runs

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        self.transport = None
        self._out.clear()
        for running in list(self.calls.values()):  # the worker is gone, and its clients' calls with it
            running.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.frames.feed(data)
        except ValueError as exc:
            log.error("a client worker sent a bad frame (%s): dropping its connection", exc)
            self.close()
            return
        for frame in frames:
            self.server.dispatch(self, frame)

    def send(self, frame: bytes) -> None:
        if self.transport is None:
            return  # the worker is gone: its client sees its connection end
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(frame)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.transport is not None and out:
            self.transport.write(b"".join(out))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker is started with."""

    channel_path: str  # the CallServer's socket
    grpc_path: str  # the core's grpcio, for the calls a worker proxies (streams, grpc.health.v1)
    max_receive_bytes: int
    max_concurrent_streams: int


class WorkerPool:
    """Keeps one worker process running per socket path in `socket_paths`."""

    def __init__(self, settings: WorkerSettings, socket_paths: Sequence[str]) -> None:
        self.settings = settings
        self.socket_paths = list(socket_paths)
        self._stopping = False
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.started = 0  # processes started, restarts included

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._keep(index), name=f"etcdpy-worker-{index}")
            for index in range(len(self.socket_paths))
        ]

    def pids(self) -> list[int]:
        return [process.pid for process in self._processes.values() if process.returncode is None]

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
        ]

    async def _keep(self, index: int) -> None:
        deaths = 0
        while not self._stopping:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_paths[index])  # a killed worker's: the splicer skips it until then
            began = time.monotonic()
            process = await asyncio.create_subprocess_exec(*self._command(index))
            self.started += 1
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
