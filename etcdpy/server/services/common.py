"""What the gRPC adapters share: EtcdError -> gRPC status with etcd's text, quiet UNIMPLEMENTED, RPC lists."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar, overload

import grpc

from etcdpy.api.errors import EtcdError

Context = Any  # grpc.aio.ServicerContext: the generated servicers are untyped, so handlers take Any
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]


StreamHandler = Callable[[Any, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]]


@overload
def maps_etcd_errors(handler: Handler[Req, Resp]) -> Handler[Req, Resp]: ...
@overload
def maps_etcd_errors(handler: StreamHandler[Req, Resp]) -> StreamHandler[Req, Resp]: ...
def maps_etcd_errors(handler: Any) -> Any:
    """Wrap a servicer method so an EtcdError aborts the call with its code and etcd's message.

    A response-streaming method (an async generator) stays one: its errors abort the stream.
    """
    if inspect.isasyncgenfunction(handler):

        @functools.wraps(handler)
        async def stream_wrapper(self: Any, request: Any, context: Context) -> Any:
            try:
                async for response in handler(self, request, context):
                    yield response
            except EtcdError as err:
                await context.abort(err.code, err.text)

        return stream_wrapper

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: Context) -> Any:
        try:
            return await handler(self, request, context)
        except EtcdError as err:
            await context.abort(err.code, err.text)

    return wrapper


C = TypeVar("C", bound=type)


def answers_unimplemented(cls: C) -> C:
    """Make every RPC `cls` does not define abort with UNIMPLEMENTED on the event loop.

    The generated servicer base does that too, but as a blocking method that grpc.aio
    runs on a thread and logs as an unexpected exception.
    """
    for name, _generated in rpc_methods(cls.__mro__[1]):
        if name not in vars(cls):
            setattr(cls, name, _unimplemented)
    return cls


def rpc_methods(base: type) -> Iterator[tuple[str, Callable[..., Any]]]:
    """(name, generated method) of each RPC of a generated servicer base class."""
    for name, value in vars(base).items():
        if callable(value) and not name.startswith("_"):
            yield name, value


def takes_a_stream(generated: Callable[..., Any]) -> bool:
    """Whether the generated method is client-streaming (grpc's generator names its argument so)."""
    return "request_iterator" in inspect.signature(generated).parameters


async def _unimplemented(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")
