"""The member's grpc.aio server finds every RPC through one MethodTable (no registered methods).

The generated ``add_<Service>Servicer_to_server`` functions fill the table through
``add_registered_method_handlers``; were they regenerated without that call, the table would be
empty and every call would be UNIMPLEMENTED: these tests say so at once.
"""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from etcdpy.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.api.v3electionpb import v3election_pb2, v3election_pb2_grpc
from etcdpy.api.v3lockpb import v3lock_pb2, v3lock_pb2_grpc
from etcdpy.server.services import MethodTable


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def _mounted() -> MethodTable:
    table = MethodTable()
    mounts: list[tuple[Any, Any]] = [
        (rpc_pb2_grpc.add_KVServicer_to_server, rpc_pb2_grpc.KVServicer()),
        (rpc_pb2_grpc.add_WatchServicer_to_server, rpc_pb2_grpc.WatchServicer()),
        (rpc_pb2_grpc.add_LeaseServicer_to_server, rpc_pb2_grpc.LeaseServicer()),
        (rpc_pb2_grpc.add_ClusterServicer_to_server, rpc_pb2_grpc.ClusterServicer()),
        (rpc_pb2_grpc.add_MaintenanceServicer_to_server, rpc_pb2_grpc.MaintenanceServicer()),
        (rpc_pb2_grpc.add_AuthServicer_to_server, rpc_pb2_grpc.AuthServicer()),
        (v3lock_pb2_grpc.add_LockServicer_to_server, v3lock_pb2_grpc.LockServicer()),
        (v3election_pb2_grpc.add_ElectionServicer_to_server, v3election_pb2_grpc.ElectionServicer()),
        (health_pb2_grpc.add_HealthServicer_to_server, health.HealthServicer()),
    ]
    for add, servicer in mounts:
        add(servicer, table)
    return table


def test_every_method_of_every_service_is_found_by_its_path() -> None:
    table = _mounted()
    services = [
        *rpc_pb2.DESCRIPTOR.services_by_name.values(),
        *v3lock_pb2.DESCRIPTOR.services_by_name.values(),
        *v3election_pb2.DESCRIPTOR.services_by_name.values(),
        *health_pb2.DESCRIPTOR.services_by_name.values(),
    ]
    paths = [f"/{service.full_name}/{method.name}" for service in services for method in service.methods]
    assert len(paths) > 40
    missing = [path for path in paths if table.service(_Details(path)) is None]
    assert missing == []


def test_a_method_gets_its_own_handler_and_an_unknown_path_none() -> None:
    table = _mounted()
    put = table.service(_Details("/etcdserverpb.KV/Put"))
    assert put is not None and put.unary_unary is not None
    assert put.request_deserializer == rpc_pb2.PutRequest.FromString
    watch = table.service(_Details("/etcdserverpb.Watch/Watch"))
    assert watch is not None and watch.stream_stream is not None
    assert table.service(_Details("/etcdserverpb.KV/Nope")) is None
    assert table.service(_Details("/etcdserverpb.Nope/Put")) is None
