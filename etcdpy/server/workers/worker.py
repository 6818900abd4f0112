"""A client worker: a process that serves gRPC for the member and forwards the calls to its core.

``python -m etcdpy.server.workers.worker --socket PATH --channel PATH --grpc PATH ...`` (started by
`core.WorkerPool`, never by hand).  It connects to the core's calls channel, then serves grpcio on its
own Unix socket, where the client port's splicer sends some of the gRPC connections.  grpcio's
HTTP/2 work (framing, flow control, the call objects: most of what a call costs) is done here, on
another core than the member's.

* A call of etcd's services is forwarded as its raw request bytes, with its metadata (the auth token)
  and the client's address; the core's reply is returned as raw bytes or aborts the call with the
  core's status.  A stream (Watch, LeaseKeepAlive, Snapshot, Observe) goes the same way, one frame per
  message each way, its responses flow-controlled by credit (`calls.py`).  Nothing is decoded here.
* A call of grpc.health.v1 is proxied to the core's own grpcio on its private socket; a method no
  service has gets grpcio's UNIMPLEMENTED here, as the member's grpcio answers it.
* On an https client URL the worker's grpcio serves TLS with the member's certificates (reloaded as
  they change), refuses what the member's certificate guard refuses (CRL, allowed host name), and
  sends each call's verified client certificate common name with it (auth's user without a token).

The worker ends when the core's channel closes (the member stopped or died: the kernel also ends it
with the member, PR_SET_PDEATHSIG), and on SIGTERM after grpcio's grace for the calls in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import grpc
from grpc_health.v1 import health_pb2

from etcdpy.server.grpc_options import grpc_server_options
from etcdpy.server.http.splicer import client_peer, die_with_parent
from etcdpy.server.tls import CertificateGuard, TLSInfo, client_common_name, server_credentials
from etcdpy.server.workers.calls import (
    CANCEL,
    COMMON_NAME_KEY,
    HALF_CLOSE,
    MESSAGE,
    METHODS,
    STREAM_MESSAGE,
    WINDOW,
    FrameBuffer,
    FrameWriter,
    Method,
    decode_reply,
    encode_call,
    encode_control,
    encode_credit,
    encode_metadata,
)

log = logging.getLogger("etcdpy.server.workers")

GRACE_SECONDS = 2.0  # as the member's grpcio gets for the calls in flight when it stops
STATUS = {code.value[0]: code for code in grpc.StatusCode}
CORE_GONE = "the member's core is gone"
Reply = tuple[int, str, bytes]  # status code, details, response
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def _proxied_methods() -> tuple[tuple[str, bool], ...]:
    """(path, server streaming) of each method of the core's grpcio outside `METHODS`: grpc.health.v1's."""
    service = health_pb2.DESCRIPTOR.services_by_name["Health"]
    assert not any(method.client_streaming for method in service.methods)
    return tuple(
        (f"/{service.full_name}/{method.name}", method.server_streaming) for method in service.methods
    )


PROXIED = _proxied_methods()


def forwarded_metadata(context: Any) -> list[tuple[str, str | bytes]]:
    """The call's metadata without grpc's own headers (the core and the proxied call get the rest)."""
    return [
        (key, value)
        for key, value in context.invocation_metadata() or ()
        if not (key.startswith((":", "grpc-")) or key == "user-agent")
    ]


def with_common_name(context: Any) -> list[tuple[str, str | bytes]]:
    """`forwarded_metadata` and the verified client certificate's common name (TLS with client certs)."""
    pairs = forwarded_metadata(context)
    common_name = client_common_name(context)
    if common_name is not None:
        pairs.append((COMMON_NAME_KEY, common_name))
    return pairs


class WorkerStream:
    """The worker's end of one stream forwarded to the core: the responses that came, the credit owed."""

    def __init__(self) -> None:
        self.responses: asyncio.Queue[bytes | tuple[int, str]] = asyncio.Queue()  # a tuple: the end
        self.uncredited = 0  # response bytes written to the client, not yet credited to the core


