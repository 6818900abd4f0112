"""Cluster service: MemberList and the membership changes, through the member's MemberOps."""

from __future__ import annotations

from etcdpy.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.server.etcdserver import EtcdServer
from etcdpy.server.services.common import Context, answers_unimplemented, maps_etcd_errors


@answers_unimplemented
class ClusterService(rpc_pb2_grpc.ClusterServicer):
    """/etcdserverpb.Cluster."""

    def __init__(self, server: EtcdServer) -> None:
        self.server = server

    def _header(self) -> rpc_pb2.ResponseHeader:
        header = self.server.header()
        header.ClearField("revision")  # etcd's cluster service reports ids and term only
        return header

    @maps_etcd_errors
    async def MemberList(
        self, request: rpc_pb2.MemberListRequest, context: Context
    ) -> rpc_pb2.MemberListResponse:
        if request.linearizable:
            await self.server.linearizable_barrier()
        return rpc_pb2.MemberListResponse(header=self._header(), members=self.server.cluster.member_list())

    @maps_etcd_errors
    async def MemberAdd(
        self, request: rpc_pb2.MemberAddRequest, context: Context
    ) -> rpc_pb2.MemberAddResponse:
        self.server.check_admin()  # etcd's checkMembershipOperationPermission
        member = await self.server.members.add(list(request.peerURLs), request.isLearner)
        return rpc_pb2.MemberAddResponse(
            header=self._header(), member=member, members=self.server.cluster.member_list()
        )

    @maps_etcd_errors
    async def MemberRemove(
        self, request: rpc_pb2.MemberRemoveRequest, context: Context
    ) -> rpc_pb2.MemberRemoveResponse:
        self.server.check_admin()  # etcd's checkMembershipOperationPermission
        await self.server.members.remove(request.ID)
        return rpc_pb2.MemberRemoveResponse(header=self._header(), members=self.server.cluster.member_list())

    @maps_etcd_errors
    async def MemberUpdate(
        self, request: rpc_pb2.MemberUpdateRequest, context: Context
    ) -> rpc_pb2.MemberUpdateResponse:
        self.server.check_admin()  # etcd's checkMembershipOperationPermission
        await self.server.members.update(request.ID, list(request.peerURLs))
        return rpc_pb2.MemberUpdateResponse(header=self._header(), members=self.server.cluster.member_list())

    @maps_etcd_errors
    async def MemberPromote(
        self, request: rpc_pb2.MemberPromoteRequest, context: Context
    ) -> rpc_pb2.MemberPromoteResponse:
        self.server.check_admin()  # etcd's checkMembershipOperationPermission
        await self.server.members.promote(request.ID)
        return rpc_pb2.MemberPromoteResponse(header=self._header(), members=self.server.cluster.member_list())
