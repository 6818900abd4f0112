"""The seam between `Client` and the network: one gRPC channel per endpoint, failover and retries.

A call goes to the endpoint that answered last.  If that endpoint refuses the
connection the next one is tried, round and round (with a short backoff between
rounds), until the call's own deadline passes; then `ContextDeadlineExceeded` is
raised, the way etcd's Go client reports an unreachable cluster.

Once a request may have been sent, whether it is sent again depends on what it
does (its `Retry`), decided here and nowhere else (`may_resend`); a call is
sent at most `MAX_ATTEMPTS` times, to the next endpoint each time:

- ``READ`` (Range, a read-only Txn, Status, lease TTLs ...): on any UNAVAILABLE
  answer ("no leader", "leader changed", a broken connection ...), as etcd's
  client does for its repeatable RPCs.  A linearizable read whose ReadIndex was
  lost with a dead leader is answered "leader changed" as soon as its member
  learns of the new leader.
- ``REPEATABLE`` (a write applied twice to the same effect as once, or whose
  duplicate is harmless: lease grant and revoke, as in etcd's client, and the
  recipes' guarded txns): as a read, and also after an attempt unanswered for
  half of the call's time.  A proposal lost with a dead leader is answered only
  at the server's request timeout (5 s and two election timeouts), later than a
  client's default 5 s: without a second attempt the call would fail.
- ``AT_MOST_ONCE`` (every other write): only when the answer proves the request
  was not applied: it never left (the connection failed), or a learner refused
  it before looking at it.  "No leader" does not prove it: a member answers so
  when a proposal it queued or forwarded timed out, and the entry may still be
  committed; etcd's client never resends a write after such an answer either.

TLS (see `etcdpy.client.tls`): before its first call a TLS endpoint is probed
with one handshake of Python's `ssl`; an endpoint whose handshake fails a check
is not tried again, and when no endpoint is left the call fails at once with
that `TLSHandshakeError` rather than at its deadline.  A plaintext endpoint whose
server hangs up is asked once whether it speaks TLS.  Skipping verification goes
through a `TLSRelay`.

(An endpoint that accepts no packets at all holds a READ or AT_MOST_ONCE call
until its deadline: grpc cannot tell a slow connect from a slow answer without
a connectivity watcher, whose polling thread costs 0.2 s per channel close.)
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.message import Message

from etcdpy.api.errors import ErrNotSupportedForLearner, EtcdError, UnknownEtcdError
from etcdpy.client.endpoints import Endpoint
from etcdpy.client.errors import ContextDeadlineExceeded, from_rpc_error
from etcdpy.client.tls import TLSConfig, TLSHandshakeError, TLSMaterial, host_port, probe, speaks_tls
from etcdpy.client.tlsrelay import TLSRelay

__all__ = ["ATTEMPT_SHARE", "MAX_ATTEMPTS", "Retry", "TLSConfig", "Transport", "UnaryMethod", "may_resend"]

ResponseT = TypeVar("ResponseT", bound=Message)

# grpc's texts for a connection that never came up (the request was not sent).
_CONNECT_FAILURES = ("failed to connect", "Failed to connect", "DNS resolution failed", "Connection refused")
# grpc's texts for a connection the server accepted, then closed without speaking HTTP/2.
_HANG_UPS = ("Socket closed", "Connection reset", "End of TCP stream", "Broken pipe", "http1.x server")
_FIRST_BACKOFF = 0.025
MAX_ATTEMPTS = 100  # sends of one call, as etcd's client (defaultUnaryMaxRetries)
# The share of a REPEATABLE call's time one attempt may take before it is sent again.
ATTEMPT_SHARE = 0.5
_MIN_KEEPALIVE_TIME = 10.0

# Go's client accepts messages up to MaxInt32 bytes by default; grpc-python's default is 4 MiB.
_MAX_MESSAGE_BYTES = 2**31 - 1


class Retry(enum.Enum):
    """What a call does, which decides when it may be sent again (see the module docstring)."""

    READ = "read"  # changes nothing
    REPEATABLE = "repeatable"  # a write that does no harm when applied twice
    AT_MOST_ONCE = "at most once"  # any other write


class UnaryMethod(Protocol):
    """A bound unary-unary stub method (``KVStub(channel).Range``)."""

    def __call__(
        self, request: Any, *, timeout: float, metadata: Sequence[tuple[str, str]] | None
    ) -> Any: ...


def stub_method(stub: Callable[[grpc.Channel], Any], method: str) -> Callable[[grpc.Channel], UnaryMethod]:
    """``method`` of the generated ``stub`` class, bound to a channel when called with one (the generated
    stubs are untyped)."""

    def bind(channel: grpc.Channel) -> UnaryMethod:
        bound: UnaryMethod = getattr(stub(channel), method)
        return bound

    return bind


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
        # The files are read and checked once, up front (TLSFileError), whenever TLS may be used.
        uses_tls = self._tls.always or any(endpoint.secure for endpoint in self.endpoints)
        self._material: TLSMaterial | None = self._tls.load() if uses_tls else None
        self._relay: TLSRelay | None = None  # for insecure_skip_verify, made with the first channel
        self._relay_lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        # The pre-flight verdicts by target (see etcdpy.client.tls): None once a handshake passed, the
        # error once one failed; a target without an entry has not been reached yet.
        self._verdicts: dict[str, TLSHandshakeError | None] = {}
        # invariant: 0 <= _preferred < len(endpoints); the endpoint that answered last.
        self._preferred = 0

    def channel(self, endpoint: Endpoint) -> grpc.Channel:
        """The (lazily created, cached) channel to one endpoint."""
        channel = self._channels.get(endpoint.target)
        if channel is None:
            if not self._secure(endpoint):
                channel = grpc.insecure_channel(endpoint.target, options=self._options)
            elif self._tls.insecure_skip_verify and not endpoint.target.startswith("unix:"):
                channel = self._relayed_channel(endpoint)
            else:
                assert self._material is not None
                channel = grpc.secure_channel(
                    endpoint.target, self._material.credentials(), options=self._options
                )
            self._channels[endpoint.target] = channel
        return channel

    def close(self) -> None:
        """Close every channel; the transport can still be used (channels reopen)."""
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        if self._relay is not None:
            self._relay.close()
            self._relay = None

    def tls_verdict(self, endpoint: Endpoint, timeout: float) -> TLSHandshakeError | None:
        """The pre-flight handshake's verdict on a TLS endpoint (probed once it answers; see
        `etcdpy.client.tls`): the error if its handshake fails, else None."""
        if not self._secure(endpoint) or endpoint.target.startswith("unix:"):
            return None
        if endpoint.target in self._verdicts:
            return self._verdicts[endpoint.target]
        assert self._material is not None
        try:
            reason = probe(endpoint, self._material, min(timeout, self.dial_timeout))
        except (OSError, ValueError):
            return None  # not reached: no verdict yet, grpc's own connection attempts go on
        verdict = TLSHandshakeError(endpoint, reason) if reason is not None else None
        self._verdicts[endpoint.target] = verdict
        return verdict

    def plaintext_verdict(self, endpoint: Endpoint, timeout: float) -> TLSHandshakeError | None:
        """After the server at a plaintext ``endpoint`` hung up on a call: the error if it speaks TLS."""
        if self._secure(endpoint) or endpoint.target.startswith("unix:"):
            return None
        if endpoint.target not in self._verdicts:
            try:
                tls = speaks_tls(endpoint, min(timeout, self.dial_timeout))
            except (OSError, ValueError):
                return None  # not reached: no verdict yet
            reason = "the server expects TLS (use an https:// endpoint, or --cacert, --cert and --key)"
            self._verdicts[endpoint.target] = TLSHandshakeError(endpoint, reason) if tls else None
        return self._verdicts[endpoint.target]

    def check_handshakes(self, timeout: float) -> None:
        """Raise the first `TLSHandshakeError` if every endpoint fails its TLS handshake.

        The endpoints are tried in a stream's order, up to the first that passes or cannot be reached
        (a stream may still get through there): at most one probe per call once verdicts are known.
        """
        refused = []
        for endpoint in self.stream_endpoints():
            verdict = self.tls_verdict(endpoint, timeout)
            if verdict is None:
                return
            refused.append(verdict)
        raise refused[0]

    def _secure(self, endpoint: Endpoint) -> bool:
        return endpoint.secure or self._tls.always

    def _relayed_channel(self, endpoint: Endpoint) -> grpc.Channel:
        assert self._material is not None
        with self._relay_lock:  # threads share a client: one relay per transport
            if self._relay is None:
                self._relay = TLSRelay(self._material.ssl_context(verify=False))
        host, port = host_port(endpoint)
        options = [*self._options, ("grpc.default_authority", endpoint.target)]
        return grpc.insecure_channel(self._relay.listen(host, port), options=options)

    def call(
        self,
        method: Callable[[grpc.Channel], UnaryMethod],
        request: Message,
        *,
        timeout: float,
        metadata: Sequence[tuple[str, str]] = (),
        retry: Retry,
        endpoint: Endpoint | None = None,
    ) -> Any:
        """Send ``request`` through ``method`` (a stub method for a channel) before ``timeout``.

        With ``endpoint`` the call goes there only; otherwise the endpoints are
        tried in turn, starting with the one that answered last.  A failed
        attempt is followed by another (to the next endpoint, or after a pause)
        when `may_resend` allows it, at most `MAX_ATTEMPTS` in all; then the call
        fails with the last answer.
        """
        deadline = time.monotonic() + timeout
        # Only a REPEATABLE call may give up on an attempt and send the request again.
        attempt_limit = timeout * ATTEMPT_SHARE if retry is Retry.REPEATABLE else timeout
        candidates = [endpoint] if endpoint is not None else self._rotation()
        backoff = _FIRST_BACKOFF
        attempts = 0
        while True:
            answered = False  # an endpoint answered in this round (it is reachable)
            # Endpoints whose TLS handshake failed a check: tried no more; the call fails at once with
            # the first one's error when no other endpoint is left (a certificate does not heal itself).
            refused: list[TLSHandshakeError] = []
            for ep in candidates:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._expired()
                verdict = self.tls_verdict(ep, remaining)
                if verdict is not None:
                    refused.append(verdict)
                    continue
                attempt_timeout = min(remaining, attempt_limit)
                try:
                    response = method(self.channel(ep))(
                        request, timeout=attempt_timeout, metadata=tuple(metadata) or None
                    )
                except grpc.RpcError as err:
                    mapped = from_rpc_error(err)
                    attempts += 1
                    cut_short = attempt_timeout < remaining
                    if _hung_up(mapped):
                        verdict = self.plaintext_verdict(ep, deadline - time.monotonic())
                        if verdict is not None:
                            refused.append(verdict)
                            continue
                    if attempts >= MAX_ATTEMPTS or not may_resend(retry, mapped, cut_short=cut_short):
                        raise mapped from None
                    answered = answered or not _transport_failure(mapped)
                    continue
                if endpoint is None:
                    self._preferred = self.endpoints.index(ep)
                return response
            if len(refused) == len(candidates):
                raise refused[0]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._expired()
            # Wait a little before the next round rather than spinning until the deadline: longer
            # each round while nothing is reachable (grpc reports refused connections at once), the
            # first pause again after an answer (the cluster is there, electing or the like).
            time.sleep(min(backoff, remaining))
            backoff = _FIRST_BACKOFF if answered else min(backoff * 2, self.dial_timeout)

    def _expired(self) -> ContextDeadlineExceeded:
        """The error of a call whose time ran out: a failed handshake's, if an endpoint had one."""
        refused = [verdict for verdict in self._verdicts.values() if verdict is not None]
        return refused[0] if refused else ContextDeadlineExceeded()

    def stream_endpoints(self) -> list[Endpoint]:
        """Every endpoint, the one that answered last first: the order a stream fails over in."""
        return self._rotation()

    def _rotation(self) -> list[Endpoint]:
        return self.endpoints[self._preferred :] + self.endpoints[: self._preferred]


