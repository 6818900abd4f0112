"""GrpcMetrics: the grpc_server_* metrics as go-grpc-prometheus keeps them on etcd's gRPC server.

Counters (labels grpc_type, grpc_service, grpc_method; handled adds grpc_code, in Go's
spelling: ``OK``, ``Canceled``, ``InvalidArgument``...):

    grpc_server_started_total        a call began
    grpc_server_handled_total        a call ended, with its status code
    grpc_server_msg_received_total   messages received (one for a unary request)
    grpc_server_msg_sent_total       messages sent (one for a unary response)
    grpc_server_handling_seconds     with --metrics extensive: a histogram of call durations

Like go-grpc-prometheus on etcd's server, every method of the services etcd registers before
it (KV, Watch, Lease, Cluster, Maintenance, Auth, Health) exists from the start with zeros, every
code of handled_total too, so a dashboard sees the series before the first call; Lock and
Election, which etcd registers later, get their series at their first call.

`AioInterceptor` serves grpc.aio, `ThreadedInterceptor` grpcio's thread-pool server; both
wrap a method's handler once and reuse the wrapped one for every call.  Handlers that are
neither coroutines nor async generators (none of etcdpy's) are left uncounted.

The wrapped handler also answers a unary request whose bytes do not parse as etcd does: INTERNAL
"grpc: error unmarshalling request: ...", uncounted (Go grpc decodes before its interceptors run);
grpcio would answer UNKNOWN "Unexpected <DecodeError>".
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import grpc
from google.protobuf import descriptor_pool, message
from prometheus_client import Counter, Histogram

from etcdpy.server.metrics import DEFAULT_BUCKETS, Metrics
from etcdpy.server.services.context import UNDECODABLE

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
MaybeHandler = TypeVar("MaybeHandler", Handler, "Handler | None")  # None: a method no service declares

# The services etcd 3.4 registers before go-grpc-prometheus initialises their series (that etcdpy serves).
ETCD_SERVICES = (
    "etcdserverpb.KV",
    "etcdserverpb.Watch",
    "etcdserverpb.Lease",
    "etcdserverpb.Cluster",
    "etcdserverpb.Maintenance",
    "etcdserverpb.Auth",
    "grpc.health.v1.Health",
)

GO_CODES = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}


def grpc_type(client_streaming: bool, server_streaming: bool) -> str:
    """go-grpc-prometheus's grpc_type label."""
    if client_streaming and server_streaming:
        return "bidi_stream"
    if client_streaming:
        return "client_stream"
    return "server_stream" if server_streaming else "unary"


@dataclass(frozen=True)
class MethodMetrics:
    """The children of one method's series, resolved once (a label lookup costs more than the count)."""

    started: Any
    received: Any
    sent: Any
    handled: dict[grpc.StatusCode, Any]  # the codes seen (all of them for the initialised methods)
    handled_family: Any  # grpc_server_handled_total with this method's labels but the code
    seconds: Any | None  # with --metrics extensive

    def ended(self, code: grpc.StatusCode, began: float) -> None:
        child = self.handled.get(code)
        if child is None:
            child = self.handled[code] = self.handled_family.labels(grpc_code=GO_CODES[code])
        child.inc()
        if self.seconds is not None:
            self.seconds.observe(time.perf_counter() - began)


