"""What a learner serves: as etcd 3.4, only Maintenance/Status and serializable KV/Range.

`gated` wraps a servicer: while the local member is a learner, every other
unary call is answered with etcd's ``etcdserver: rpc not supported for learner``
(UNAVAILABLE), so clients move on to a voting member.  Streams (Watch,
LeaseKeepAlive, Observe) are left alone, as etcd does.

A wrapper around the handlers rather than a server interceptor: grpc.aio sends
every call of a server with an interceptor through a slower path (a coroutine
per call to find its handler); without one, serializable reads went about 20 %
faster.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Awaitable, Callable
from typing import Any

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.server.services.common import rpc_methods, takes_a_stream


def supported_for_learner(request: Any) -> bool:
    """Status, and serializable Range: the request types are those methods' own."""
    if isinstance(request, rpc_pb2.StatusRequest):
        return True
    return isinstance(request, rpc_pb2.RangeRequest) and request.serializable


def gated(servicer: object, base: type, is_learner: Callable[[], bool]) -> Any:
    """`servicer`'s (async) RPCs of the generated `base`, its unary ones refused while `is_learner()`."""
    methods: dict[str, Any] = {}
    for name, generated in rpc_methods(base):
        handler = getattr(servicer, name)
        streams = takes_a_stream(generated) or inspect.isasyncgenfunction(handler)
        methods[name] = handler if streams else _guard(handler, is_learner)
    return types.SimpleNamespace(**methods)


def _guard(handler: Callable[..., Awaitable[Any]], is_learner: Callable[[], bool]) -> Callable[..., Any]:
    async def guarded(request: Any, context: Any) -> Any:
        if is_learner() and not supported_for_learner(request):
            refused = errors.ErrNotSupportedForLearner()
            await context.abort(refused.code, refused.text)
        return await handler(request, context)

    return guarded
