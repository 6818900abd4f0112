"""The JSON gateway: etcd's grpc-gateway paths (/v3/kv/range ...) served by the member's own servicers.

`PATHS` is etcd 3.4's table (etcdserverpb/gw, v3lockpb/gw, v3electionpb/gw): a path, the gRPC
service and method it calls.  `Gateway` answers them under /v3/, /v3beta/ (etcd 3.4 rewrites it to
/v3/) and /v3alpha/ (etcd 3.3's; 3.4 no longer answers it), calling the `Service` handlers grpcio
serves, with a `GatewayContext` in place of grpc's.  A service the member lacks (Auth, until it
lands) answers UNIMPLEMENTED as grpc does; adding its paths needs nothing here.

JSON as grpc-gateway v1 (etcd 3.4) writes it: protobuf's JSON mapping (`json_format`) with the proto
field names, int64 as strings, bytes as base64, enums by name, zero values left out; requests take
int64 as strings or numbers and ignore unknown fields.  Errors:

* unary: the HTTP status grpc-gateway maps from the gRPC code, ``{"error","message","code"}``, sent
  chunked with the ``Grpc-Trailer-Content-Type`` trailer as etcd does; a body that does not decode
  is 400 with code 3 (the text is protobuf's, not Go's);
* streams: newline-separated ``{"result": ...}`` objects; an error ends the stream with
  ``{"error":{"grpc_code","http_code","message","http_status"}}`` (its HTTP status when nothing was
  sent yet); a first request of a client stream that does not decode is 500 with code 2.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import grpc
from google.protobuf import descriptor, descriptor_pool, json_format, message, message_factory

from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.api.v3electionpb import v3election_pb2
from etcdpy.api.v3lockpb import v3lock_pb2
from etcdpy.server.http.http11 import HTTPError, Reply, Request, Response, StreamResponse, plain_error
from etcdpy.server.services import Service
from etcdpy.server.services.context import Aborted, CallContext, Metadatum, unexpected

log = logging.getLogger("etcdpy.server.http")

_MODULES = (rpc_pb2, v3lock_pb2, v3election_pb2)  # the generated code that registers every descriptor

KV, WATCH, LEASE = "etcdserverpb.KV", "etcdserverpb.Watch", "etcdserverpb.Lease"
CLUSTER, MAINTENANCE, AUTH = "etcdserverpb.Cluster", "etcdserverpb.Maintenance", "etcdserverpb.Auth"
LOCK, ELECTION = "v3lockpb.Lock", "v3electionpb.Election"

# etcd 3.4's gateway paths (under /v3), in its registration order: where two share a path
# (/maintenance/hash: Hash and HashKV), the first registered answers.
PATHS: tuple[tuple[str, str, str], ...] = (
    ("/kv/range", KV, "Range"),
    ("/kv/put", KV, "Put"),
    ("/kv/deleterange", KV, "DeleteRange"),
    ("/kv/txn", KV, "Txn"),
    ("/kv/compaction", KV, "Compact"),
    ("/watch", WATCH, "Watch"),
    ("/lease/grant", LEASE, "LeaseGrant"),
    ("/lease/revoke", LEASE, "LeaseRevoke"),
    ("/kv/lease/revoke", LEASE, "LeaseRevoke"),
    ("/lease/keepalive", LEASE, "LeaseKeepAlive"),
    ("/lease/timetolive", LEASE, "LeaseTimeToLive"),
    ("/kv/lease/timetolive", LEASE, "LeaseTimeToLive"),
    ("/lease/leases", LEASE, "LeaseLeases"),
    ("/kv/lease/leases", LEASE, "LeaseLeases"),
    ("/cluster/member/add", CLUSTER, "MemberAdd"),
    ("/cluster/member/remove", CLUSTER, "MemberRemove"),
    ("/cluster/member/update", CLUSTER, "MemberUpdate"),
    ("/cluster/member/list", CLUSTER, "MemberList"),
    ("/cluster/member/promote", CLUSTER, "MemberPromote"),
    ("/maintenance/alarm", MAINTENANCE, "Alarm"),
    ("/maintenance/status", MAINTENANCE, "Status"),
    ("/maintenance/defragment", MAINTENANCE, "Defragment"),
    ("/maintenance/hash", MAINTENANCE, "Hash"),
    ("/maintenance/hash", MAINTENANCE, "HashKV"),
    ("/maintenance/snapshot", MAINTENANCE, "Snapshot"),
    ("/maintenance/transfer-leadership", MAINTENANCE, "MoveLeader"),
    ("/auth/enable", AUTH, "AuthEnable"),
    ("/auth/disable", AUTH, "AuthDisable"),
    ("/auth/authenticate", AUTH, "Authenticate"),
    ("/auth/user/add", AUTH, "UserAdd"),
    ("/auth/user/get", AUTH, "UserGet"),
    ("/auth/user/list", AUTH, "UserList"),
    ("/auth/user/delete", AUTH, "UserDelete"),
    ("/auth/user/changepw", AUTH, "UserChangePassword"),
    ("/auth/user/grant", AUTH, "UserGrantRole"),
    ("/auth/user/revoke", AUTH, "UserRevokeRole"),
    ("/auth/role/add", AUTH, "RoleAdd"),
    ("/auth/role/get", AUTH, "RoleGet"),
    ("/auth/role/list", AUTH, "RoleList"),
    ("/auth/role/delete", AUTH, "RoleDelete"),
    ("/auth/role/grant", AUTH, "RoleGrantPermission"),
    ("/auth/role/revoke", AUTH, "RoleRevokePermission"),
    ("/lock/lock", LOCK, "Lock"),
    ("/lock/unlock", LOCK, "Unlock"),
    ("/election/campaign", ELECTION, "Campaign"),
    ("/election/proclaim", ELECTION, "Proclaim"),
    ("/election/leader", ELECTION, "Leader"),
    ("/election/observe", ELECTION, "Observe"),
    ("/election/resign", ELECTION, "Resign"),
)
PREFIXES = ("/v3", "/v3beta", "/v3alpha")

# grpc-gateway v1's HTTPStatusFromCode (FailedPrecondition is 412 there; v2 made it 400).
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 408,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 412,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}

JSON_HEADERS = [("Content-Type", "application/json")]
# What grpc-gateway copies from the gRPC response's headers (grpc's own content type).
OK_HEADERS = [*JSON_HEADERS, ("Grpc-Metadata-Content-Type", "application/grpc")]
ERROR_TRAILER = ("Grpc-Trailer-Content-Type", "application/grpc")
# Go's encoding/json escapes these in strings; json.dumps with ensure_ascii=False does not.
_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


class GatewayContext(CallContext):
    """The servicer context of a call that arrived over HTTP.

    Metadata as grpc-gateway forwards it: ``Authorization`` as ``authorization`` (etcd reads the
    auth token there), ``Grpc-Metadata-<Key>`` headers as ``<key>``.
    """

    def __init__(self, request: Request) -> None:
        headers = request.headers
        pairs = [Metadatum("authorization", headers["authorization"])] if "authorization" in headers else []
        prefix = "grpc-metadata-"
        pairs += [Metadatum(k[len(prefix) :], v) for k, v in headers.items() if k.startswith(prefix)]
        super().__init__(tuple(pairs), request.peer)


@dataclass(frozen=True)
class Route:
    """One gateway path: the method it calls and the handler that serves it (None: service not served)."""

    method: descriptor.MethodDescriptor
    request_class: type[message.Message]
    handler: Any


def to_json(msg: message.Message) -> str:
    """`msg` as grpc-gateway writes it: proto field names, zero values left out, Go's string escapes."""
    as_dict = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return json.dumps(as_dict, separators=(",", ":"), ensure_ascii=False).translate(_GO_ESCAPES)


