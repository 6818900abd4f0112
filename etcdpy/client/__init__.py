"""etcdpy's Python client for etcd's v3 API (works against etcd and etcdpy alike).

    from etcdpy.client import Client
    with Client(["127.0.0.1:2379"]) as c:
        c.put("foo", "bar")
        print(c.get("foo").kvs[0].value)

Responses are the protobuf messages of `etcdpy.api.etcdserverpb.rpc_pb2`;
failures raise `EtcdError` subclasses (`etcdpy.api.errors`, `etcdpy.client.errors`).
TLS: ``Client("https://...", tls=TLSConfig(cacert=..., cert=..., key=...))``; unusable files raise
`TLSFileError` when the client is made, a failed handshake `TLSHandshakeError` (`etcdpy.client.tls`).
"""

from etcdpy.api.errors import EtcdError
from etcdpy.client.auth import PermissionType
from etcdpy.client.client import DEFAULT_ENDPOINT, Client
from etcdpy.client.endpoints import Endpoint, split_endpoints
from etcdpy.client.errors import ContextCanceled, ContextDeadlineExceeded
from etcdpy.client.requests import (
    CompareResult,
    CompareTarget,
    SortOrder,
    SortTarget,
    compare,
    op_delete,
    op_get,
    op_put,
    op_txn,
    prefix_range_end,
)
from etcdpy.client.tls import TLSConfig, TLSFileError, TLSHandshakeError

__all__ = [
    "DEFAULT_ENDPOINT",
    "Client",
    "CompareResult",
    "CompareTarget",
    "ContextCanceled",
    "ContextDeadlineExceeded",
    "Endpoint",
    "EtcdError",
    "PermissionType",
    "SortOrder",
    "SortTarget",
    "TLSConfig",
    "TLSFileError",
    "TLSHandshakeError",
    "compare",
    "op_delete",
    "op_get",
    "op_put",
    "op_txn",
    "prefix_range_end",
    "split_endpoints",
]
