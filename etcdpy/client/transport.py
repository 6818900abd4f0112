"""The seam between `Client` and the network: one gRPC channel per endpoint, with failover.

A call goes to the endpoint that answered last.  If that endpoint refuses the
connection the next one is tried, round and round (with a short backoff between
rounds), until the call's own deadline passes; then `ContextDeadlineExceeded` is
raised, the way etcd's Go client reports an unreachable cluster.  Once a request
may have been sent, only idempotent calls (reads) move on to another endpoint
after a transport failure: a write might have been applied.  (An endpoint that
accepts no packets at all holds a call until its deadline: grpc cannot tell a
slow connect from a slow answer without a connectivity watcher, whose polling
thread costs 0.2 s per channel close.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.message import Message

from etcdpy.api.errors import EtcdError, UnknownEtcdError
from etcdpy.client.endpoints import Endpoint
from etcdpy.client.errors import ContextDeadlineExceeded, from_rpc_error

ResponseT = TypeVar("ResponseT", bound=Message)

# grpc's texts for a connection that never came up (the request was not sent).
_CONNECT_FAILURES = ("failed to connect", "Failed to connect", "DNS resolution failed", "Connection refused")
_FIRST_BACKOFF = 0.025
MAX_ATTEMPTS = 100  # sends of one call, as etcd's client (defaultUnaryMaxRetries)
_MIN_KEEPALIVE_TIME = 10.0

# Go's client accepts messages up to MaxInt32 bytes by default; grpc-python's default is 4 MiB.
_MAX_MESSAGE_BYTES = 2**31 - 1


class UnaryMethod(Protocol):
    """A bound unary-unary stub method (``KVStub(channel).Range``)."""

    def __call__(
        self, request: Any, *, timeout: float, metadata: Sequence[tuple[str, str]] | None
    ) -> Any: ...


@dataclass(frozen=True)
class TLSConfig:
    """Client TLS: PEM files (all optional), and whether every endpoint uses TLS.

    Without ``always`` only ``https://`` endpoints use TLS; etcdctl sets it as
    soon as a TLS file is given or ``--insecure-transport=false``.
    """

    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    always: bool = False

    def credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials from the files (OSError when one cannot be read)."""

        def read(path: Path | None) -> bytes | None:
            return path.read_bytes() if path is not None else None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.cacert), private_key=read(self.key), certificate_chain=read(self.cert)
        )


class Transport:
    """Channels to a fixed list of endpoints and the failover loop over them."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        dial_timeout: float,
        keepalive_time: float,
        keepalive_timeout: float,
        tls: TLSConfig | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is required")
        self.endpoints = list(endpoints)
        self.dial_timeout = dial_timeout
        self._options = [
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            # grpc-go (etcd's own client) never pings more often than every 10 s, and etcd
            # answers faster pings on long streams with GOAWAY: clamp the same way.
            ("grpc.keepalive_time_ms", int(max(keepalive_time, _MIN_KEEPALIVE_TIME) * 1000)),
            ("grpc.keepalive_timeout_ms", int(keepalive_timeout * 1000)),
        ]
        self._tls = tls or TLSConfig()
        self._channels: dict[str, grpc.Channel] = {}
        # invariant: 0 <= _preferred < len(endpoints); the endpoint that answered last.
        self._preferred = 0

    def channel(self, endpoint: Endpoint) -> grpc.Channel:
        """The (lazily created, cached) channel to one endpoint."""
        channel = self._channels.get(endpoint.target)
        if channel is None:
            if endpoint.secure or self._tls.always:
                channel = grpc.secure_channel(endpoint.target, self._tls.credentials(), options=self._options)
            else:
                channel = grpc.insecure_channel(endpoint.target, options=self._options)
            self._channels[endpoint.target] = channel
        return channel

    def close(self) -> None:
        """Close every channel; the transport can still be used (channels reopen)."""
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def call(
        self,
        method: Callable[[grpc.Channel], UnaryMethod],
        request: Message,
        *,
        timeout: float,
        metadata: Sequence[tuple[str, str]] = (),
        idempotent: bool,
        endpoint: Endpoint | None = None,
    ) -> Any:
        """Send ``request`` through ``method`` (a stub method for a channel) before ``timeout``.

        With ``endpoint`` the call goes there only; otherwise the endpoints are
        tried in turn, starting with the one that answered last.  As etcd's client does,
        an idempotent call is sent again (to the next endpoint, or after a pause) on any
        UNAVAILABLE answer (no leader, leader changed, a learner, a broken connection),
        at most `MAX_ATTEMPTS` times in all, then fails with the last answer; any other
        call is sent again only when it never left.
        """
        deadline = time.monotonic() + timeout
        candidates = [endpoint] if endpoint is not None else self._rotation()
        backoff = _FIRST_BACKOFF
        attempts = 0
        while True:
            answered = False  # an endpoint answered UNAVAILABLE in this round (it is reachable)
            for ep in candidates:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ContextDeadlineExceeded()
                try:
                    response = method(self.channel(ep))(
                        request, timeout=remaining, metadata=tuple(metadata) or None
                    )
                except grpc.RpcError as err:
                    mapped = from_rpc_error(err)
                    attempts += 1
                    if attempts >= MAX_ATTEMPTS or not (
                        _not_sent(mapped) or (idempotent and _unavailable(mapped))
                    ):
                        raise mapped from None
                    answered = answered or not _transport_failure(mapped)
                    continue
                if endpoint is None:
                    self._preferred = self.endpoints.index(ep)
                return response
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ContextDeadlineExceeded()
            # Wait a little before the next round rather than spinning until the deadline: longer
            # each round while nothing is reachable (grpc reports refused connections at once), the
            # first pause again after an answer (the cluster is there, electing or the like).
            time.sleep(min(backoff, remaining))
            backoff = _FIRST_BACKOFF if answered else min(backoff * 2, self.dial_timeout)

    def stream_endpoints(self) -> list[Endpoint]:
        """Every endpoint, the one that answered last first: the order a stream fails over in."""
        return self._rotation()

    def _rotation(self) -> list[Endpoint]:
        return self.endpoints[self._preferred :] + self.endpoints[: self._preferred]


def _transport_failure(err: EtcdError) -> bool:
    """An UNAVAILABLE that is not one of etcd's own errors: the connection failed or broke."""
    return isinstance(err, UnknownEtcdError) and _unavailable(err)


def _unavailable(err: EtcdError) -> bool:
    """UNAVAILABLE: a failed connection, or one of etcd's own (no leader, leader changed, learner, ...)."""
    code = err.status_code if isinstance(err, UnknownEtcdError) else err.code
    return code == grpc.StatusCode.UNAVAILABLE


def _not_sent(err: EtcdError) -> bool:
    """A transport failure before the request left: safe to send elsewhere, even a write."""
    return _transport_failure(err) and any(marker in err.text for marker in _CONNECT_FAILURES)