class GrpcMetrics:
    """GrpcMetrics registers the grpc_server_* families in a member's registry; `methods` their series."""

    def __init__(self, metrics: Metrics, services: Iterable[str] = ETCD_SERVICES) -> None:
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        r = metrics.registry
        self._started = Counter(
            "grpc_server_started_total", "Total number of RPCs started on the server.", labels, registry=r
        )
        self._handled = Counter(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            [*labels, "grpc_code"],
            registry=r,
        )
        self._received = Counter(
            "grpc_server_msg_received_total",
            "Total number of RPC stream messages received on the server.",
            labels,
            registry=r,
        )
        self._sent = Counter(
            "grpc_server_msg_sent_total",
            "Total number of gRPC stream messages sent by the server.",
            labels,
            registry=r,
        )
        self._seconds = (
            Histogram(
                "grpc_server_handling_seconds",
                "Histogram of response latency (seconds) of gRPC that had been application-level handled"
                " by the server.",
                labels,
                buckets=DEFAULT_BUCKETS,
                registry=r,
            )
            if metrics.extensive
            else None
        )
        self._methods: dict[str, MethodMetrics | None] = {}  # "/etcdserverpb.KV/Range" -> its series
        for service_name in services:
            for method in descriptor_pool.Default().FindServiceByName(service_name).methods:
                self._methods[f"/{service_name}/{method.name}"] = self._children(
                    service_name, method, all_codes=True
                )

    def method(self, path: str) -> MethodMetrics | None:
        """The series of the method at `path` ("/etcdserverpb.KV/Range"); None if no proto declares it."""
        if path not in self._methods:
            service_name, _, name = path.lstrip("/").rpartition("/")
            try:
                service = descriptor_pool.Default().FindServiceByName(service_name)
            except KeyError:
                service = None
            method = service.methods_by_name.get(name) if service is not None else None
            self._methods[path] = self._children(service_name, method) if method is not None else None
        return self._methods[path]

    def _children(self, service_name: str, method: Any, *, all_codes: bool = False) -> MethodMetrics:
        labels = (grpc_type(method.client_streaming, method.server_streaming), service_name, method.name)
        handled_family = self._handled.labels
        return MethodMetrics(
            started=self._started.labels(*labels),
            received=self._received.labels(*labels),
            sent=self._sent.labels(*labels),
            handled={code: handled_family(*labels, name) for code, name in GO_CODES.items()}
            if all_codes
            else {},
            handled_family=_Curried(handled_family, labels),
            seconds=self._seconds.labels(*labels) if self._seconds is not None else None,
        )


class _Curried:
    """`labels(grpc_code=...)` of a family whose other labels are already given."""

    def __init__(self, labels: Callable[..., Any], given: tuple[str, ...]) -> None:
        self._labels = labels
        self._given = given

    def labels(self, *, grpc_code: str) -> Any:
        return self._labels(*self._given, grpc_code)


def _behaviour(handler: Handler) -> tuple[str, Callable[..., Any]]:
    """The name of the handler's behaviour field (``unary_unary``...) and the behaviour."""
    name = ("stream_" if handler.request_streaming else "unary_") + (
        "stream" if handler.response_streaming else "unary"
    )
    return name, getattr(handler, name)


