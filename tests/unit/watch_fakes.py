"""Scripted Watch calls for `etcdpy.client.watch.Watch`: no server, no sockets."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.client.endpoints import Endpoint


def put(key: bytes, value: bytes, rev: int) -> kv_pb2.Event:
    return kv_pb2.Event(kv=kv_pb2.KeyValue(key=key, value=value, mod_revision=rev))


def events(*items: kv_pb2.Event) -> pb.WatchResponse:
    return pb.WatchResponse(header=pb.ResponseHeader(revision=items[-1].kv.mod_revision), events=items)


def created(rev: int) -> pb.WatchResponse:
    return pb.WatchResponse(header=pb.ResponseHeader(revision=rev), created=True)


def progress(rev: int) -> pb.WatchResponse:
    return pb.WatchResponse(header=pb.ResponseHeader(revision=rev), watch_id=-1)


class FakeRpcError(grpc.RpcError, grpc.Call):
    """A failed call as grpc raises it: a status code and details."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> None:
        return None

    def trailing_metadata(self) -> None:
        return None

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: object) -> bool:
        return False


BROKEN = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "Socket closed")


class FakeCall:
    """Yields its responses, then raises ``error`` (if any) or ends as a server-closed call does."""

    def __init__(self, responses: list[pb.WatchResponse], error: grpc.RpcError | None) -> None:
        self.responses = responses
        self.error = error
        self.cancelled = False

    def __iter__(self) -> Iterator[pb.WatchResponse]:
        yield from self.responses
        if self.error is not None:
            raise self.error

    def cancel(self) -> bool:
        self.cancelled = True
        return True


class FakeCluster:
    """Hands out scripted calls in order; records the endpoint and create request of each."""

    def __init__(self, calls: list[FakeCall]) -> None:
        self.calls = calls
        self.opened: list[tuple[str, pb.WatchCreateRequest]] = []

    def open(self, endpoint: Endpoint, requests: Iterator[pb.WatchRequest]) -> FakeCall:
        first = next(requests)
        self.opened.append((endpoint.text, first.create_request))
        return self.calls.pop(0) if self.calls else FakeCall([], BROKEN)
