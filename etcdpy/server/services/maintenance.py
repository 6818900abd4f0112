"""Maintenance service: Status, Hash, HashKV, MoveLeader and Alarm; the rest answer UNIMPLEMENTED for now."""

from __future__ import annotations

import grpc

from etcdpy.api import errors
from etcdpy.api.alarms import alarm_text
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2, rpc_pb2_grpc
from etcdpy.server.etcdserver import EtcdServer
from etcdpy.server.services.common import Context, answers_unimplemented, maps_etcd_errors


@answers_unimplemented
class MaintenanceService(rpc_pb2_grpc.MaintenanceServicer):
    """/etcdserverpb.Maintenance."""

    def __init__(self, server: EtcdServer) -> None:
        self.server = server

    def _check_admin(self) -> None:
        """Root only, as etcd's authMaintenanceServer, which returns the auth package's own errors unmapped:
        they reach clients as UNKNOWN, worded ``auth: ...`` (e.g. ``auth: permission denied``)."""
        try:
            self.server.check_admin()
        except errors.EtcdError as exc:
            raise errors.UnknownEtcdError(
                grpc.StatusCode.UNKNOWN, exc.text.replace("etcdserver: ", "auth: ", 1)
            ) from None

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
        self._check_admin()
        return rpc_pb2.HashResponse(header=self.server.header(), hash=self.server.hash())

    @maps_etcd_errors
    async def HashKV(self, request: rpc_pb2.HashKVRequest, context: Context) -> rpc_pb2.HashKVResponse:
        self._check_admin()
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
