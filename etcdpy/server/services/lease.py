"""Lease service: grants and revokes through the propose path; keep-alives to the lessor of the leader."""

from __future__ import annotations

from collections.abc import AsyncIterator

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2, rpc_pb2_grpc
from etcdpy.server import raft_requests as kinds
from etcdpy.server.etcdserver import EtcdServer
from etcdpy.server.lease import LeaseDriver, Lessor
from etcdpy.server.lease.forward import LeaderForwarder
from etcdpy.server.quota import BackendQuota, check_quota
from etcdpy.server.services.common import Context, answers_unimplemented, maps_etcd_errors


@answers_unimplemented
class LeaseService(rpc_pb2_grpc.LeaseServicer):
    """/etcdserverpb.Lease: LeaseGrant, LeaseRevoke, LeaseKeepAlive, LeaseTimeToLive, LeaseLeases."""

    def __init__(
        self,
        server: EtcdServer,
        lessor: Lessor,
        driver: LeaseDriver,
        forwarder: LeaderForwarder,
        *,
        quota: BackendQuota,
    ) -> None:
        self.server = server
        self.lessor = lessor
        self.quota = quota  # this member's: checked before a grant is proposed
        self.driver = driver
        self.forwarder = forwarder  # keep-alives and time-to-live reach a follower: the leader answers

    @maps_etcd_errors
    async def LeaseGrant(
        self, request: rpc_pb2.LeaseGrantRequest, context: Context
    ) -> rpc_pb2.LeaseGrantResponse:
        grant = self.lessor.check_grant(request)
        await check_quota(self.server, self.quota, kinds.LEASE_GRANT, grant)
        response: rpc_pb2.LeaseGrantResponse = await self.server.propose(
            raft_internal_pb2.InternalRaftRequest(lease_grant=grant)
        )
        return response

    @maps_etcd_errors
    async def LeaseRevoke(
        self, request: rpc_pb2.LeaseRevokeRequest, context: Context
    ) -> rpc_pb2.LeaseRevokeResponse:
        response: rpc_pb2.LeaseRevokeResponse = await self.server.propose(
            raft_internal_pb2.InternalRaftRequest(lease_revoke=rpc_pb2.LeaseRevokeRequest(ID=request.ID))
        )
        return response

    async def LeaseKeepAlive(
        self, request_iterator: AsyncIterator[rpc_pb2.LeaseKeepAliveRequest], context: Context
    ) -> AsyncIterator[rpc_pb2.LeaseKeepAliveResponse]:
        async for request in request_iterator:
            try:
                if self.driver.follow_leadership():
                    ttl = await self.driver.keep_alive(request.ID)
                else:
                    ttl = await self.forwarder.keep_alive(request.ID)
            except errors.ErrLeaseNotFound:
                ttl = 0  # etcd answers an unknown or expired lease with TTL 0, not an error
            except errors.EtcdError as err:
                await context.abort(err.code, err.text)
            yield rpc_pb2.LeaseKeepAliveResponse(header=self.server.header(), ID=request.ID, TTL=ttl)

    @maps_etcd_errors
    async def LeaseTimeToLive(
        self, request: rpc_pb2.LeaseTimeToLiveRequest, context: Context
    ) -> rpc_pb2.LeaseTimeToLiveResponse:
        if not self.driver.follow_leadership():
            return await self.forwarder.time_to_live(request)
        await self.server.linearizable_barrier()
        response = self.lessor.time_to_live(request.ID, keys=request.keys)
        self.server.fill_header(response.header)
        return response

    @maps_etcd_errors
    async def LeaseLeases(
        self, request: rpc_pb2.LeaseLeasesRequest, context: Context
    ) -> rpc_pb2.LeaseLeasesResponse:
        await self.server.linearizable_barrier()
        response = self.lessor.leases()
        self.server.fill_header(response.header)
        return response
