"""Watch calls of `Client`: one stream per `Watch`, fragments reassembled, failover to other endpoints.

A `Watch` whose stream breaks (the member died or the connection dropped:
UNAVAILABLE or INTERNAL, as etcd's Go client decides) opens a new stream on
the next endpoint and re-creates the watch from the revision after the last
one it delivered (its last event, or its last progress notification), so the
caller sees one stream: nothing missed, nothing twice.  The resumed stream's
created response is not handed on (the caller has had one).  A watch whose
next revision was compacted meanwhile ends with the server's compaction
cancel, as etcd's client reports it.  Failover goes round the endpoints for
as long as the watch is open (with a backoff once every endpoint has failed),
as etcd's client does; `close` ends it.

Under auth, a stream carries the client's token from when it opens.  A server
that refuses the token (etcd cancels the watch it was asked to create, its
reason "invalid auth token"; a stream may also fail with that status) gets one
fresh token and the watch is opened again on the same endpoint, from the same
revision: a token that expired while nothing watched costs the caller nothing.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import grpc

from etcdpy.api import errors
from etcdpy.api.errors import EtcdError, UnknownEtcdError
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.etcdserverpb import rpc_pb2_grpc as rpc
from etcdpy.client.endpoints import Endpoint
from etcdpy.client.errors import from_rpc_error
from etcdpy.client.requests import Bytes, _key_range
from etcdpy.client.transport import Transport

_WatchStub: Any = rpc.WatchStub  # the generated stubs are untyped

NOPUT = pb.WatchCreateRequest.NOPUT
NODELETE = pb.WatchCreateRequest.NODELETE

FIRST_BACKOFF = 0.05  # seconds before a new round of endpoints, once all of them failed
MAX_BACKOFF = 1.0
_RESUMABLE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL)


class WatchCall(Protocol):
    """The part of a streaming gRPC call a `Watch` uses (a fake one in tests)."""

    def __iter__(self) -> Iterator[pb.WatchResponse]: ...

    def cancel(self) -> bool: ...


StreamOpener = Callable[[Endpoint, Iterator[pb.WatchRequest]], WatchCall]
"""Opens the Watch call to one endpoint, sending what the iterator yields."""

LostCallback = Callable[[EtcdError], None]
"""Told why a stream broke, before the watch fails over."""

ResumedCallback = Callable[[Endpoint, int], None]
"""Told the endpoint a watch resumed on and the revision it resumed at (0: from the current one)."""

Reauthenticator = Callable[[EtcdError], bool]
"""Given why a stream was refused: True once it got a fresh token (worth opening the stream again)."""


class _Tokens(Protocol):
    def token_refused(self, error: EtcdError) -> bool: ...

    def reauthenticate(self, timeout: float | None = None) -> None: ...


class _Streams(_Tokens, Protocol):
    _transport: Transport
    command_timeout: float

    def stream_metadata(self) -> list[tuple[str, str]]: ...


def stream_reauthenticator(client: _Tokens) -> Reauthenticator:
    """The client's reaction to a refused stream: a fresh token if the error is about the token."""

    def reauthenticate(error: EtcdError) -> bool:
        if not client.token_refused(error):
            return False
        client.reauthenticate()
        return True

    return reauthenticate


def cancel_error(response: pb.WatchResponse) -> EtcdError | None:
    """The etcd error a cancel response's reason names (``rpc error: code = ... desc = <text>``), if any."""
    _, sep, text = response.cancel_reason.partition("desc = ")
    wanted = text if sep else response.cancel_reason
    for cls in errors.ALL:
        if cls.message == wanted:
            return cls()
    return None


def watch_create_request(
    key: Bytes,
    range_end: Bytes | None = None,
    *,
    prefix: bool = False,
    from_key: bool = False,
    start_revision: int = 0,
    prev_kv: bool = False,
    progress_notify: bool = False,
    filters: Sequence[pb.WatchCreateRequest.FilterType] = (),
    fragment: bool = False,
    watch_id: int = 0,
) -> pb.WatchCreateRequest:
    """A WatchCreateRequest; ``prefix``/``from_key`` override ``range_end`` as for ranges."""
    k, end = _key_range(key, range_end, prefix, from_key)
    return pb.WatchCreateRequest(
        key=k,
        range_end=end,
        start_revision=start_revision,
        prev_kv=prev_kv,
        progress_notify=progress_notify,
        filters=filters,
        fragment=fragment,
        watch_id=watch_id,
    )


