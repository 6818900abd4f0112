"""Cluster service: MemberList; membership changes answer UNIMPLEMENTED until Raft lands."""

from __future__ import annotations

from etcdpy.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.server.etcdserver import EtcdServer
from etcdpy.server.services.common import Context, answers_unimplemented, maps_etcd_errors


@answers_unimplemented
class ClusterService(rpc_pb2_grpc.ClusterServicer):
    """/etcdserverpb.Cluster."""

    def __init__(self, server: EtcdServer) -> None:
        self.server = server

    @maps_etcd_errors
    async def MemberList(
        self, request: rpc_pb2.MemberListRequest, context: Context
    ) -> rpc_pb2.MemberListResponse:
        header = self.server.header()
        header.ClearField("revision")  # etcd's cluster service reports ids and term only
        return rpc_pb2.MemberListResponse(header=header, members=self.server.cluster.member_list())
