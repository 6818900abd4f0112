"""The gateway's JSON and error bodies as grpc-gateway v1 writes them, checked without a server."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.server.http.gateway import (
    HTTP_STATUS,
    PATHS,
    Aborted,
    Gateway,
    GatewayContext,
    error_body,
    stream_error,
    to_json,
)
from etcdpy.server.http.http11 import Body, Request


def test_zero_values_are_left_out_and_64_bit_integers_are_strings() -> None:
    failed_txn = rpc_pb2.TxnResponse(header=rpc_pb2.ResponseHeader(revision=7, cluster_id=2**63 + 1))
    assert to_json(failed_txn) == '{"header":{"cluster_id":"9223372036854775809","revision":"7"}}'
    hashed = rpc_pb2.HashResponse(hash=4_000_000_000)  # uint32: a number, not a string
    assert json.loads(to_json(hashed)) == {"hash": 4_000_000_000}


def test_bytes_are_base64_and_enums_names() -> None:
    event = rpc_pb2.WatchResponse(events=[{"type": 1, "kv": {"key": b"\x00k", "value": b"v"}}])
    assert json.loads(to_json(event)) == {
        "events": [{"type": "DELETE", "kv": {"key": "AGs=", "value": "dg=="}}]
    }


def test_strings_escape_as_go_does() -> None:
    member = rpc_pb2.Member(name="a<b>&c\u2028é")
    assert to_json(member) == '{"name":"a\\u003cb\\u003e\\u0026c\\u2028é"}'


def test_error_bodies() -> None:
    assert error_body(grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found") == (
        b'{"error":"etcdserver: requested lease not found",'
        b'"message":"etcdserver: requested lease not found","code":5}'
    )
    assert stream_error(grpc.StatusCode.UNAVAILABLE, "gone") == (
        b'{"error":{"grpc_code":14,"http_code":503,"message":"gone","http_status":"Service Unavailable"}}'
    )
    assert HTTP_STATUS[grpc.StatusCode.FAILED_PRECONDITION] == 412  # grpc-gateway v1, as etcd 3.4


def test_every_path_resolves_to_a_method_under_every_prefix() -> None:
    gateway = Gateway([], max_receive_bytes=1024)
    for path, service, _method in PATHS:
        for prefix in ("/v3", "/v3beta", "/v3alpha"):
            route = gateway.routes[prefix + path]
            assert route.method.containing_service.full_name == service
            assert route.handler is None  # no services given: each answers UNIMPLEMENTED
    assert gateway.routes["/v3/maintenance/hash"].method.name == "Hash"  # the first registered wins


def test_requests_take_int64_as_strings_or_numbers_and_ignore_unknown_fields() -> None:
    gateway = Gateway([], max_receive_bytes=1024)
    route = gateway.routes["/v3/kv/range"]
    decoded = gateway._decode(route, b'{"key":"Zm9v","limit":"5","revision":6,"nope":{"x":1}}')
    assert decoded == rpc_pb2.RangeRequest(key=b"foo", limit=5, revision=6)
    txn = gateway._decode(gateway.routes["/v3/kv/txn"], b'{"success":[{"request_put":{"key":"YQ==","x":1}}]}')
    assert txn == rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"a"))])
    assert gateway._decode(route, b"") == rpc_pb2.RangeRequest()
    assert gateway._decode(route, b"null") == rpc_pb2.RangeRequest()


@pytest.mark.parametrize("body", [b'{"key":', b"[1]", b'{"key": 5}', b'{"sort_order": "SIDEWAYS"}'])
def test_what_does_not_decode_is_refused(body: bytes) -> None:
    gateway = Gateway([], max_receive_bytes=1024)
    with pytest.raises(ValueError):
        gateway._decode(gateway.routes["/v3/kv/range"], body)


def test_the_context_forwards_the_authorization_header_as_grpc_gateway_does() -> None:
    headers = {"authorization": "tok", "grpc-metadata-x-trace": "1", "other": "no", "content-length": "0"}

    async def check() -> None:
        reader = asyncio.StreamReader()
        reader.feed_eof()
        body = Body(reader, None, headers)  # type: ignore[arg-type]  # an empty body writes nothing
        context = GatewayContext(Request("POST", "/v3/kv/range", "", headers, body, "ipv4:127.0.0.1:1"))
        assert context.invocation_metadata() == (("authorization", "tok"), ("x-trace", "1"))
        assert context.invocation_metadata()[0].key == "authorization"
        assert context.peer() == "ipv4:127.0.0.1:1"
        with pytest.raises(Aborted, match="refused") as aborted:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "refused")
        assert aborted.value.code is grpc.StatusCode.PERMISSION_DENIED

    asyncio.run(check())