class WatchMixin:
    """The Watch service's call (mixed into `Client`)."""

    def watch(
        self: _Streams,
        request: pb.WatchCreateRequest,
        *,
        on_lost: LostCallback | None = None,
        on_resumed: ResumedCallback | None = None,
    ) -> Watch:
        """Open a stream watching what ``request`` (see `watch_create_request`) describes.

        The stream starts on the endpoint that answered last and fails over to
        the others; ``on_lost`` and ``on_resumed`` are told when it does.
        """
        transport = self._transport
        self.stream_metadata()  # authenticate now: a wrong password fails here, not in the iteration
        # A stream retries its connection for ever: a TLS handshake failing on every endpoint fails here.
        transport.check_handshakes(self.command_timeout)

        def open_call(endpoint: Endpoint, requests: Iterator[pb.WatchRequest]) -> WatchCall:
            stub = _WatchStub(transport.channel(endpoint))
            # The token of the moment: a stream opened again after a refusal carries the fresh one.
            call: WatchCall = stub.Watch(requests, metadata=self.stream_metadata() or None)
            return call

        return Watch(
            open_call,
            transport.stream_endpoints(),
            request,
            on_lost=on_lost,
            on_resumed=on_resumed,
            reauthenticate=stream_reauthenticator(self),
        )


