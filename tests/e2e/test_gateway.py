"""The client port answers gRPC and HTTP/1.1 (the JSON gateway) at once, and bad HTTP input harms no one else.

Real `etcdpy server` processes; HTTP through `requests` or raw sockets (for what a polite client never
sends), gRPC through the generated stubs.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import grpc
import pytest
import requests
from e2e_support import connect
from procs import ServerProcess, free_port

from etcdpy.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.chaos.cluster import wait_until

HEAD_SECONDS = 10.0  # etcdpy.server.http.http11's bound on a request head
MAX_REQUEST_BYTES = 4096


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def post(server: ServerProcess, path: str, body: object) -> requests.Response:
    return requests.post(f"{server.client_url}{path}", data=json.dumps(body), timeout=30)


def grpc_round_trip(server: ServerProcess, key: bytes) -> bytes:
    """Put then get `key` over gRPC; its value."""
    stubs = connect(server)
    try:
        stubs.kv.Put(rpc_pb2.PutRequest(key=key, value=b"grpc:" + key), timeout=30)
        return bytes(stubs.kv.Range(rpc_pb2.RangeRequest(key=key), timeout=30).kvs[0].value)
    finally:
        stubs.channel.close()


def raw(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.client_port), timeout=30)
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_grpc_and_http_share_the_client_port(etcdpy_server: ServerProcess) -> None:
    assert post(etcdpy_server, "/v3/kv/put", {"key": b64(b"h"), "value": b64(b"http")}).status_code == 200
    stubs = connect(etcdpy_server)
    try:
        assert stubs.kv.Range(rpc_pb2.RangeRequest(key=b"h"), timeout=30).kvs[0].value == b"http"
        stubs.kv.Put(rpc_pb2.PutRequest(key=b"g", value=b"grpc"), timeout=30)
    finally:
        stubs.channel.close()
    answer = post(etcdpy_server, "/v3/kv/range", {"key": b64(b"g")}).json()
    assert base64.b64decode(answer["kvs"][0]["value"]) == b"grpc"

    def version() -> object:
        return requests.get(f"{etcdpy_server.client_url}/version", timeout=30).json()

    # A fresh member answers "not_decided" until its cluster version is decided, as etcd's does.
    wait_until(lambda: version() != {"etcdserver": "3.4.23", "etcdcluster": "not_decided"}, 20, "undecided")
    assert version() == {"etcdserver": "3.4.23", "etcdcluster": "3.4.0"}


def test_a_connection_serves_requests_after_a_bad_one(etcdpy_server: ServerProcess) -> None:
    with requests.Session() as session:
        url = f"{etcdpy_server.client_url}/v3/kv/range"
        bad = session.post(url, data=b'{"key": ', timeout=30)
        assert bad.status_code == 400
        assert bad.json()["code"] == 3
        wrong_type = session.post(url, data=b'{"key": {"nested": 1}}', timeout=30)
        assert (wrong_type.status_code, wrong_type.json()["code"]) == (400, 3)
        good = session.post(url, data=json.dumps({"key": b64(b"nothing")}), timeout=30)
        assert good.status_code == 200
        assert "kvs" not in good.json()  # no key: the empty list is left out, as grpc-gateway does


def test_zero_values_are_left_out_and_int64_is_a_string(etcdpy_server: ServerProcess) -> None:
    post(etcdpy_server, "/v3/kv/put", {"key": b64(b"z"), "value": b64(b"1")})
    failed = post(
        etcdpy_server,
        "/v3/kv/txn",
        {"compare": [{"key": b64(b"z"), "target": "VALUE", "result": "EQUAL", "value": b64(b"2")}]},
    ).json()
    assert "succeeded" not in failed  # clients test it for truthiness
    assert isinstance(failed["header"]["revision"], str)
    unknown = requests.post(
        f"{etcdpy_server.client_url}/v3/lease/keepalive", data=json.dumps({"ID": 12345}), timeout=30
    )
    assert unknown.json() == {"result": {"header": unknown.json()["result"]["header"], "ID": "12345"}}


@pytest.mark.server_flags(f"--max-request-bytes={MAX_REQUEST_BYTES}")
def test_bodies_over_the_request_limit_are_refused(server: ServerProcess) -> None:
    too_large = post(server, "/v3/kv/put", {"key": b64(b"k"), "value": b64(b"v" * (2 * MAX_REQUEST_BYTES))})
    assert too_large.status_code == 400
    assert too_large.json()["message"] == "etcdserver: request is too large"
    over_grpc = post(server, "/v3/kv/put", {"key": b64(b"k"), "value": b64(b"v" * (600 * 1024))})
    assert over_grpc.status_code == 429
    assert over_grpc.json()["message"].startswith("grpc: received message larger than max (")
    with raw(server) as sock:  # a huge declared body is refused before it is sent
        sock.sendall(b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
        answer = read_until_closed(sock, 30)
    assert answer.startswith(b"HTTP/1.1 429 ")
    assert grpc_round_trip(server, b"after") == b"grpc:after"


def test_expect_100_continue_is_answered_before_the_body(etcdpy_server: ServerProcess) -> None:
    body = json.dumps({"key": b64(b"c"), "value": b64(b"x" * 2000)}).encode()
    with raw(etcdpy_server) as sock:
        sock.sendall(
            b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert read_until_closed(sock, 30).startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_slow_head_is_cut_off_while_everyone_else_is_served(etcdpy_server: ServerProcess) -> None:
    with raw(etcdpy_server) as slow:
        slow.sendall(b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\n")  # and never the end of the head
        assert grpc_round_trip(etcdpy_server, b"meanwhile") == b"grpc:meanwhile"
        assert post(etcdpy_server, "/v3/kv/range", {"key": b64(b"meanwhile")}).status_code == 200
        answer = read_until_closed(slow, 3 * HEAD_SECONDS)
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_many_idle_connections_do_not_stop_the_member(etcdpy_server: ServerProcess) -> None:
    idle: list[socket.socket] = []
    try:
        for _ in range(200):  # connected, never a byte: the front waits for their first bytes
            idle.append(raw(etcdpy_server))
        for _ in range(100):  # HTTP keep-alive connections left open after one request
            sock = raw(etcdpy_server)
            sock.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK")
            idle.append(sock)
        assert grpc_round_trip(etcdpy_server, b"busy") == b"grpc:busy"
        assert post(etcdpy_server, "/v3/kv/range", {"key": b64(b"busy")}).status_code == 200
    finally:
        for sock in idle:
            sock.close()


def test_a_watch_ends_when_its_client_goes_away(etcdpy_server: ServerProcess) -> None:
    def watchers() -> float:
        text = requests.get(f"{etcdpy_server.client_url}/metrics", timeout=30).text
        return sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("etcd_debugging_mvcc_watcher_total")
        )

    before = watchers()
    with raw(etcdpy_server) as sock:
        body = json.dumps({"create_request": {"key": b64(b"w")}}).encode()
        sock.sendall(
            b"POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        answer = b""
        while b'"created":true' not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 OK")
        assert watchers() == before + 1
    wait_until(lambda: watchers() == before, 30, "the watch outlived its connection")


def test_a_chunked_body_adds_watches_to_an_open_stream(etcdpy_server: ServerProcess) -> None:
    def chunk(obj: object) -> bytes:
        data = json.dumps(obj).encode() + b"\n"
        return b"%x\r\n%s\r\n" % (len(data), data)

    with raw(etcdpy_server) as sock, sock.makefile("rb") as reader:
        sock.sendall(b"POST /v3/watch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(chunk({"create_request": {"key": b64(b"one")}}))
        assert reader.readline().startswith(b"HTTP/1.1 200 OK")
        while reader.readline() != b"\r\n":
            pass
        lines = _stream_lines(reader)
        assert json.loads(next(lines))["result"]["created"] is True
        sock.sendall(chunk({"create_request": {"key": b64(b"two"), "watch_id": 7}}))
        second = json.loads(next(lines))["result"]
        assert (second["created"], second["watch_id"]) == (True, "7")
        post(etcdpy_server, "/v3/kv/put", {"key": b64(b"two"), "value": b64(b"2")})
        event = json.loads(next(lines))["result"]
        assert event["watch_id"] == "7"
        assert base64.b64decode(event["events"][0]["kv"]["key"]) == b"two"


def _stream_lines(reader: BinaryIO) -> Iterator[bytes]:
    """The newline-separated objects of a chunked body, read from a socket file."""
    pending = b""
    while True:
        size = int(reader.readline().strip(), 16)
        data = reader.read(size + 2)[:-2]
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            yield line


@pytest.mark.server_flags("--enable-grpc-gateway=false")
def test_without_the_gateway_only_v3_paths_go(server: ServerProcess) -> None:
    gone = post(server, "/v3/kv/range", {"key": b64(b"k")})
    assert (gone.status_code, gone.text) == (404, "404 page not found\n")
    assert requests.get(f"{server.client_url}/version", timeout=30).status_code == 200
    assert requests.get(f"{server.client_url}/health", timeout=30).json() == {"health": "true"}
    assert grpc_round_trip(server, b"k") == b"grpc:k"


@pytest.mark.server_flags("--experimental-client-front=off")
def test_without_the_front_grpcio_owns_the_port(server: ServerProcess) -> None:
    assert grpc_round_trip(server, b"direct") == b"grpc:direct"
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(f"{server.client_url}/version", timeout=30)  # grpcio does not speak HTTP/1.1


@pytest.fixture
def http_listeners(tmp_path: Path) -> Iterator[tuple[ServerProcess, int, int]]:
    """A member with an HTTP-only URL and a metrics URL: (member, http port, metrics port)."""
    http_port, metrics_port = free_port(), free_port()
    member = ServerProcess(
        "etcdpy",
        tmp_path / "data",
        extra_args=[
            f"--listen-client-http-urls=http://127.0.0.1:{http_port}",
            f"--listen-metrics-urls=http://localhost:{metrics_port}",
        ],
    )
    member.start()
    try:
        yield member, http_port, metrics_port
    finally:
        member.stop()


def test_http_only_and_metrics_listeners(http_listeners: tuple[ServerProcess, int, int]) -> None:
    member, http_port, metrics_port = http_listeners
    http_url, metrics_url = f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{metrics_port}"
    put = requests.post(
        f"{http_url}/v3/kv/put", data=json.dumps({"key": b64(b"k"), "value": b64(b"v")}), timeout=30
    )
    assert put.status_code == 200
    assert requests.get(f"{http_url}/version", timeout=30).status_code == 200
    channel = grpc.insecure_channel(f"127.0.0.1:{http_port}")
    with contextlib.closing(channel), pytest.raises(grpc.RpcError) as refused:
        rpc_pb2_grpc.KVStub(channel).Range(rpc_pb2.RangeRequest(key=b"k"), timeout=10)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE  # HTTP only: no gRPC there
    assert "etcd_server_has_leader 1" in requests.get(f"{metrics_url}/metrics", timeout=30).text
    assert requests.get(f"{metrics_url}/health", timeout=30).json() == {"health": "true"}
    assert requests.get(f"{metrics_url}/version", timeout=30).status_code == 404
    assert requests.post(f"{metrics_url}/v3/kv/range", data="{}", timeout=30).status_code == 404
    assert grpc_round_trip(member, b"k") == b"grpc:k"


def test_a_splicer_process_that_dies_is_replaced(etcdpy_server: ServerProcess) -> None:
    assert etcdpy_server.proc is not None
    member = etcdpy_server.proc.pid

    def splicer() -> int | None:
        for child in Path(f"/proc/{member}/task/{member}/children").read_text().split():
            if b"etcdpy.server.http.splicer" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
        return None

    first = splicer()
    assert first is not None
    os.kill(first, signal.SIGKILL)
    # The member sees its hand-off socket end and starts another splicer on the same listening sockets.
    wait_until(lambda: splicer() not in (None, first), 30, "no new splicer process")
    assert grpc_round_trip(etcdpy_server, b"again") == b"grpc:again"
    assert post(etcdpy_server, "/v3/kv/range", {"key": b64(b"again")}).status_code == 200