class CoreChannel(asyncio.Protocol):
    """The worker's connection to the core: calls out, replies back to the calls and streams waiting."""

    def __init__(self, closed: asyncio.Future[None]) -> None:
        self.closed = closed
        self.frames = FrameBuffer()
        self.writer = FrameWriter()  # after the core is gone, every call and stream hears it here
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._streams: dict[int, WorkerStream] = {}
        self._ids = itertools.count(1)
        self._send = self.writer.send

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.writer.attach(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.writer.detach()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionError(CORE_GONE))
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream.responses.put_nowait((grpc.StatusCode.UNAVAILABLE.value[0], CORE_GONE))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        for frame in self.frames.feed(data):
            call_id, code, details, response = decode_reply(frame)
            stream = self._streams.get(call_id)
            if stream is not None:
                if code == STREAM_MESSAGE:
                    stream.responses.put_nowait(response)
                else:
                    del self._streams[call_id]
                    stream.responses.put_nowait((code, details))
                continue
            future = self._pending.pop(call_id, None)
            if future is not None and not future.done():  # done: the client gave up on it
                future.set_result((code, details, response))

    def _next_id(self) -> int:
        return next(self._ids) & 0xFFFFFFFF

    async def call(self, method: int, peer: bytes, metadata: bytes, request: bytes) -> Reply:
        """The core's reply to one call; cancelled (the client gave up), the core is told to cancel it."""
        if self.writer.transport is None:
            raise ConnectionError(CORE_GONE)
        call_id = self._next_id()
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        self._send(encode_call(call_id, method, peer, metadata, request))
        try:
            return await future
        except asyncio.CancelledError:
            if self._pending.pop(call_id, None) is not None:
                self._send(encode_control(call_id, CANCEL))
            raise

    def open(self, method: int, peer: bytes, metadata: bytes) -> tuple[int, WorkerStream]:
        """A new stream of `method` in the core: its call id and its end here."""
        if self.writer.transport is None:
            raise ConnectionError(CORE_GONE)
        call_id = self._next_id()
        stream = self._streams[call_id] = WorkerStream()
        self._send(encode_call(call_id, method, peer, metadata, b""))
        return call_id, stream

    def message(self, call_id: int, request: bytes) -> None:
        self._send(encode_control(call_id, MESSAGE, request))

    def half_close(self, call_id: int) -> None:
        self._send(encode_control(call_id, HALF_CLOSE))

    def written(self, call_id: int, stream: WorkerStream, size: int) -> None:
        """`size` response bytes went to the client: credit them, in bunches or once nothing waits."""
        stream.uncredited += size
        if stream.uncredited >= WINDOW // 4 or stream.responses.empty():
            self._send(encode_credit(call_id, stream.uncredited))
            stream.uncredited = 0

    def close_stream(self, call_id: int) -> None:
        """The client's side ended first (it cancelled, or its connection went): the core cancels."""
        if self._streams.pop(call_id, None) is not None:
            self._send(encode_control(call_id, CANCEL))


class Forwarder(grpc.GenericRpcHandler):  # type: ignore[type-arg]  # generic in grpc-stubs only
    """Each method of etcd's services over the core channel; grpc.health.v1's proxied to the core's grpcio."""

    def __init__(self, core: CoreChannel, proxy: Any, *, client_certs: bool = False) -> None:
        self.core = core
        self.proxy = proxy  # a grpc.aio.Channel (grpc-stubs types it as a sync one)
        # With TLS client certificates, each call's common name goes to the core with its metadata.
        self.metadata = with_common_name if client_certs else forwarded_metadata
        self._handlers: dict[str, Handler] = {method.path: self._handler(method) for method in METHODS}
        self._handlers.update((path, self._proxied(path, streams)) for path, streams in PROXIED)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        # None for a path no service of the member has: grpcio answers UNIMPLEMENTED "Method not found!",
        # as the member's own grpcio does.  (Proxying such a call instead raced: the member refuses it at
        # once, and the worker's proxy client, still sending the request, could report INTERNAL "Internal
        # error from Core" in place of the member's status.)
        return self._handlers.get(handler_call_details.method)

    def _handler(self, method: Method) -> Handler:
        if method.unary:
            return grpc.unary_unary_rpc_method_handler(self._forward(method.number))
        streaming = self._stream(method.number)
        if method.client_streaming and method.server_streaming:
            return grpc.stream_stream_rpc_method_handler(streaming)
        if method.server_streaming:
            return grpc.unary_stream_rpc_method_handler(streaming)
        return grpc.stream_stream_rpc_method_handler(streaming)  # client streaming only: none in etcd's API

    def _forward(self, number: int) -> Any:
        core, metadata_of = self.core, self.metadata

        async def forward(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            metadata = encode_metadata(metadata_of(context))
            try:
                code, details, response = await core.call(
                    number, client_peer(context.peer()).encode(), metadata, request
                )
            except ConnectionError as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            if code:
                await context.abort(STATUS.get(code, grpc.StatusCode.UNKNOWN), details)
            return response

        return forward

    def _stream(self, number: int) -> Any:
        core, metadata_of = self.core, self.metadata

        async def stream(
            requests: AsyncIterator[bytes] | bytes, context: grpc.aio.ServicerContext[bytes, bytes]
        ) -> AsyncIterator[bytes]:
            metadata = encode_metadata(metadata_of(context))
            try:
                call_id, forwarded = core.open(number, client_peer(context.peer()).encode(), metadata)
            except ConnectionError as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            sending: asyncio.Task[None] | None = None
            if isinstance(requests, bytes):  # server streaming: its one request
                core.message(call_id, requests)
                core.half_close(call_id)
            else:

                async def send(requests: AsyncIterator[bytes]) -> None:
                    async for request in requests:
                        core.message(call_id, request)
                    core.half_close(call_id)

                sending = asyncio.get_running_loop().create_task(send(requests))
                sending.add_done_callback(_retrieved)  # a client that breaks its side: the call ends anyway
            try:
                while not isinstance(item := await forwarded.responses.get(), tuple):
                    yield item
                    core.written(call_id, forwarded, len(item))
                code, details = item
                if code:
                    await context.abort(STATUS.get(code, grpc.StatusCode.UNKNOWN), details)
            finally:
                if sending is not None:
                    sending.cancel()
                core.close_stream(call_id)  # a no-op when the core ended the stream

        return stream

    def _proxied(self, path: str, server_streaming: bool) -> Handler:
        """A call of the core's grpcio (grpc.health.v1), made there with the same shape."""
        # The proxy's callable for the path, made once: unary_stream or unary_unary as the method is.
        proxied = (self.proxy.unary_stream if server_streaming else self.proxy.unary_unary)(path)

        async def unary(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            call = proxied(request, metadata=forwarded_metadata(context), timeout=context.time_remaining())
            try:
                response: bytes = await call
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "")
            return response

        async def streaming(
            request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
        ) -> AsyncIterator[bytes]:
            call = proxied(request, metadata=forwarded_metadata(context), timeout=context.time_remaining())
            try:
                async for response in call:
                    yield response
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "")
            finally:
                call.cancel()

        if server_streaming:
            return grpc.unary_stream_rpc_method_handler(streaming)
        return grpc.unary_unary_rpc_method_handler(unary)