class Watch:
    """A watch stream: iterate for its WatchResponses (created, events, progress, cancel).

    Fragments are reassembled into one response.  The iteration ends after a
    cancel response or `close`; a failure that is not a broken stream raises
    its EtcdError.  `endpoint` is the endpoint the stream is on now.
    """

    def __init__(
        self,
        open_call: StreamOpener,
        endpoints: Sequence[Endpoint],
        create: pb.WatchCreateRequest,
        *,
        on_lost: LostCallback | None = None,
        on_resumed: ResumedCallback | None = None,
        reauthenticate: Reauthenticator | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("a watch needs at least one endpoint")
        self._open_call = open_call
        self._endpoints = list(endpoints)
        self._at = 0  # invariant: index in _endpoints of the endpoint the current call is on
        self._create = create
        self._on_lost = on_lost
        self._on_resumed = on_resumed
        self._reauthenticate = reauthenticate
        # invariant: every event below next_revision was delivered; 0 while a start-at-now watch
        # has no created response yet (a resume then starts at the then current revision too).
        self.next_revision = create.start_revision
        self._lock = threading.Lock()  # orders close against a failover opening a new call
        self._closed = threading.Event()
        self._cancel_requested = False
        self._requests: queue.Queue[pb.WatchRequest | None] = queue.Queue()
        self._call = self._open(self._create)

    @property
    def endpoint(self) -> Endpoint:
        """The endpoint the stream is on (or is being opened on)."""
        return self._endpoints[self._at]

    def _open(self, create: pb.WatchCreateRequest) -> WatchCall:
        """A call on the current endpoint whose first request is ``create`` (called with a fresh queue)."""
        self._requests.put(pb.WatchRequest(create_request=create))
        return self._open_call(self.endpoint, _drain(self._requests))

    def request_progress(self) -> None:
        """Ask for a progress response (watch_id -1) at the server's current revision."""
        self._requests.put(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))

    def cancel(self, watch_id: int = 0) -> None:
        """Ask the server to cancel the watcher; its answer (or a broken stream) ends the iteration."""
        self._cancel_requested = True
        self._requests.put(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=watch_id)))

    def close(self) -> None:
        """Drop the stream at once."""
        with self._lock:
            self._closed.set()
            self._requests.put(None)
            self._call.cancel()

    def __iter__(self) -> Iterator[pb.WatchResponse]:
        resumed_at: int | None = None  # the revision the current call resumed at, until it is created
        failures = 0  # consecutive calls that broke before answering
        reauthenticated = False  # the current call was opened with a fresh token after a refusal
        try:
            while True:
                refused = False  # the current call refused this client's token and a fresh one is here
                try:
                    for response in _whole(self._call):
                        failures = 0
                        if response.canceled and not reauthenticated and not self._cancel_requested:
                            refused = self._retry_with_fresh_token(cancel_error(response))
                            if refused:
                                break
                        if response.created and not response.canceled:
                            reauthenticated = False
                        if resumed_at is not None and response.created and not response.canceled:
                            if self._on_resumed is not None:
                                self._on_resumed(self.endpoint, resumed_at)
                            resumed_at = None
                            continue
                        self._advance(response)
                        yield response
                        if response.canceled:  # cancelled, refused or compacted: the only watcher is gone
                            return
                    else:
                        return  # the server ended the call without a cancel: nothing more will come
                except grpc.RpcError as err:
                    if self._closed.is_set():
                        return
                    failure = from_rpc_error(err)
                    refused = not reauthenticated and self._retry_with_fresh_token(failure)
                    if not refused:
                        if self._cancel_requested or not _resumable(failure):
                            raise failure from None
                        if self._on_lost is not None:
                            self._on_lost(failure)
                if refused:
                    reauthenticated = True
                    if not self._reopen(move=False):
                        return
                    continue
                failures += 1
                resumed_at = self._fail_over(failures)
                if resumed_at is None:
                    return
        finally:
            self.close()

    def _retry_with_fresh_token(self, refusal: EtcdError | None) -> bool:
        """Whether a refusal was about the token and a fresh one was fetched (the call is then reopened)."""
        return refusal is not None and self._reauthenticate is not None and self._reauthenticate(refusal)

    def _advance(self, response: pb.WatchResponse) -> None:
        """Move `next_revision` past what ``response`` vouches for (etcd's client does the same)."""
        if response.events:
            self.next_revision = response.events[-1].kv.mod_revision + 1
        elif response.created:
            if not self._create.start_revision:
                self.next_revision = response.header.revision + 1
        elif not response.canceled and response.header.revision:  # a progress notification
            self.next_revision = max(self.next_revision, response.header.revision + 1)

    def _fail_over(self, failures: int) -> int | None:
        """Open the watch again on the next endpoint; the revision it resumes at, None once closed."""
        if failures % len(self._endpoints) == 0:  # a whole round failed: give the cluster time
            rounds = min(failures // len(self._endpoints), 16)  # capped: a cluster may stay down for hours
            backoff = min(FIRST_BACKOFF * 2 ** (rounds - 1), MAX_BACKOFF)
            if self._closed.wait(backoff):
                return None
        return self.next_revision if self._reopen(move=True) else None

    def _reopen(self, *, move: bool) -> bool:
        """Open the watch again from `next_revision` (on the next endpoint if ``move``); False once closed."""
        resume = pb.WatchCreateRequest()
        resume.CopyFrom(self._create)
        resume.start_revision = self.next_revision
        with self._lock:
            if self._closed.is_set():
                return False
            self._requests.put(None)  # ends the old call's request iterator
            self._call.cancel()
            self._requests = queue.Queue()
            if move:
                self._at = (self._at + 1) % len(self._endpoints)
            self._call = self._open(resume)
        return True


def _drain(requests: queue.Queue[pb.WatchRequest | None]) -> Iterator[pb.WatchRequest]:
    while (request := requests.get()) is not None:
        yield request


def _whole(call: WatchCall) -> Iterator[pb.WatchResponse]:
    """The call's responses with fragments joined into one response."""
    pending: pb.WatchResponse | None = None
    for response in call:
        if response.fragment:
            if pending is None:
                pending = response
            else:
                pending.events.extend(response.events)
            continue
        if pending is not None:
            pending.events.extend(response.events)
            pending.header.CopyFrom(response.header)
            pending.fragment = False
            response, pending = pending, None
        yield response


def _resumable(failure: EtcdError) -> bool:
    """A broken stream (the member or the connection went away), not an answer: etcd's client retries.

    "no leader" is UNAVAILABLE too, but a member without a leader answers with it
    on purpose, and etcd's client gives up on it.
    """
    code = failure.status_code if isinstance(failure, UnknownEtcdError) else failure.code
    return code in _RESUMABLE_CODES and not isinstance(failure, errors.ErrNoLeader)
