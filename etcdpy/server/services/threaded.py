"""The async services served by grpcio's thread-pool server (opt-in: --experimental-grpc-threads N).

grpcio's threaded server costs markedly less CPU per call than grpc.aio and keeps
tail latency lower on a busy machine (see bench/README.md).  Each call still runs the
very same async handler on the state loop (``run_coroutine_threadsafe``) while its
pool thread waits, so state is touched only by the loop.  The price: a call holds
a pool thread for its duration, which suits unary RPCs, not thousands of watches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, NoReturn

import grpc


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class _LoopSideContext:
    """The part of grpc.aio.ServicerContext the handlers use, for a call served on a pool thread."""

    async def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise _Abort(code, details)


def on_loop(servicer: object, base: type, loop: asyncio.AbstractEventLoop) -> Any:
    """A `base` servicer whose every RPC runs `servicer`'s coroutine of that name on `loop`."""
    methods = {
        name: _bridge(getattr(servicer, name), loop)
        for name, value in vars(base).items()
        if callable(value) and not name.startswith("_")
    }
    return type(f"Threaded{type(servicer).__name__}", (base,), methods)()


def _bridge(handler: Callable[..., Any], loop: asyncio.AbstractEventLoop) -> Callable[..., Any]:
    def call(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        future = asyncio.run_coroutine_threadsafe(handler(request, _LoopSideContext()), loop)
        try:
            return future.result()
        except _Abort as abort:
            context.abort(abort.code, abort.details)

    return call
