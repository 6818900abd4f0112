"""Lock service (/v3lockpb.Lock): etcd's server-side mutex over the member's keyspace (see recipes.mutex)."""

from __future__ import annotations

from etcdpy.api.v3lockpb import v3lock_pb2, v3lock_pb2_grpc
from etcdpy.server.recipes import mutex
from etcdpy.server.recipes.errors import reports_errors_as_unknown
from etcdpy.server.recipes.keyspace import Keyspace
from etcdpy.server.services.common import Context, answers_unimplemented


@answers_unimplemented
class LockService(v3lock_pb2_grpc.LockServicer):
    """/v3lockpb.Lock: Lock waits for the lock and answers its key; Unlock deletes that key."""

    def __init__(self, keyspace: Keyspace) -> None:
        self.keyspace = keyspace

    @reports_errors_as_unknown
    async def Lock(self, request: v3lock_pb2.LockRequest, context: Context) -> v3lock_pb2.LockResponse:
        held = await mutex.lock(self.keyspace, request.name, request.lease)
        return v3lock_pb2.LockResponse(header=held.header, key=held.key)

    @reports_errors_as_unknown
    async def Unlock(self, request: v3lock_pb2.UnlockRequest, context: Context) -> v3lock_pb2.UnlockResponse:
        deleted = await mutex.unlock(self.keyspace, request.key)
        return v3lock_pb2.UnlockResponse(header=deleted.header)