def error_body(code: grpc.StatusCode, text: str) -> bytes:
    """grpc-gateway v1's body of a failed unary call."""
    return json.dumps({"error": text, "message": text, "code": code.value[0]}, separators=(",", ":")).encode()


def stream_error(code: grpc.StatusCode, text: str) -> bytes:
    """grpc-gateway v1's object that ends a stream with an error (zero fields left out, as jsonpb)."""
    status = HTTP_STATUS.get(code, 500)
    fields: dict[str, object] = {"grpc_code": code.value[0], "http_code": status, "message": text}
    fields["http_status"] = _status_text(status)
    return json.dumps({"error": {k: v for k, v in fields.items() if v}}, separators=(",", ":")).encode()


def _status_text(status: int) -> str:
    return HTTPStatus(status).phrase


def _unexpected(exc: BaseException) -> Aborted:
    return unexpected(exc, "gateway call")


class Gateway:
    """The gateway's paths over `services`; requests larger than `max_receive_bytes` (encoded) refused."""

    def __init__(self, services: Sequence[Service], *, max_receive_bytes: int) -> None:
        self.max_receive_bytes = max_receive_bytes
        # The raw JSON may be larger than the message (base64 is 4/3 of the bytes, plus the names).
        self.max_body_bytes = 2 * max_receive_bytes + 64 * 1024
        served = {service.name: service.handlers for service in services}
        pool = descriptor_pool.Default()
        self.routes: dict[str, Route] = {}
        for path, service_name, method_name in PATHS:
            method = pool.FindServiceByName(service_name).methods_by_name[method_name]
            handlers = served.get(service_name)
            handler = getattr(handlers, method_name) if handlers is not None else None
            route = Route(method, message_factory.GetMessageClass(method.input_type), handler)
            for prefix in PREFIXES:
                self.routes.setdefault(prefix + path, route)

    def serves(self, path: str) -> bool:
        """Whether `path` is the gateway's (an unknown one under its prefixes gets its 404)."""
        return any(path.startswith(prefix + "/") for prefix in PREFIXES)

    async def __call__(self, request: Request) -> Reply:
        route = self.routes.get(request.path)
        if route is None:
            return plain_error(404, "Not Found")  # grpc-gateway's own, not Go's "404 page not found"
        if request.method != "POST":
            return plain_error(405, "Method Not Allowed")
        declared = request.body.declared_length
        if declared is not None and declared > self.max_body_bytes:
            return self._refuse_size(declared)
        if route.method.client_streaming:
            return await self._client_stream(route, request)
        try:
            raw = await request.body.read_all(self.max_body_bytes)
        except HTTPError as err:
            if err.status == 413:
                return self._refuse_size(self.max_body_bytes + 1)
            raise
        try:
            call_request = self._decode(route, raw)
        except ValueError as exc:
            return _unary_error(grpc.StatusCode.INVALID_ARGUMENT, str(exc), trailer=False)
        size = call_request.ByteSize()
        if size > self.max_receive_bytes:
            return _unary_error(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"grpc: received message larger than max ({size} vs. {self.max_receive_bytes})",
            )
        if route.handler is None:
            return _unary_error(
                grpc.StatusCode.UNIMPLEMENTED, f"unknown service {route.method.containing_service.full_name}"
            )
        context = GatewayContext(request)
        if route.method.server_streaming:
            return _stream_reply(route.handler(call_request, context))
        try:
            response = await route.handler(call_request, context)
        except Aborted as aborted:
            return _unary_error(aborted.code, aborted.details)
        except Exception as exc:  # grpc answers UNKNOWN for any exception; so do we
            unexpected = _unexpected(exc)
            return _unary_error(unexpected.code, unexpected.details)
        return Response(200, list(OK_HEADERS), to_json(response).encode())

    def _refuse_size(self, size: int) -> Response:
        text = f"grpc: received message larger than max ({size} vs. {self.max_receive_bytes})"
        response = _unary_error(grpc.StatusCode.RESOURCE_EXHAUSTED, text, trailer=False)
        assert isinstance(response, Response)
        return response

    def _decode(self, route: Route, raw: bytes) -> message.Message:
        """The request message of a JSON body (empty: all defaults); ValueError if it is not one."""
        text = raw.decode("utf-8", "replace")
        try:
            value = json.loads(text) if text.strip() else None
        except json.JSONDecodeError as exc:
            raise ValueError(str(exc)) from None
        return self._message(route, value)

    def _message(self, route: Route, value: object) -> message.Message:
        """The request message of a decoded JSON value (null: all defaults)."""
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"a JSON object was expected, not {type(value).__name__}")
        call_request = route.request_class()
        try:
            known = _known_fields(value or {}, route.method.input_type)
            json_format.ParseDict(known, call_request)
        except json_format.ParseError as exc:
            raise ValueError(str(exc)) from None
        return call_request

    async def _client_stream(self, route: Route, request: Request) -> Reply:
        """Watch and LeaseKeepAlive: requests are the JSON objects of the body, as they arrive."""
        objects = _json_objects(request.body.parts(), self.max_body_bytes)
        try:
            first = await anext(objects, None)
            requests = [] if first is None else [self._message(route, first)]
        except ValueError as exc:
            return _unary_error(grpc.StatusCode.UNKNOWN, str(exc), trailer=False)
        if route.handler is None:
            return _unary_error(
                grpc.StatusCode.UNIMPLEMENTED, f"unknown service {route.method.containing_service.full_name}"
            )

        async def incoming() -> AsyncIterator[message.Message]:
            for first_request in requests:
                yield first_request
            try:
                async for text in objects:
                    yield self._message(route, text)
            except (ValueError, HTTPError) as exc:
                log.info("gateway stream %s: the client's requests ended: %s", route.method.full_name, exc)

        return _stream_reply(route.handler(incoming(), GatewayContext(request)))


