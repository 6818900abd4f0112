"""CallContext: what the servicers use of grpc's ServicerContext, for a call that did not come through grpcio.

The JSON gateway (an HTTP request) and the client workers' channel (a call a worker process received and
forwarded: `etcdpy.server.workers`) call the member's servicers with one of these.  The servicers use
little of grpc's context: `abort` (here it raises `Aborted`, which the caller turns into its answer),
`invocation_metadata` (the auth token), `peer`, and `auth_context` (a client certificate's common name,
when the caller verified one: a worker serving TLS does).
"""

from __future__ import annotations

import logging
from typing import NamedTuple, NoReturn

import grpc

log = logging.getLogger("etcdpy.server")

UNDECODABLE = "grpc: error unmarshalling request: "  # etcd's (Go grpc's) answer, INTERNAL, then why


class Aborted(Exception):
    """A handler aborted its call (`CallContext.abort`): the status to answer."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class Metadatum(NamedTuple):
    """One metadata pair, as grpc hands them to servicers (``.key`` and ``.value``, or unpacked)."""

    key: str
    value: str | bytes  # bytes for the ``-bin`` keys, as grpc gives them


class CallContext:
    """A servicer context with the call's metadata and the client's address, and nothing else."""

    def __init__(self, metadata: tuple[Metadatum, ...], peer: str, common_name: str | None = None) -> None:
        self._metadata = metadata
        self._peer = peer
        self._auth = {"x509_common_name": [common_name.encode()]} if common_name is not None else {}

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise Aborted(code, details)

    def invocation_metadata(self) -> tuple[Metadatum, ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def time_remaining(self) -> float | None:
        return None  # the caller keeps the deadline (the HTTP client has none; a worker enforces grpc's)

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth  # a verified client certificate's common name, as grpc gives it

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return False


def unexpected(exc: BaseException, what: str) -> Aborted:
    """What grpc answers for an exception a handler did not expect (UNKNOWN, grpc.aio's wording)."""
    log.error("%s failed", what, exc_info=exc)
    return Aborted(grpc.StatusCode.UNKNOWN, f"Unexpected {type(exc)}: {exc}")