class _Undecodable:
    """What a tolerant deserializer returns for bytes that are no request: why they are not."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


def _tolerant(handler: Handler) -> Handler:
    """The handler with a deserializer that returns `_Undecodable` where grpcio's would raise, so the
    call can answer etcd's status (unary requests; a stream's messages are left to grpcio)."""
    deserialize = handler.request_deserializer
    if handler.request_streaming or deserialize is None:
        return handler

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except message.DecodeError as exc:
            return _Undecodable(str(exc))

    tolerant: Handler = handler._replace(request_deserializer=parse)  # type: ignore[attr-defined]
    return tolerant


def _aio_code(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException | None) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if exc is None:
        return grpc.StatusCode.OK
    return grpc.StatusCode.CANCELLED if isinstance(exc, asyncio.CancelledError) else grpc.StatusCode.UNKNOWN


async def _counted_requests(requests: AsyncIterator[Any], m: MethodMetrics) -> AsyncIterator[Any]:
    async for request in requests:
        m.received.inc()
        yield request


def _wrap_aio(handler: Handler, m: MethodMetrics) -> Handler:
    """The handler with its behaviour counted; the same handler when its behaviour is not async."""
    client_streaming = handler.request_streaming
    name, inner = _behaviour(handler)

    def requests(request: Any) -> Any:
        if client_streaming:
            return _counted_requests(request, m)
        m.received.inc()
        return request

    if inspect.isasyncgenfunction(inner):

        async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            if type(request) is _Undecodable:
                await context.abort(grpc.StatusCode.INTERNAL, UNDECODABLE + request.why)
            m.started.inc()
            began = time.perf_counter()
            try:
                async for response in inner(requests(request), context):
                    m.sent.inc()
                    yield response
            except BaseException as exc:
                m.ended(_aio_code(context, exc), began)
                raise
            m.ended(_aio_code(context, None), began)

        counted: Handler = handler._replace(**{name: streaming})  # type: ignore[attr-defined]  # a namedtuple
        return _tolerant(counted)
    if inspect.iscoroutinefunction(inner):

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if type(request) is _Undecodable:
                await context.abort(grpc.StatusCode.INTERNAL, UNDECODABLE + request.why)
            m.started.inc()
            began = time.perf_counter()
            try:
                response = await inner(requests(request), context)
            except BaseException as exc:
                m.ended(_aio_code(context, exc), began)
                raise
            if not handler.response_streaming:  # a coroutine that streams writes through the context
                m.sent.inc()
            m.ended(_aio_code(context, None), began)
            return response

        counted = handler._replace(**{name: unary})  # type: ignore[attr-defined]
        return _tolerant(counted)
    return handler


class _CountedHandlers:
    """Each known method's handler wrapped once by `wrap` (with its series), then the same wrapper reused.

    A handler grpc hands over again (the same object) gets the wrapper made for it; several pool threads
    of the threaded server may wrap one method at once: harmless, the result is the same.
    """

    def __init__(self, grpc_metrics: GrpcMetrics, wrap: Callable[[Handler, MethodMetrics], Handler]) -> None:
        self._metrics = grpc_metrics
        self._wrap = wrap
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    def __call__(self, method: str, handler: MaybeHandler) -> MaybeHandler:
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        m = self._metrics.method(method)
        if handler is None or m is None:
            return handler
        wrapped = self._wrap(handler, m)
        self._wrapped[method] = (handler, wrapped)
        return wrapped


class AioInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # generic in grpc-stubs only
    """Counts every call of a known method on a grpc.aio server."""

    def __init__(self, grpc_metrics: GrpcMetrics) -> None:
        self._counted = _CountedHandlers(grpc_metrics, _wrap_aio)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        return self._counted(handler_call_details.method, handler)


def _threaded_code(context: grpc.ServicerContext, exc: BaseException | None) -> grpc.StatusCode:
    code = context.code()  # type: ignore[attr-defined]  # grpcio has it; grpc-stubs lacks it
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.OK if exc is None else grpc.StatusCode.UNKNOWN


def _counted_iterator(requests: Iterator[Any], m: MethodMetrics) -> Iterator[Any]:
    for request in requests:
        m.received.inc()
        yield request


def _wrap_threaded(handler: Handler, m: MethodMetrics) -> Handler:
    client_streaming = handler.request_streaming
    server_streaming = handler.response_streaming
    name, inner = _behaviour(handler)

    def call(request: Any, context: grpc.ServicerContext) -> Any:
        if type(request) is _Undecodable:
            context.abort(grpc.StatusCode.INTERNAL, UNDECODABLE + request.why)
        m.started.inc()
        began = time.perf_counter()
        if client_streaming:
            request = _counted_iterator(request, m)
        else:
            m.received.inc()
        try:
            result = inner(request, context)
        except BaseException as exc:
            m.ended(_threaded_code(context, exc), began)
            raise
        if server_streaming:
            return _sent(result, context, m, began)
        m.sent.inc()
        m.ended(_threaded_code(context, None), began)
        return result

    counted: Handler = handler._replace(**{name: call})  # type: ignore[attr-defined]  # a namedtuple
    return _tolerant(counted)


def _sent(
    responses: Iterator[Any], context: grpc.ServicerContext, m: MethodMetrics, began: float
) -> Iterator[Any]:
    try:
        for response in responses:
            m.sent.inc()
            yield response
    except BaseException as exc:
        m.ended(_threaded_code(context, exc), began)
        raise
    # A stream the client cancelled ends quietly here (the bridge stops the handler): say so.
    ended = _threaded_code(context, None) if context.is_active() else grpc.StatusCode.CANCELLED
    m.ended(ended, began)


class ThreadedInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]  # generic in grpc-stubs only
    """Counts every call of a known method on grpcio's thread-pool server."""

    def __init__(self, grpc_metrics: GrpcMetrics) -> None:
        self._counted = _CountedHandlers(grpc_metrics, _wrap_threaded)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        return self._counted(handler_call_details.method, continuation(handler_call_details))
