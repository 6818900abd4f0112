"""The member's services, built once: thin adapters over EtcdServer, for grpcio and the HTTP gateway alike.

`build_services` makes one `Service` per etcd service (KV, Watch, Lease, Cluster, Maintenance, Auth,
Lock, Election), each servicer wrapped by `with_credentials` (each call runs with its token or
certificate name in reach of auth's checks) and `gated` (what a learner refuses).  grpcio mounts them with
`register_services` (grpc.aio) or `register_threaded_services` (grpcio's thread pool); the JSON
gateway (`etcdpy.server.http.gateway`) calls the very same handler objects by service and method name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from etcdpy.api.etcdserverpb import rpc_pb2_grpc
from etcdpy.api.v3electionpb import v3election_pb2_grpc
from etcdpy.api.v3lockpb import v3lock_pb2_grpc
from etcdpy.server.auth.gate import AuthGate
from etcdpy.server.etcdserver import EtcdServer
from etcdpy.server.lease import LeaseDriver, Lessor
from etcdpy.server.lease.forward import LeaderForwarder
from etcdpy.server.quota import BackendQuota
from etcdpy.server.recipes import Keyspace
from etcdpy.server.services.auth import AuthService, with_credentials
from etcdpy.server.services.cluster import ClusterService
from etcdpy.server.services.election import ElectionService
from etcdpy.server.services.kv import KVService
from etcdpy.server.services.learner import gated
from etcdpy.server.services.lease import LeaseService
from etcdpy.server.services.lock import LockService
from etcdpy.server.services.maintenance import MaintenanceService
from etcdpy.server.services.threaded import on_loop
from etcdpy.server.services.watch import WatchService, add_watch_servicer
from etcdpy.server.watch import WatchHub

# Clients are served only once the member has published itself through the log, so a member whose
# listener answers at all reports SERVING; it does not follow leader loss.
SERVING = health_pb2.HealthCheckResponse.SERVING


@dataclass(frozen=True)
class Service:
    """One etcd service: its full gRPC name, how grpcio mounts it, and the handlers both transports call.

    `handlers` has one async method per RPC of `base` (the generated servicer class), named as the RPC;
    unary ones take (request, context) and return the response, streaming ones are async generators.
    """

    name: str  # "etcdserverpb.KV": the gRPC service name, as in /etcdserverpb.KV/Range
    add: Callable[[Any, Any], None]  # the generated add_<Service>Servicer_to_server (or watch's own)
    base: type  # the generated <Service>Servicer
    handlers: Any


@dataclass(frozen=True)
class ServiceParts:
    """What the services are built from: the member's parts and the two limits they enforce."""

    server: EtcdServer
    hub: WatchHub
    lessor: Lessor
    lease_driver: LeaseDriver
    forwarder: LeaderForwarder
    quota: BackendQuota  # this member's: KV and Lease check it before proposing a write
    max_txn_ops: int
    max_request_bytes: int  # the largest watch response a stream sends in one piece
    auth: AuthGate  # the member's auth checks (watch creation checks the range; the Auth service)
    client_certs: bool  # whether the client listeners ask for certificates (whose common name auth may use)


def build_services(parts: ServiceParts) -> tuple[Service, ...]:
    """Every etcd service of the member, its handlers refusing what learners do not serve."""
    server = parts.server
    keyspace = Keyspace(server, parts.hub, parts.lessor)
    plain: list[tuple[str, Callable[[Any, Any], None], type, object]] = [
        (
            "etcdserverpb.KV",
            rpc_pb2_grpc.add_KVServicer_to_server,
            rpc_pb2_grpc.KVServicer,
            KVService(server, quota=parts.quota, max_txn_ops=parts.max_txn_ops),
        ),
        (
            "etcdserverpb.Watch",
            add_watch_servicer,
            rpc_pb2_grpc.WatchServicer,
            WatchService(parts.hub, max_response_bytes=parts.max_request_bytes, auth=parts.auth),
        ),
        (
            "etcdserverpb.Lease",
            rpc_pb2_grpc.add_LeaseServicer_to_server,
            rpc_pb2_grpc.LeaseServicer,
            LeaseService(server, parts.lessor, parts.lease_driver, parts.forwarder, quota=parts.quota),
        ),
        (
            "etcdserverpb.Cluster",
            rpc_pb2_grpc.add_ClusterServicer_to_server,
            rpc_pb2_grpc.ClusterServicer,
            ClusterService(server),
        ),
        (
            "etcdserverpb.Maintenance",
            rpc_pb2_grpc.add_MaintenanceServicer_to_server,
            rpc_pb2_grpc.MaintenanceServicer,
            MaintenanceService(server),
        ),
        (
            "etcdserverpb.Auth",
            rpc_pb2_grpc.add_AuthServicer_to_server,
            rpc_pb2_grpc.AuthServicer,
            AuthService(server, parts.auth),
        ),
        (
            "v3lockpb.Lock",
            v3lock_pb2_grpc.add_LockServicer_to_server,
            v3lock_pb2_grpc.LockServicer,
            LockService(keyspace),
        ),
        (
            "v3electionpb.Election",
            v3election_pb2_grpc.add_ElectionServicer_to_server,
            v3election_pb2_grpc.ElectionServicer,
            ElectionService(keyspace),
        ),
    ]
    return tuple(
        Service(
            name,
            add,
            base,
            gated(with_credentials(servicer, base, client_certs=parts.client_certs), base, server.is_learner),
        )
        for name, add, base, servicer in plain
    )


_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class MethodTable(grpc.GenericRpcHandler):  # type: ignore[type-arg]  # generic in grpc-stubs only
    """Every method of the services mounted on it, found by its path with one dict lookup.

    The generated ``add_<Service>Servicer_to_server`` functions mount a service twice: as a generic
    handler and as registered methods. grpc.aio keeps one pending request per registered method and
    waits on all of them (about fifty with etcd's services) for every incoming call; mounted as this
    one generic handler, a put costs the member about 7 % less CPU (bench/RESULTS.md, 2026-12-07,
    "grpc.aio without registered methods"). Pass the table where those functions expect a server, then
    add it to the server.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, _Handler] = {}

    def add_generic_rpc_handlers(self, handlers: Sequence[Any]) -> None:
        """Ignored: the generated code passes the same methods to `add_registered_method_handlers`."""

    def add_registered_method_handlers(self, service: str, handlers: dict[str, _Handler]) -> None:
        for method, handler in handlers.items():
            self._handlers[f"/{service}/{method}"] = handler

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> _Handler | None:
        return self._handlers.get(handler_call_details.method)


async def register_services(grpc_server: grpc.aio.Server, services: Sequence[Service]) -> None:
    """Mount `services` and grpc.health.v1 on a grpc.aio server, as one `MethodTable`."""
    table = MethodTable()
    for service in services:
        service.add(service.handlers, table)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]  # grpc-stubs lacks .aio
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, table)
    grpc_server.add_generic_rpc_handlers((table,))
    await health_servicer.set("", SERVING)


def register_threaded_services(
    grpc_server: grpc.Server, services: Sequence[Service], loop: asyncio.AbstractEventLoop
) -> None:
    """Mount the same `services` on grpcio's threaded server; calls run on `loop`.

    Streaming methods included: see threaded.py for how a stream crosses between the two.
    """
    for service in services:
        service.add(on_loop(service.handlers, service.base, loop), grpc_server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    health_servicer.set("", SERVING)
