"""Thin gRPC adapters over EtcdServer, mounted on a grpc.aio server (default) or a threaded one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from etcdpy.api.etcdserverpb import rpc_pb2_grpc
from etcdpy.server.etcdserver import EtcdServer
from etcdpy.server.quota import BackendQuota
from etcdpy.server.services.auth import with_credentials
from etcdpy.server.services.cluster import ClusterService
from etcdpy.server.services.kv import KVService
from etcdpy.server.services.learner import gated
from etcdpy.server.services.maintenance import MaintenanceService
from etcdpy.server.services.threaded import on_loop

# Clients are served only once the member has published itself through the log, so a member whose
# listener answers at all reports SERVING; it does not follow leader loss.
SERVING = health_pb2.HealthCheckResponse.SERVING


def _servicers(
    server: EtcdServer, quota: BackendQuota, max_txn_ops: int
) -> list[tuple[Callable[..., None], type, object]]:
    """(generated add_* function, generated base class, our async servicer) for each etcd service."""
    return [
        (
            rpc_pb2_grpc.add_KVServicer_to_server,
            rpc_pb2_grpc.KVServicer,
            KVService(server, quota=quota, max_txn_ops=max_txn_ops),
        ),
        (
            rpc_pb2_grpc.add_MaintenanceServicer_to_server,
            rpc_pb2_grpc.MaintenanceServicer,
            MaintenanceService(server),
        ),
        (rpc_pb2_grpc.add_ClusterServicer_to_server, rpc_pb2_grpc.ClusterServicer, ClusterService(server)),
    ]


async def register_services(
    grpc_server: grpc.aio.Server,
    server: EtcdServer,
    *,
    quota: BackendQuota,
    max_txn_ops: int,
    extra: Sequence[tuple[Callable[..., None], type, object]] = (),
) -> None:
    """Add KV, Maintenance, Cluster, `extra` (add_*, base, servicer) and grpc.health.v1 to an aio server.

    KV checks this member's `quota` before proposing a write (give `extra`'s Lease service the same one).
    While the member is a learner, they refuse what learners do not serve (`gated`).  Each call runs
    with its credentials (token, certificate name) in reach of auth's checks (`with_credentials`).
    """
    for add, base, servicer in [*_servicers(server, quota, max_txn_ops), *extra]:
        add(gated(with_credentials(servicer, base), base, server.is_learner), grpc_server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]  # grpc-stubs lacks .aio
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    await health_servicer.set("", SERVING)


def register_threaded_services(
    grpc_server: grpc.Server,
    server: EtcdServer,
    loop: asyncio.AbstractEventLoop,
    *,
    quota: BackendQuota,
    max_txn_ops: int,
    extra: Sequence[tuple[Callable[..., None], type, object]] = (),
) -> None:
    """Add the same services (`extra` included) to grpcio's threaded server; calls run on `loop`.

    Streaming methods included: see threaded.py for how a stream crosses between the two.
    """
    for add, base, servicer in [*_servicers(server, quota, max_txn_ops), *extra]:
        add(
            on_loop(gated(with_credentials(servicer, base), base, server.is_learner), base, loop), grpc_server
        )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    health_servicer.set("", SERVING)
