"""Client-side errors, next to the server errors of `etcdpy.api.errors`.

Every failure a `Client` call raises is an `EtcdError`::

    EtcdError (etcdpy.api.errors)       the server answered with an etcd error (ErrCompacted, ...)
     +-- UnknownEtcdError               a status the table does not know (text kept)
     +-- ContextDeadlineExceeded        no answer within the call's timeout (nothing reachable,
     |                                  or the server too slow): Go's "context deadline exceeded"
     +-- ContextCanceled                the call was cancelled on the client side

The two client-side texts are the ones etcd's Go client reports, so the CLI's
``Error: ...`` line reads exactly as etcdctl's.
"""

from __future__ import annotations

import grpc

from etcdpy.api import errors
from etcdpy.api.errors import EtcdError, UnknownEtcdError

__all__ = ["ContextCanceled", "ContextDeadlineExceeded", "EtcdError", "UnknownEtcdError", "from_rpc_error"]


class ContextDeadlineExceeded(EtcdError):
    """No answer arrived before the call's deadline."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    message = "context deadline exceeded"


class ContextCanceled(EtcdError):
    """The call was cancelled by the client before an answer arrived."""

    code = grpc.StatusCode.CANCELLED
    message = "context canceled"


def from_rpc_error(err: grpc.RpcError) -> EtcdError:
    """Map a failed gRPC call to the `EtcdError` the caller should see."""
    code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
    text = (err.details() if isinstance(err, grpc.Call) else None) or ""
    mapped = errors.from_status(code, text)
    if isinstance(mapped, UnknownEtcdError):
        # Client-side expiry carries grpc's own text ("Deadline Exceeded"), not etcd's.
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ContextDeadlineExceeded()
        if code == grpc.StatusCode.CANCELLED:
            return ContextCanceled()
    return mapped