def _retrieved(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()
    transport, core = await loop.create_unix_connection(lambda: CoreChannel(closed), args.channel)
    unlimited = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    proxy: Any = grpc.aio.insecure_channel(f"unix:{args.grpc}", options=unlimited)
    info = TLSInfo(**json.loads(args.tls)) if args.tls else None
    guard = CertificateGuard.for_info("client", info) if info is not None else None
    server = grpc.aio.server(
        options=grpc_server_options(args.max_receive_bytes, args.max_concurrent_streams),
        interceptors=[guard] if guard is not None else None,
    )
    client_certs = info is not None and info.requires_client_cert
    server.add_generic_rpc_handlers([Forwarder(core, proxy, client_certs=client_certs)])
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.socket)
    if info is not None:  # the same certificates as the member's grpcio, reloaded as they change
        server.add_secure_port(f"unix:{args.socket}", server_credentials(info))
    else:
        server.add_insecure_port(f"unix:{args.socket}")
    await server.start()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    stopping: asyncio.Future[Any] = loop.create_task(stop.wait())
    await asyncio.wait([closed, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    await server.stop(GRACE_SECONDS if not closed.done() else 0)
    transport.close()
    await proxy.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.socket)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="etcdpy-worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=int, default=0, help="which worker (for logs)")
    parser.add_argument("--socket", required=True, help="the Unix socket to serve grpcio on")
    parser.add_argument("--channel", required=True, help="the core's calls channel")
    parser.add_argument("--grpc", required=True, help="the core's grpcio socket (proxied calls)")
    parser.add_argument("--max-receive-bytes", type=int, required=True)
    parser.add_argument("--max-concurrent-streams", type=int, required=True)
    parser.add_argument("--tls", default="", help="the client URLs' TLS settings (TLSInfo as JSON)")
    parser.add_argument("--log-level", default="WARNING", help="the member's, as a logging level name")
    args = parser.parse_args(argv)
    member = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the member stops us
    die_with_parent()
    if os.getppid() != member:
        return  # the member died before the death signal was armed
    # The member's format, each line naming the worker (its socket's name: one pool per front).
    logging.basicConfig(
        level=args.log_level,
        format=f"%(asctime)s %(levelname)s %(name)s ({Path(args.socket).stem}): %(message)s",
    )
    try:
        asyncio.run(serve(args))
    except ConnectionError as exc:
        log.error("cannot reach the member's core at %s: %s", args.channel, exc)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