def may_resend(retry: Retry, error: EtcdError, *, cut_short: bool) -> bool:
    """Whether a call of kind ``retry`` that failed with ``error`` may be sent again.

    ``cut_short``: the attempt was given less than the call's remaining time, so
    its expiry (`ContextDeadlineExceeded`) is not the call's.
    """
    if _not_sent(error) or isinstance(error, ErrNotSupportedForLearner):
        return True  # not applied anywhere: safe for any call
    if retry is Retry.AT_MOST_ONCE:
        return False
    if isinstance(error, ContextDeadlineExceeded):
        return cut_short and retry is Retry.REPEATABLE
    return _unavailable(error)


def _transport_failure(err: EtcdError) -> bool:
    """An UNAVAILABLE that is not one of etcd's own errors: the connection failed or broke."""
    return isinstance(err, UnknownEtcdError) and _unavailable(err)


def _unavailable(err: EtcdError) -> bool:
    """UNAVAILABLE: a failed connection, or one of etcd's own (no leader, leader changed, learner, ...)."""
    code = err.status_code if isinstance(err, UnknownEtcdError) else err.code
    return code == grpc.StatusCode.UNAVAILABLE


def _hung_up(err: EtcdError) -> bool:
    """A transport failure where the server took the connection and closed it (a TLS server does so
    with a plaintext client); not one that found nobody there (refused, timed out)."""
    return _transport_failure(err) and any(marker in err.text for marker in _HANG_UPS)


def _not_sent(err: EtcdError) -> bool:
    """A transport failure before the request left: safe to send elsewhere, even a write."""
    return _transport_failure(err) and any(marker in err.text for marker in _CONNECT_FAILURES)
