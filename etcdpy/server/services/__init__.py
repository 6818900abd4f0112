"""Thin gRPC adapters over EtcdServer; `register_services` mounts them all on one grpc.aio server."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from etcdpy.api.etcdserverpb import rpc_pb2_grpc
from etcdpy.server.etcdserver import EtcdServer
from etcdpy.server.services.cluster import ClusterService
from etcdpy.server.services.kv import KVService
from etcdpy.server.services.maintenance import MaintenanceService


async def register_services(grpc_server: grpc.aio.Server, server: EtcdServer, *, max_txn_ops: int) -> None:
    """Add KV, Maintenance, Cluster and grpc.health.v1 (serving) to `grpc_server`."""
    # The generated add_* functions are untyped (generated code is excluded from mypy).
    rpc_pb2_grpc.add_KVServicer_to_server(  # type: ignore[no-untyped-call]
        KVService(server, max_txn_ops=max_txn_ops), grpc_server
    )
    rpc_pb2_grpc.add_MaintenanceServicer_to_server(  # type: ignore[no-untyped-call]
        MaintenanceService(server), grpc_server
    )
    rpc_pb2_grpc.add_ClusterServicer_to_server(ClusterService(server), grpc_server)  # type: ignore[no-untyped-call]
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]  # grpc-stubs lacks .aio
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    # Only one member exists, so the whole server is either serving or not running at all.
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