def _known_fields(value: Any, message_type: descriptor.Descriptor) -> Any:
    """`value` without the keys `message_type` has no field for, at every depth (grpc-gateway ignores them).

    json_format's ignore_unknown_fields would also accept an unknown enum name, which etcd refuses.
    """
    if not isinstance(value, dict):
        return value
    known: dict[str, Any] = {}
    for key, item in value.items():
        field = message_type.fields_by_name.get(key) or message_type.fields_by_camelcase_name.get(key)
        if field is None:
            continue
        if (
            field.message_type is not None
            and item is not None
            and not field.message_type.GetOptions().map_entry
        ):
            if isinstance(item, list):
                item = [_known_fields(element, field.message_type) for element in item]
            else:
                item = _known_fields(item, field.message_type)
        known[key] = item
    return known


def _unary_error(code: grpc.StatusCode, text: str, *, trailer: bool = True) -> Reply:
    """A failed call as grpc-gateway answers it: chunked with grpc's trailer when the call reached grpc."""
    status = HTTP_STATUS.get(code, 500)
    body = error_body(code, text)
    if not trailer:
        return Response(status, list(JSON_HEADERS), body)

    async def one() -> AsyncIterator[bytes]:
        yield body

    headers = [*JSON_HEADERS, ("Trailer", ERROR_TRAILER[0])]
    return StreamResponse(status, headers, one(), trailers=[ERROR_TRAILER], long_lived=False)


