"""Maintenance service: Status, Hash, HashKV, MoveLeader, Alarm, Defragment; others UNIMPLEMENTED for now."""

from __future__ import annotations

import asyncio
import logging

from etcdpy.api.alarms import alarm_text
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2, rpc_pb2_grpc
from etcdpy.server.etcdserver import EtcdServer
from etcdpy.server.services.common import Context, answers_unimplemented, maps_etcd_errors

log = logging.getLogger(__name__)


@answers_unimplemented
class MaintenanceService(rpc_pb2_grpc.MaintenanceServicer):
    """/etcdserverpb.Maintenance."""

    def __init__(self, server: EtcdServer) -> None:
        self.server = server

    @maps_etcd_errors
    async def Status(self, request: rpc_pb2.StatusRequest, context: Context) -> rpc_pb2.StatusResponse:
        response = self.server.status()
        # etcd lists its view of the active alarms after its own errors ("memberID:1 alarm:NOSPACE ").
        response.errors.extend(alarm_text(alarm) for alarm in self.server.alarms())
        return response

    @maps_etcd_errors
    async def Alarm(self, request: rpc_pb2.AlarmRequest, context: Context) -> rpc_pb2.AlarmResponse:
        # Every action, GET included, goes through the log as in etcd: the answer is the cluster's.
        response: rpc_pb2.AlarmResponse = await self.server.propose(
            raft_internal_pb2.InternalRaftRequest(alarm=request)
        )
        response.ClearField("header")  # etcd's AlarmResponse carries no header
        return response

    @maps_etcd_errors
    async def Hash(self, request: rpc_pb2.HashRequest, context: Context) -> rpc_pb2.HashResponse:
        return rpc_pb2.HashResponse(header=self.server.header(), hash=self.server.hash())

    @maps_etcd_errors
    async def HashKV(self, request: rpc_pb2.HashKVRequest, context: Context) -> rpc_pb2.HashKVResponse:
        hash_value, compact_revision, hash_revision = self.server.hash_kv(request.revision)
        header = self.server.header()
        header.revision = hash_revision
        return rpc_pb2.HashKVResponse(
            header=header, hash=hash_value, compact_revision=compact_revision, hash_revision=hash_revision
        )

    @maps_etcd_errors
    async def MoveLeader(
        self, request: rpc_pb2.MoveLeaderRequest, context: Context
    ) -> rpc_pb2.MoveLeaderResponse:
        await self.server.members.move_leader(request.targetID)
        return rpc_pb2.MoveLeaderResponse()  # etcd 3.4 answers without a header

    @maps_etcd_errors
    async def Defragment(
        self, request: rpc_pb2.DefragmentRequest, context: Context
    ) -> rpc_pb2.DefragmentResponse:
        # Online, unlike etcd's: LevelDB compacts on a worker thread while the loop serves reads and
        # writes; a second call waits for the running one (Backend.defragment).
        backend = self.server.applier.backend
        log.info("starting defragment")
        before = backend.size_bytes()
        await asyncio.to_thread(backend.defragment)
        log.info("finished defragment: %d -> %d bytes on disk", before, backend.size_bytes())
        return rpc_pb2.DefragmentResponse()  # etcd 3.4 answers without a header
