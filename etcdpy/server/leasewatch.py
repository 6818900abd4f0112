"""LeaseWatch: a member's lessor, watch hub and lease driver, and the services over them.

`main` attaches it to the member before the member starts applying entries (lease
requests in the log need the lessor), starts its tasks, and passes its servicers
to the gRPC server::

    lease_watch = LeaseWatch.attach(server, election_timeout_ms=config.election_timeout_ms)
    ...register_services(..., extra=lease_watch.servicers(max_response_bytes))
    tasks = lease_watch.start(); ...; await lease_watch.stop()

After a raft snapshot replaced the database, `reload` runs with the applier's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from etcdpy.api.etcdserverpb import rpc_pb2_grpc
from etcdpy.api.v3electionpb import v3election_pb2_grpc
from etcdpy.api.v3lockpb import v3lock_pb2_grpc
from etcdpy.server.etcdserver import EtcdServer
from etcdpy.server.lease import LeaseDriver, Lessor, min_lease_ttl
from etcdpy.server.lease.forward import LeaderForwarder
from etcdpy.server.recipes import Keyspace
from etcdpy.server.services.election import ElectionService
from etcdpy.server.services.lease import LeaseService
from etcdpy.server.services.lock import LockService
from etcdpy.server.services.watch import WatchService, add_watch_servicer
from etcdpy.server.watch import WatchHub

Servicer = tuple[Callable[..., None], type, object]  # (generated add_*_to_server, generated base, servicer)


class LeaseWatch:
    """LeaseWatch owns the lease and watch state of one member."""

    def __init__(self, server: EtcdServer, lessor: Lessor, *, checkpoint: bool = True) -> None:
        self.server = server
        self.lessor = lessor
        self.hub = WatchHub(server.applier.store, fill_header=server.fill_header)
        self.driver = LeaseDriver(lessor, server.propose, is_leader=self.is_leader, checkpoint=checkpoint)
        self.forwarder = LeaderForwarder(self.leader_client_urls)
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def attach(cls, server: EtcdServer, *, election_timeout_ms: int, checkpoint: bool = True) -> LeaseWatch:
        """Make the member's applier apply lease requests and publish events to a new hub.

        Call before the member applies anything (before ``server.start``).
        """
        applier = server.applier
        lessor = Lessor(applier.backend, min_ttl=min_lease_ttl(election_timeout_ms))
        applier.store.leases = lessor
        for kind, handler in lessor.handlers().items():
            applier.register(kind, handler)
        lessor.restore_keys(applier.store.leased_keys())
        self = cls(server, lessor, checkpoint=checkpoint)
        applier.on_events = self.hub.on_events
        applier.on_reload.append(self.reload)  # a raft snapshot replaced the database
        return self

    def is_leader(self) -> bool:
        """The hook the lease driver follows: only the leader counts leases down."""
        return bool(self.server.log.leader_id == self.server.cluster.local_id)

    def leader_client_urls(self) -> list[str]:
        leader = self.server.cluster.members.get(self.server.log.leader_id)
        return list(leader.clientURLs) if leader is not None else []

    def reload(self) -> None:
        """Re-read leases after the database content was replaced (raft snapshot installed)."""
        self.lessor.reload()
        self.lessor.restore_keys(self.server.applier.store.leased_keys())
        self.hub.restore(self.server.applier.current_revision)

    def servicers(self, max_response_bytes: int) -> list[Servicer]:
        """Watch, Lease, and the Lock and Election services that wait on this member's watch hub."""
        keyspace = Keyspace(self.server, self.hub, self.lessor)
        return [
            (
                add_watch_servicer,
                rpc_pb2_grpc.WatchServicer,
                WatchService(self.hub, max_response_bytes=max_response_bytes),
            ),
            (
                rpc_pb2_grpc.add_LeaseServicer_to_server,
                rpc_pb2_grpc.LeaseServicer,
                LeaseService(self.server, self.lessor, self.driver, self.forwarder),
            ),
            (v3lock_pb2_grpc.add_LockServicer_to_server, v3lock_pb2_grpc.LockServicer, LockService(keyspace)),
            (
                v3election_pb2_grpc.add_ElectionServicer_to_server,
                v3election_pb2_grpc.ElectionServicer,
                ElectionService(keyspace),
            ),
        ]

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.hub.run(), name="etcdpy-watch"),
            loop.create_task(self.driver.run(), name="etcdpy-leases"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        self._tasks = []
        await self.forwarder.close()
