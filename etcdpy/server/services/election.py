"""Election service (/v3electionpb.Election): etcd's server-side election (see recipes.election)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from etcdpy.api.errors import EtcdError
from etcdpy.api.v3electionpb import v3election_pb2 as pb
from etcdpy.api.v3electionpb import v3election_pb2_grpc
from etcdpy.server.recipes import election
from etcdpy.server.recipes.errors import ErrMissingLeaderKey, reports_errors_as_unknown
from etcdpy.server.recipes.keyspace import Keyspace
from etcdpy.server.services.common import Context, answers_unimplemented


@answers_unimplemented
class ElectionService(v3election_pb2_grpc.ElectionServicer):
    """/v3electionpb.Election: Campaign, Proclaim, Leader, Observe, Resign."""

    def __init__(self, keyspace: Keyspace) -> None:
        self.keyspace = keyspace

    @reports_errors_as_unknown
    async def Campaign(self, request: pb.CampaignRequest, context: Context) -> pb.CampaignResponse:
        return await election.campaign(self.keyspace, request.name, request.lease, request.value)

    @reports_errors_as_unknown
    async def Proclaim(self, request: pb.ProclaimRequest, context: Context) -> pb.ProclaimResponse:
        if not request.HasField("leader"):
            raise ErrMissingLeaderKey()
        header = await election.proclaim(self.keyspace, request.leader, request.value)
        return pb.ProclaimResponse(header=header)

    @reports_errors_as_unknown
    async def Leader(self, request: pb.LeaderRequest, context: Context) -> pb.LeaderResponse:
        return await election.leader(self.keyspace, request.name)

    async def Observe(self, request: pb.LeaderRequest, context: Context) -> AsyncIterator[pb.LeaderResponse]:
        try:
            async for response in election.observe(self.keyspace, request.name):
                yield response
        except EtcdError as err:
            await context.abort(grpc.StatusCode.UNKNOWN, err.text)  # as the unary calls do

    @reports_errors_as_unknown
    async def Resign(self, request: pb.ResignRequest, context: Context) -> pb.ResignResponse:
        if not request.HasField("leader"):
            raise ErrMissingLeaderKey()
        return pb.ResignResponse(header=await election.resign(self.keyspace, request.leader))
