"""etcdpy.client pieces with no server: range ends, requests, endpoints, the public API, retries."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from watch_fakes import FakeRpcError

import etcdpy.client as client_api
from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.client import (
    Client,
    ContextDeadlineExceeded,
    Endpoint,
    SortOrder,
    SortTarget,
    prefix_range_end,
)
from etcdpy.client import requests as rq
from etcdpy.client.transport import MAX_ATTEMPTS, Retry, Transport


@pytest.mark.parametrize(
    ("prefix", "end"), [(b"a", b"b"), (b"a\xff", b"b"), (b"\xff\xff", b"\0"), (b"", b"\0"), (b"ab", b"ac")]
)
def test_prefix_range_end(prefix: bytes, end: bytes) -> None:
    assert prefix_range_end(prefix) == end


def test_range_request_follows_the_go_clients_rules() -> None:
    assert rq.range_request("", prefix=True).range_end == b"\0"
    assert rq.range_request("", prefix=True).key == b"\0"
    assert rq.range_request("k", from_key=True).range_end == b"\0"
    ascend_by_key = rq.range_request("k", sort_order=SortOrder.ASCEND, sort_target=SortTarget.KEY)
    assert ascend_by_key.sort_order == SortOrder.NONE  # the server's natural order already
    assert rq.range_request(b"\xff", revision=-5).revision == 0


def test_endpoint_parsing() -> None:
    assert Endpoint.parse("127.0.0.1:2379") == Endpoint("127.0.0.1:2379", "127.0.0.1:2379", secure=False)
    assert Endpoint.parse("https://h:1/") == Endpoint("https://h:1/", "h:1", secure=True)
    assert Endpoint.parse("unix:///tmp/s").target == "unix:///tmp/s"
    with pytest.raises(ValueError, match="unknown endpoint scheme"):
        Endpoint.parse("ftp://h:1")


def test_public_api_is_curated() -> None:
    assert sorted(client_api.__all__) == sorted(set(client_api.__all__))
    for name in client_api.__all__:
        assert hasattr(client_api, name), name


def test_nothing_reachable_is_context_deadline_exceeded() -> None:
    with Client(["127.0.0.1:1"], command_timeout=0.3) as c:
        start = time.monotonic()
        with pytest.raises(ContextDeadlineExceeded) as info:
            c.get("k")
        assert info.value.text == "context deadline exceeded"
        assert 0.25 <= time.monotonic() - start < 3


@pytest.mark.parametrize(
    ("error", "retry", "retried"),
    [
        (errors.ErrLeaderChanged, Retry.READ, True),
        (errors.ErrNoLeader, Retry.READ, True),
        (errors.ErrNotSupportedForLearner, Retry.READ, True),
        (errors.ErrLeaderChanged, Retry.AT_MOST_ONCE, False),  # a write may have happened: never sent twice
        (errors.ErrKeyNotFound, Retry.READ, False),
    ],
)
def test_an_idempotent_call_answered_unavailable_goes_to_the_next_endpoint(
    error: type[errors.EtcdError], retry: Retry, retried: bool
) -> None:
    transport = Transport(
        [Endpoint.parse("127.0.0.1:1"), Endpoint.parse("127.0.0.1:2")],
        dial_timeout=1,
        keepalive_time=30,
        keepalive_timeout=5,
    )
    asked: list[object] = []  # the channel of each attempt

    def method(channel: object) -> Callable[..., str]:
        def call(request: object, timeout: float, metadata: object) -> str:
            asked.append(channel)
            if len(asked) == 1:
                raise FakeRpcError(error.code, error.message)
            return "answer"

        return call

    try:
        if retried:
            assert transport.call(method, rpc_pb2.RangeRequest(), timeout=2, retry=retry) == "answer"
            assert len(asked) == 2
        else:
            with pytest.raises(error):
                transport.call(method, rpc_pb2.RangeRequest(), timeout=2, retry=retry)
            assert len(asked) == 1
    finally:
        transport.close()


def test_an_endpoint_that_keeps_answering_unavailable_gives_its_answer_after_max_attempts() -> None:
    """etcdctl against a learner prints the learner's refusal, not a deadline."""
    transport = Transport(
        [Endpoint.parse("127.0.0.1:1")], dial_timeout=1, keepalive_time=30, keepalive_timeout=5
    )
    asked = 0

    def method(channel: object) -> Callable[..., str]:
        def call(request: object, timeout: float, metadata: object) -> str:
            nonlocal asked
            asked += 1
            raise FakeRpcError(
                errors.ErrNotSupportedForLearner.code, errors.ErrNotSupportedForLearner.message
            )

        return call

    try:
        with pytest.raises(errors.ErrNotSupportedForLearner):
            transport.call(method, rpc_pb2.RangeRequest(), timeout=30, retry=Retry.READ)
        assert asked == MAX_ATTEMPTS
    finally:
        transport.close()
