"""Lease calls of `Client`: grant, revoke, time-to-live, list, and keep-alive over its stream.

A keep-alive stream whose token the server refuses (a member that checks auth on
the stream, after the token expired) authenticates again once and reopens.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import grpc
from google.protobuf.message import Message

from etcdpy.api.errors import ErrLeaseNotFound, EtcdError, UnknownEtcdError
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.etcdserverpb import rpc_pb2_grpc as rpc
from etcdpy.client.errors import from_rpc_error
from etcdpy.client.transport import Retry, UnaryMethod, stub_method
from etcdpy.client.watch import Reauthenticator, stream_reauthenticator

_LeaseStub: Any = rpc.LeaseStub  # the generated stubs are untyped


def _lease(name: str) -> Callable[[grpc.Channel], UnaryMethod]:
    return stub_method(rpc.LeaseStub, name)


def _keep_alive_once(channel: grpc.Channel) -> UnaryMethod:
    """LeaseKeepAlive as a unary call (one renewal, one answer), so the transport's failover applies."""
    open_stream = _LeaseStub(channel).LeaseKeepAlive

    def renew_once(
        request: pb.LeaseKeepAliveRequest, *, timeout: float, metadata: Sequence[tuple[str, str]] | None
    ) -> pb.LeaseKeepAliveResponse:
        responses = open_stream(iter([request]), timeout=timeout, metadata=metadata)
        try:
            response: pb.LeaseKeepAliveResponse | None = next(responses, None)
        finally:
            responses.cancel()
        if response is None:
            raise UnknownEtcdError(
                grpc.StatusCode.UNAVAILABLE, "lease keep-alive stream closed without an answer"
            )
        return response

    return renew_once


class _Calls(Protocol):
    command_timeout: float

    def _call(
        self,
        method: Callable[[grpc.Channel], UnaryMethod],
        request: Message,
        timeout: float | None,
        *,
        retry: Retry,
        endpoint: str | None = None,
    ) -> Any: ...

    def stream_channel(self) -> tuple[grpc.Channel, list[tuple[str, str]]]: ...

    def stream_metadata(self) -> list[tuple[str, str]]: ...

    def token_refused(self, error: EtcdError) -> bool: ...

    def reauthenticate(self, timeout: float | None = None) -> None: ...


class LeaseMixin:
    """The Lease service's calls (mixed into `Client`)."""

    def lease_grant(
        self: _Calls, ttl: int, lease_id: int = 0, *, timeout: float | None = None
    ) -> pb.LeaseGrantResponse:
        """Grant a lease of ``ttl`` seconds (the server raises it to its minimum); ID 0: the server picks."""
        response: pb.LeaseGrantResponse = self._call(
            _lease("LeaseGrant"), pb.LeaseGrantRequest(TTL=ttl, ID=lease_id), timeout, retry=Retry.REPEATABLE
        )
        return response

    def lease_revoke(self: _Calls, lease_id: int, *, timeout: float | None = None) -> pb.LeaseRevokeResponse:
        """Revoke a lease, deleting every key attached to it."""
        response: pb.LeaseRevokeResponse = self._call(
            _lease("LeaseRevoke"), pb.LeaseRevokeRequest(ID=lease_id), timeout, retry=Retry.REPEATABLE
        )
        return response

    def lease_time_to_live(
        self: _Calls, lease_id: int, *, keys: bool = False, timeout: float | None = None
    ) -> pb.LeaseTimeToLiveResponse:
        """Granted and remaining TTL (TTL -1: the lease is gone), with the attached keys if asked."""
        response: pb.LeaseTimeToLiveResponse = self._call(
            _lease("LeaseTimeToLive"),
            pb.LeaseTimeToLiveRequest(ID=lease_id, keys=keys),
            timeout,
            retry=Retry.READ,
        )
        return response

    def lease_leases(self: _Calls, *, timeout: float | None = None) -> pb.LeaseLeasesResponse:
        """Every lease's ID."""
        response: pb.LeaseLeasesResponse = self._call(
            _lease("LeaseLeases"), pb.LeaseLeasesRequest(), timeout, retry=Retry.READ
        )
        return response

    def lease_keep_alive_once(
        self: _Calls, lease_id: int, *, timeout: float | None = None
    ) -> pb.LeaseKeepAliveResponse:
        """Renew a lease once; ErrLeaseNotFound if it expired or was revoked (etcd answers TTL 0).

        Like a read, a renewal may be repeated, so it fails over to the next endpoint.
        """
        response: pb.LeaseKeepAliveResponse = self._call(
            _keep_alive_once, pb.LeaseKeepAliveRequest(ID=lease_id), timeout, retry=Retry.READ
        )
        if response.TTL <= 0:
            raise ErrLeaseNotFound()
        return response

    def lease_keep_alive(self: _Calls, lease_id: int) -> KeepAlive:
        """Renew a lease every third of its TTL until `KeepAlive.close`; iterate for the responses."""
        channel, _metadata = self.stream_channel()

        def open_call(requests: Iterator[pb.LeaseKeepAliveRequest]) -> KeepAliveCall:
            call: KeepAliveCall = _LeaseStub(channel).LeaseKeepAlive(
                requests, metadata=self.stream_metadata() or None
            )
            return call

        return KeepAlive(open_call, lease_id, reauthenticate=stream_reauthenticator(self))


class KeepAliveCall(Protocol):
    """The part of the streaming LeaseKeepAlive call a `KeepAlive` uses."""

    def __iter__(self) -> Iterator[pb.LeaseKeepAliveResponse]: ...

    def cancel(self) -> bool: ...


class KeepAlive:
    """A running keep-alive: yields each LeaseKeepAliveResponse; ends once the lease is gone (TTL 0)."""

    def __init__(
        self,
        open_call: Callable[[Iterator[pb.LeaseKeepAliveRequest]], KeepAliveCall],
        lease_id: int,
        *,
        reauthenticate: Reauthenticator | None = None,
    ) -> None:
        self.lease_id = lease_id
        self._open_call = open_call
        self._reauthenticate = reauthenticate
        self._closed = threading.Event()
        self._lock = threading.Lock()  # orders close against opening the call again
        # Set before the call starts: grpc's thread reads it as soon as the first request is sent.
        self._next_interval = 0.0
        self._call = open_call(self._requests())

    def _requests(self) -> Iterator[pb.LeaseKeepAliveRequest]:
        while not self._closed.is_set():
            yield pb.LeaseKeepAliveRequest(ID=self.lease_id)
            # The next renewal after a third of the TTL the server last reported (as etcd's client).
            self._closed.wait(self._next_interval or 0.5)

    def __iter__(self) -> Iterator[pb.LeaseKeepAliveResponse]:
        reauthenticated = False  # the current call was opened with a fresh token after a refusal
        try:
            while True:
                try:
                    for response in self._call:
                        if response.TTL <= 0:
                            return
                        reauthenticated = False
                        self._next_interval = max(response.TTL / 3.0, 0.5)
                        yield response
                    return
                except grpc.RpcError as err:
                    if self._closed.is_set():
                        return
                    failure = from_rpc_error(err)
                    if reauthenticated or self._reauthenticate is None or not self._reauthenticate(failure):
                        raise failure from None
                reauthenticated = True
                with self._lock:
                    if self._closed.is_set():
                        return
                    self._call = self._open_call(self._requests())
        finally:
            self.close()

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            self._call.cancel()
