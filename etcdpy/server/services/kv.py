"""KV service: validate the request, hand it to the server, return what the applier answered."""

from __future__ import annotations

from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2, rpc_pb2_grpc
from etcdpy.server import raft_requests as kinds
from etcdpy.server.etcdserver import EtcdServer
from etcdpy.server.mvcc import txn
from etcdpy.server.mvcc.validate import (
    check_delete_request,
    check_put_request,
    check_range_request,
    check_txn_request,
)
from etcdpy.server.quota import BackendQuota, check_quota
from etcdpy.server.services.common import Context, answers_unimplemented, maps_etcd_errors


@answers_unimplemented
class KVService(rpc_pb2_grpc.KVServicer):
    """/etcdserverpb.KV: Range, Put, DeleteRange, Txn, Compact."""

    def __init__(self, server: EtcdServer, *, quota: BackendQuota, max_txn_ops: int) -> None:
        self.server = server
        self.quota = quota  # this member's: checked before a put or a txn that writes is proposed
        self.max_txn_ops = max_txn_ops

    @maps_etcd_errors
    async def Range(self, request: rpc_pb2.RangeRequest, context: Context) -> rpc_pb2.RangeResponse:
        check_range_request(request)
        return await self.server.range(request)

    @maps_etcd_errors
    async def Put(self, request: rpc_pb2.PutRequest, context: Context) -> rpc_pb2.PutResponse:
        check_put_request(request)
        await check_quota(self.server, self.quota, kinds.PUT, request)
        response: rpc_pb2.PutResponse = await self.server.propose(
            raft_internal_pb2.InternalRaftRequest(put=request)
        )
        return response

    @maps_etcd_errors
    async def DeleteRange(
        self, request: rpc_pb2.DeleteRangeRequest, context: Context
    ) -> rpc_pb2.DeleteRangeResponse:
        check_delete_request(request)
        response: rpc_pb2.DeleteRangeResponse = await self.server.propose(
            raft_internal_pb2.InternalRaftRequest(delete_range=request)
        )
        return response

    @maps_etcd_errors
    async def Txn(self, request: rpc_pb2.TxnRequest, context: Context) -> rpc_pb2.TxnResponse:
        check_txn_request(request, self.max_txn_ops)
        if txn.is_read_only(request):  # served like a range, with no log entry, as etcd does
            return await self.server.read_only_txn(request, serializable=txn.is_serializable(request))
        await check_quota(self.server, self.quota, kinds.TXN, request)
        response: rpc_pb2.TxnResponse = await self.server.propose(
            raft_internal_pb2.InternalRaftRequest(txn=request)
        )
        return response

    @maps_etcd_errors
    async def Compact(
        self, request: rpc_pb2.CompactionRequest, context: Context
    ) -> rpc_pb2.CompactionResponse:
        response: rpc_pb2.CompactionResponse = await self.server.propose(
            raft_internal_pb2.InternalRaftRequest(compaction=request)
        )
        if request.physical:
            await self.server.wait_physical_compaction()
        return response
