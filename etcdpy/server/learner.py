"""What a learner serves: as etcd 3.4, only Maintenance/Status and serializable KV/Range.

`LearnerGate` is a grpc.aio server interceptor (`ThreadedLearnerGate` the same for
grpcio's threaded server): while the local member is a
learner, every other unary call is answered with etcd's
``etcdserver: rpc not supported for learner`` (UNAVAILABLE), so clients move on
to a voting member.  Streams (Watch, LeaseKeepAlive) are left alone, as etcd does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2

_ALWAYS = frozenset({"/etcdserverpb.Maintenance/Status"})
_RANGE = "/etcdserverpb.KV/Range"


def supported_for_learner(method: str, request: Any) -> bool:
    if method in _ALWAYS:
        return True
    return method == _RANGE and isinstance(request, rpc_pb2.RangeRequest) and request.serializable


class LearnerGate(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses what learners do not serve while `is_learner()` says the local member is one."""

    def __init__(self, is_learner: Callable[[], bool]) -> None:
        self.is_learner = is_learner

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        inner = handler.unary_unary
        gate = self

        async def guarded(request: Any, context: Any) -> Any:
            if gate.is_learner() and not supported_for_learner(method, request):
                refused = errors.ErrNotSupportedForLearner()
                await context.abort(refused.code, refused.text)
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class ThreadedLearnerGate(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """`LearnerGate` for grpcio's threaded server (--experimental-grpc-threads)."""

    def __init__(self, is_learner: Callable[[], bool]) -> None:
        self.is_learner = is_learner

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        inner = handler.unary_unary
        gate = self

        def guarded(request: Any, context: Any) -> Any:
            if gate.is_learner() and not supported_for_learner(method, request):
                refused = errors.ErrNotSupportedForLearner()
                context.abort(refused.code, refused.text)
            return inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