def _stream_reply(results: Any) -> StreamResponse:
    """Newline-separated {"result": ...}; an abort or error ends it with grpc-gateway's error object."""
    reply: StreamResponse

    def set_status(status: int) -> None:  # an error before any result: the answer's status is the error's
        reply.status = status

    reply = StreamResponse(200, list(OK_HEADERS), _results(results, set_status))
    return reply


async def _results(results: Any, set_status: Callable[[int], None]) -> AsyncIterator[bytes]:
    sent = False
    try:
        if not hasattr(results, "__aiter__"):
            await results  # a method the servicer does not stream (UNIMPLEMENTED): it aborts
            return
        async for result in results:
            if isinstance(result, bytes):  # the watch stream encodes its responses once for every client
                result = rpc_pb2.WatchResponse.FromString(result)
            sent = True
            yield b'{"result":' + to_json(result).encode() + b"}\n"
    except Aborted as aborted:
        failure = aborted
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # grpc ends the stream with UNKNOWN for any exception
        failure = _unexpected(exc)
    else:
        return
    finally:
        closing = getattr(results, "aclose", None)
        if closing is not None:
            await closing()
    if not sent:
        set_status(HTTP_STATUS.get(failure.code, 500))
    yield stream_error(failure.code, failure.details)


async def _json_objects(parts: AsyncIterator[bytes], limit: int) -> AsyncIterator[object]:
    """The JSON values of a body that holds several, one after another (whitespace between them)."""
    decoder = json.JSONDecoder()
    buffered = ""
    pending = b""
    async for part in parts:
        pending += part
        try:
            buffered += pending.decode("utf-8")
            pending = b""
        except UnicodeDecodeError:
            if len(pending) > 4:
                raise ValueError("the request body is not UTF-8") from None
            continue
        while True:
            buffered = buffered.lstrip()
            if not buffered:
                break
            try:
                value, end = decoder.raw_decode(buffered)
            except json.JSONDecodeError:
                if len(buffered) > limit:
                    raise ValueError("a request in the body is too large") from None
                break  # incomplete: wait for more bytes
            yield value
            buffered = buffered[end:]
    if buffered.strip():
        raise ValueError("unexpected EOF")
