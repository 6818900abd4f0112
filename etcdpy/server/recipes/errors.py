"""The errors of the Lock and Election services, as etcd sends them: every one with code UNKNOWN.

etcd serves v3lock and v3election through an in-process client, whose errors
carry no gRPC status, so grpc-go sends each as UNKNOWN with the error's text,
including the KV and lease errors that the KV service sends with their own
codes (a Lock with a missing lease: UNKNOWN "etcdserver: requested lease not
found"; etcd 3.4.23 answers so).  `reports_errors_as_unknown` does the same
for any `EtcdError` a handler raises.  The recipes' own errors are in the one table,
`etcdpy.api.errors` (``ErrSessionExpired`` ...), shared with the client's recipes.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

import grpc

from etcdpy.api.errors import (
    ErrElectionNoLeader,
    ErrElectionNotLeader,
    ErrMissingLeaderKey,
    ErrSessionExpired,
    EtcdError,
)
from etcdpy.server.services.common import Handler

__all__ = [
    "ErrElectionNoLeader",
    "ErrElectionNotLeader",
    "ErrMissingLeaderKey",
    "ErrSessionExpired",
    "reports_errors_as_unknown",
]


Req = TypeVar("Req")
Resp = TypeVar("Resp")


def reports_errors_as_unknown(handler: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Wrap a unary servicer method so an EtcdError aborts the call with UNKNOWN and etcd's text."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext[Req, Resp]) -> Resp:
        try:
            return await handler(self, request, context)
        except EtcdError as err:
            await context.abort(grpc.StatusCode.UNKNOWN, err.text)

    return wrapper
