"""The async services served by grpcio's thread-pool server (opt-in: --experimental-grpc-threads N).

grpcio's threaded server costs markedly less CPU per call than grpc.aio and keeps
tail latency lower on a busy machine (see bench/README.md).  Each call still runs the
very same async handler on the state loop (``run_coroutine_threadsafe``) while its
pool thread waits, so state is touched only by the loop.

Streaming calls work the same way, with two hand-offs: a client stream
(Watch, LeaseKeepAlive) is read by a thread of its own and fed to the handler
as an async iterator; a server stream (Watch, LeaseKeepAlive, Observe) is
pumped on the loop into a queue that the call's pool thread sends from, at
most `RESPONSE_WINDOW` responses ahead of the client, so a slow reader pushes
back on the handler (the watch hub then catches it up from history) instead
of piling up responses.  The price: grpcio holds a pool thread for the whole
life of a call, so every open stream keeps one busy; `STREAM_HEADROOM` threads
are added to the N of the flag for them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, NoReturn

import grpc

from etcdpy.server.services.common import rpc_methods, takes_a_stream

RESPONSE_WINDOW = 16  # responses of one server stream queued ahead of what grpc has sent
STREAM_HEADROOM = 256  # pool threads beyond --experimental-grpc-threads, for open streams


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class _End:
    """Marks the end of a hand-off queue."""


_END = _End()


class _LoopSideContext:
    """The part of grpc.aio.ServicerContext the handlers use, for a call served on a pool thread."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        # Read on the pool thread, for auth's credentials (services.auth.credentials_of).
        self._metadata = context.invocation_metadata()
        self._auth_context = context.auth_context()

    def invocation_metadata(self) -> Any:
        return self._metadata

    def auth_context(self) -> Any:
        return self._auth_context

    async def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise _Abort(code, details)


def on_loop(servicer: object, base: type, loop: asyncio.AbstractEventLoop) -> Any:
    """A `base` servicer whose every RPC runs `servicer`'s handler of that name on `loop`."""
    methods = {
        name: _bridge(getattr(servicer, name), loop, request_streaming=takes_a_stream(generated))
        for name, generated in rpc_methods(base)
    }
    return type(f"Threaded{type(servicer).__name__}", (base,), methods)()


def _bridge(
    handler: Callable[..., Any], loop: asyncio.AbstractEventLoop, *, request_streaming: bool
) -> Callable[..., Any]:
    streams_responses = inspect.isasyncgenfunction(handler)

    def call(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        argument = _LoopRequests(request, loop) if request_streaming else request
        if streams_responses:
            return _responses(handler(argument, _LoopSideContext(context)), loop, context)
        future = asyncio.run_coroutine_threadsafe(handler(argument, _LoopSideContext(context)), loop)

        def ended() -> None:  # a client that gave up (deadline, cancel) no longer keeps a Lock waiting
            future.cancel()

        context.add_callback(ended)
        try:
            return future.result()
        except _Abort as abort:
            context.abort(abort.code, abort.details)
        except concurrent.futures.CancelledError:  # the call ended first: nobody waits for an answer
            context.abort(grpc.StatusCode.CANCELLED, "the call ended before its answer")

    return call


class _LoopRequests:
    """A client stream as an async iterator on the loop, read by a thread of its own.

    A stream that breaks (the client went away) simply ends, as grpc.aio's
    request iterator does for the handlers that read until the end.
    """

    def __init__(self, requests: Iterator[Any], loop: asyncio.AbstractEventLoop) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._loop = loop
        threading.Thread(
            target=self._read, args=(requests,), daemon=True, name="etcdpy-grpc-requests"
        ).start()

    def _read(self, requests: Iterator[Any]) -> None:
        try:
            for request in requests:
                self._hand_over(request)
        except grpc.RpcError:  # grpc's iterator raises it on a cancelled or broken call: the stream is over
            pass
        finally:
            self._hand_over(_END)

    def _hand_over(self, item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits for it any more
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        item = await self._queue.get()
        if item is _END:
            raise StopAsyncIteration
        return item


def _responses(
    stream: AsyncIterator[Any], loop: asyncio.AbstractEventLoop, context: grpc.ServicerContext
) -> Iterator[Any]:
    """Send what the handler's async generator yields on the loop, from the calling pool thread."""
    handed: queue.Queue[Any] = queue.Queue()
    # At most RESPONSE_WINDOW responses wait in `handed`: pump takes a credit per response, and the
    # pool thread gives it back as it takes one.
    credit = asyncio.Semaphore(RESPONSE_WINDOW)

    async def pump() -> None:
        try:
            while True:
                await credit.acquire()
                try:
                    response = await anext(stream)
                except StopAsyncIteration:
                    break
                handed.put(response)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # _Abort or a handler failure: the pool thread ends the call with it
            handed.put(exc)
        finally:
            handed.put(_END)
            await stream.aclose()  # type: ignore[attr-defined]  # an async generator: run its finally

    pumping = asyncio.run_coroutine_threadsafe(pump(), loop)

    def stop() -> None:
        pumping.cancel()
        handed.put(_END)

    context.add_callback(stop)  # the call ended (client gone, deadline): the handler stops

    def send() -> Iterator[Any]:
        try:
            while (item := handed.get()) is not _END:
                if isinstance(item, _Abort):
                    context.abort(item.code, item.details)
                if isinstance(item, BaseException):
                    raise item
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(credit.release)
                yield item
        finally:
            pumping.cancel()

    return send()
