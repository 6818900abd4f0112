"""`Client`: a small synchronous etcd v3 client over the generated gRPC stubs.

Responses are the protobuf messages themselves (``RangeResponse``,
``PutResponse`` ...), exactly as the server sent them; failures raise an
`EtcdError` (see `etcdpy.client.errors`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any

import grpc
from google.protobuf.message import Message

from etcdpy.api.errors import (
    ErrAuthNotEnabled,
    ErrAuthOldRevision,
    ErrInvalidAuthToken,
    ErrUserEmpty,
    EtcdError,
)
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.etcdserverpb import rpc_pb2_grpc as rpc
from etcdpy.client import requests as rq
from etcdpy.client.auth import AuthMixin, auth_method
from etcdpy.client.endpoints import Endpoint
from etcdpy.client.errors import from_rpc_error
from etcdpy.client.lease import LeaseMixin
from etcdpy.client.requests import Bytes, SortOrder, SortTarget
from etcdpy.client.transport import Retry, TLSConfig, Transport, UnaryMethod, stub_method
from etcdpy.client.watch import WatchMixin

DEFAULT_ENDPOINT = "127.0.0.1:2379"


def _kv(name: str) -> Callable[[grpc.Channel], UnaryMethod]:
    return stub_method(rpc.KVStub, name)


def _maintenance(name: str) -> Callable[[grpc.Channel], UnaryMethod]:
    return stub_method(rpc.MaintenanceStub, name)


def _cluster(name: str) -> Callable[[grpc.Channel], UnaryMethod]:
    return stub_method(rpc.ClusterStub, name)


class Client(AuthMixin, LeaseMixin, WatchMixin):
    """A connection to an etcd cluster through one or more endpoints.

    Every call has a deadline: ``timeout`` if given, else ``command_timeout``.
    ``user``/``password`` (both non-empty, or neither is used) authenticate
    lazily, before the first call; the token travels as the ``token`` metadata
    etcd expects.  When the server refuses the token (it expired, the member
    restarted, the auth store moved on, auth was enabled after the client
    found it off), the client authenticates again once and repeats the call,
    as etcd's Go client does (`token_refused`); streams do the same when they
    open.
    """

    def __init__(
        self,
        endpoints: Sequence[str] | str = (DEFAULT_ENDPOINT,),
        *,
        dial_timeout: float = 2.0,
        command_timeout: float = 5.0,
        keepalive_time: float = 2.0,
        keepalive_timeout: float = 6.0,
        user: str | None = None,
        password: str | None = None,
        tls: TLSConfig | None = None,
    ) -> None:
        texts = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        self.endpoints = [Endpoint.parse(text) for text in texts]
        self.command_timeout = command_timeout
        self._transport = Transport(
            self.endpoints,
            dial_timeout=dial_timeout,
            keepalive_time=keepalive_time,
            keepalive_timeout=keepalive_timeout,
            tls=tls,
        )
        # As etcd's Go client: a user without a password (or the reverse) sends no credentials at all.
        self._user = user if user and password else None
        self._password = password
        # None: not authenticated yet; "": auth was off when asked (calls carry no token).
        self._token: str | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._transport.close()

    # -- KV

    def get(
        self,
        key: Bytes,
        range_end: Bytes | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        limit: int = 0,
        revision: int = 0,
        sort_order: SortOrder = SortOrder.NONE,
        sort_target: SortTarget = SortTarget.KEY,
        serializable: bool = False,
        keys_only: bool = False,
        count_only: bool = False,
        timeout: float | None = None,
    ) -> pb.RangeResponse:
        """Read a key, a range ``[key, range_end)``, a prefix or everything from a key on."""
        request = rq.range_request(
            key,
            range_end,
            prefix=prefix,
            from_key=from_key,
            limit=limit,
            revision=revision,
            sort_order=sort_order,
            sort_target=sort_target,
            serializable=serializable,
            keys_only=keys_only,
            count_only=count_only,
        )
        return self.send_range(request, timeout=timeout)

    def send_range(self, request: pb.RangeRequest, *, timeout: float | None = None) -> pb.RangeResponse:
        """Send a prepared RangeRequest."""
        response: pb.RangeResponse = self._call(_kv("Range"), request, timeout, retry=Retry.READ)
        return response

    def put(
        self,
        key: Bytes,
        value: Bytes = b"",
        *,
        lease: int = 0,
        prev_kv: bool = False,
        ignore_value: bool = False,
        ignore_lease: bool = False,
        timeout: float | None = None,
    ) -> pb.PutResponse:
        """Write ``value`` under ``key`` (attached to ``lease`` if not 0)."""
        request = rq.put_request(
            key, value, lease=lease, prev_kv=prev_kv, ignore_value=ignore_value, ignore_lease=ignore_lease
        )
        return self.send_put(request, timeout=timeout)

    def send_put(self, request: pb.PutRequest, *, timeout: float | None = None) -> pb.PutResponse:
        """Send a prepared PutRequest."""
        response: pb.PutResponse = self._call(_kv("Put"), request, timeout, retry=Retry.AT_MOST_ONCE)
        return response

    def delete(
        self,
        key: Bytes,
        range_end: Bytes | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        prev_kv: bool = False,
        timeout: float | None = None,
    ) -> pb.DeleteRangeResponse:
        """Delete a key, a range, a prefix or everything from a key on."""
        request = rq.delete_request(key, range_end, prefix=prefix, from_key=from_key, prev_kv=prev_kv)
        return self.send_delete(request, timeout=timeout)

    def send_delete(
        self, request: pb.DeleteRangeRequest, *, timeout: float | None = None
    ) -> pb.DeleteRangeResponse:
        """Send a prepared DeleteRangeRequest."""
        response: pb.DeleteRangeResponse = self._call(
            _kv("DeleteRange"), request, timeout, retry=Retry.AT_MOST_ONCE
        )
        return response

    def txn(
        self,
        compare: Sequence[pb.Compare] = (),
        success: Sequence[pb.RequestOp] = (),
        failure: Sequence[pb.RequestOp] = (),
        *,
        timeout: float | None = None,
    ) -> pb.TxnResponse:
        """If every compare holds, run ``success``, else ``failure``, atomically at one revision."""
        return self.send_txn(
            pb.TxnRequest(compare=compare, success=success, failure=failure), timeout=timeout
        )

    def send_txn(
        self, request: pb.TxnRequest, *, timeout: float | None = None, repeatable: bool = False
    ) -> pb.TxnResponse:
        """Send a prepared TxnRequest.

        A txn that only reads may be sent again, as a Range may.  ``repeatable``
        is the caller's word that applying the txn twice does no harm, its answer
        read either way: a put guarded by the key's absence, a delete guarded by
        its create revision (see `etcdpy.client.transport`).  Any other txn is
        sent at most once.
        """
        if rq.read_only(request):
            retry = Retry.READ
        else:
            retry = Retry.REPEATABLE if repeatable else Retry.AT_MOST_ONCE
        response: pb.TxnResponse = self._call(_kv("Txn"), request, timeout, retry=retry)
        return response

    def compact(
        self, revision: int, *, physical: bool = False, timeout: float | None = None
    ) -> pb.CompactionResponse:
        """Discard history before ``revision`` (``physical``: wait until it is removed from disk)."""
        request = pb.CompactionRequest(revision=revision, physical=physical)
        response: pb.CompactionResponse = self._call(
            _kv("Compact"), request, timeout, retry=Retry.AT_MOST_ONCE
        )
        return response

    # -- maintenance and cluster

    def status(self, endpoint: str | None = None, *, timeout: float | None = None) -> pb.StatusResponse:
        """The status of one member: ``endpoint``, or whichever endpoint answers."""
        response: pb.StatusResponse = self._call(
            _maintenance("Status"), pb.StatusRequest(), timeout, retry=Retry.READ, endpoint=endpoint
        )
        return response

    def hash_kv(
        self, revision: int = 0, endpoint: str | None = None, *, timeout: float | None = None
    ) -> pb.HashKVResponse:
        """The hash of one member's KV history up to ``revision`` (0: all of it)."""
        response: pb.HashKVResponse = self._call(
            _maintenance("HashKV"),
            pb.HashKVRequest(revision=revision),
            timeout,
            retry=Retry.READ,
            endpoint=endpoint,
        )
        return response

    def defragment(
        self, endpoint: str | None = None, *, timeout: float | None = None
    ) -> pb.DefragmentResponse:
        """Defragment one member's storage: ``endpoint``, or whichever endpoint answers."""
        # Harmless when repeated: a member defragmented twice is as compact as once.
        response: pb.DefragmentResponse = self._call(
            _maintenance("Defragment"),
            pb.DefragmentRequest(),
            timeout,
            retry=Retry.REPEATABLE,
            endpoint=endpoint,
        )
        return response

    def snapshot(self, *, timeout: float | None = None) -> Iterator[pb.SnapshotResponse]:
        """Stream the first endpoint's snapshot: the db in blobs, then its sha256 (EtcdError on failure)."""
        channel, metadata = self.stream_channel()
        call = rpc.MaintenanceStub(channel).Snapshot(  # type: ignore[no-untyped-call]
            pb.SnapshotRequest(), metadata=metadata, timeout=timeout
        )
        try:
            yield from call
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None
        finally:
            call.cancel()

    def alarm(self, request: pb.AlarmRequest, *, timeout: float | None = None) -> pb.AlarmResponse:
        """Get, activate or deactivate alarms (`request.action`); answers the alarms concerned."""
        # GET reads; a DEACTIVATE or ACTIVATE resent after a lost answer changes nothing more.
        response: pb.AlarmResponse = self._call(_maintenance("Alarm"), request, timeout, retry=Retry.READ)
        return response

    def member_list(self, *, timeout: float | None = None) -> pb.MemberListResponse:
        """The cluster's members."""
        response: pb.MemberListResponse = self._call(
            _cluster("MemberList"), pb.MemberListRequest(), timeout, retry=Retry.READ
        )
        return response

    def member_add(
        self, peer_urls: list[str], *, is_learner: bool = False, timeout: float | None = None
    ) -> pb.MemberAddResponse:
        """Add a member (a learner if asked) with these peer URLs; it joins once started."""
        response: pb.MemberAddResponse = self._call(
            _cluster("MemberAdd"),
            pb.MemberAddRequest(peerURLs=peer_urls, isLearner=is_learner),
            timeout,
            retry=Retry.AT_MOST_ONCE,
        )
        return response

    def member_remove(self, member_id: int, *, timeout: float | None = None) -> pb.MemberRemoveResponse:
        """Remove a member from the cluster."""
        response: pb.MemberRemoveResponse = self._call(
            _cluster("MemberRemove"), pb.MemberRemoveRequest(ID=member_id), timeout, retry=Retry.AT_MOST_ONCE
        )
        return response

    def member_update(
        self, member_id: int, peer_urls: list[str], *, timeout: float | None = None
    ) -> pb.MemberUpdateResponse:
        """Change a member's peer URLs."""
        response: pb.MemberUpdateResponse = self._call(
            _cluster("MemberUpdate"),
            pb.MemberUpdateRequest(ID=member_id, peerURLs=peer_urls),
            timeout,
            retry=Retry.AT_MOST_ONCE,
        )
        return response

    def member_promote(self, member_id: int, *, timeout: float | None = None) -> pb.MemberPromoteResponse:
        """Promote a learner that has caught up with the leader to a voting member."""
        response: pb.MemberPromoteResponse = self._call(
            _cluster("MemberPromote"),
            pb.MemberPromoteRequest(ID=member_id),
            timeout,
            retry=Retry.AT_MOST_ONCE,
        )
        return response

    def move_leader(
        self, target_id: int, endpoint: str | None = None, *, timeout: float | None = None
    ) -> pb.MoveLeaderResponse:
        """Ask the leader (at ``endpoint``) to hand leadership to ``target_id``."""
        response: pb.MoveLeaderResponse = self._call(
            _maintenance("MoveLeader"),
            pb.MoveLeaderRequest(targetID=target_id),
            timeout,
            retry=Retry.AT_MOST_ONCE,
            endpoint=endpoint,
        )
        return response

    # -- plumbing

    def stream_channel(self) -> tuple[grpc.Channel, list[tuple[str, str]]]:
        """The channel (to the first endpoint) and metadata for a streaming call (watch, keep-alive).

        A stream retries a failed connection for ever, so a TLS handshake that fails its checks on
        every endpoint is raised here, at once (`TLSHandshakeError`).
        """
        metadata = self.stream_metadata()
        self._transport.check_handshakes(self.command_timeout)
        return self._transport.channel(self.endpoints[0]), metadata

    def stream_metadata(self) -> list[tuple[str, str]]:
        """The metadata a stream opens with now: the current token (fetched first if there is none)."""
        if self._user is not None and self._token is None:
            self.authenticate()
        return [("token", self._token)] if self._token else []

    def token_refused(self, error: EtcdError) -> bool:
        """Whether ``error`` says the server refused this client's token and a fresh one may help.

        etcd's Go client authenticates again on an invalid token, an auth revision that moved on,
        and "user name is empty" (the server saw no token) when it has a user and password.
        """
        if self._user is None:
            return False
        return isinstance(error, ErrInvalidAuthToken | ErrAuthOldRevision | ErrUserEmpty)

    def reauthenticate(self, timeout: float | None = None) -> None:
        """Drop the token and authenticate again (a stream calls it when its token was refused)."""
        self._token = None
        self.authenticate(timeout)

    def _call(
        self,
        method: Callable[[grpc.Channel], UnaryMethod],
        request: Message,
        timeout: float | None,
        *,
        retry: Retry,
        endpoint: str | None = None,
    ) -> Any:
        seconds = self.command_timeout if timeout is None else timeout
        deadline = time.monotonic() + seconds
        target = Endpoint.parse(endpoint) if endpoint is not None else None
        if self._user is not None and self._token is None:
            self.authenticate(seconds)
        try:
            return self._send(method, request, seconds, retry, target)
        except EtcdError as err:
            remaining = deadline - time.monotonic()
            if not self.token_refused(err) or remaining <= 0:
                raise
            # Simple tokens expire on the server; one fresh token, one retry within the call's time.
            # A refused request was not applied (refused before, or instead of, applying), so even
            # a write may be sent again.
            self.reauthenticate(remaining)
            return self._send(method, request, max(deadline - time.monotonic(), 0.001), retry, target)

    def _send(
        self,
        method: Callable[[grpc.Channel], UnaryMethod],
        request: Message,
        seconds: float,
        retry: Retry,
        endpoint: Endpoint | None,
    ) -> Any:
        metadata = [("token", self._token)] if self._token else []
        return self._transport.call(
            method, request, timeout=seconds, metadata=metadata, retry=retry, endpoint=endpoint
        )

    def authenticate(self, timeout: float | None = None) -> None:
        """Get a token for ``user``/``password`` now (calls do it lazily otherwise); no-op without a user."""
        if self._user is None:
            return
        seconds = self.command_timeout if timeout is None else timeout
        request = pb.AuthenticateRequest(name=self._user or "", password=self._password or "")
        try:
            response = self._transport.call(
                auth_method("Authenticate"), request, timeout=seconds, retry=Retry.READ
            )
        except ErrAuthNotEnabled:
            # etcd's Go client carries on without a token when auth is off (and fetches one on
            # "user name is empty" once it is on).
            self._token = ""
            return
        self._token = str(response.token)
