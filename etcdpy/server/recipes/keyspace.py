"""Keyspace: the KV reads, writes, lease grants and watches the server-side lock and election recipes use.

Every write goes through `EtcdServer.propose` (replicated, forwarded by a
follower) and every read is linearizable (ReadIndex), so a recipe behaves the
same on any member.  Waiting never polls: a waiter watches, on the member's
`WatchHub`, exactly the keys whose deletion can change its answer.

Key layout (etcd's, shared with etcdctl's client-side recipes): a contender of
``name`` owns the key ``name/<lease id in lower-case hex>``, attached to that
lease; among the keys under ``name/`` the lowest create revision wins.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server.etcdserver import EtcdServer
from etcdpy.server.lease import NO_LEASE, Lessor
from etcdpy.server.mvcc.validate import check_delete_request, check_txn_request
from etcdpy.server.recipes.errors import ErrSessionExpired
from etcdpy.server.watch import WatchHub, WatchStream

SESSION_TTL = 60  # seconds: the lease etcd's recipes grant for a request that names no lease
DELETE = kv_pb2.Event.DELETE
RangeRequest = rpc_pb2.RangeRequest
Compare = rpc_pb2.Compare


def prefix_of(name: bytes) -> bytes:
    """The prefix every contender key of `name` starts with."""
    return name + b"/"


def contender_key(name: bytes, lease: int) -> bytes:
    return prefix_of(name) + b"%x" % lease


def prefix_end(prefix: bytes) -> bytes:
    """The range end covering every key that starts with `prefix` (which ends in "/", so never all 0xff)."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1])


def first_created(prefix: bytes) -> rpc_pb2.RangeRequest:
    """The key under `prefix` with the lowest create revision: the owner."""
    return RangeRequest(
        key=prefix,
        range_end=prefix_end(prefix),
        sort_target=RangeRequest.CREATE,
        sort_order=RangeRequest.ASCEND,
        limit=1,
    )


def last_created_before(prefix: bytes, revision: int) -> rpc_pb2.RangeRequest:
    """The newest key under `prefix` created at or before `revision`: the one to wait for."""
    return RangeRequest(
        key=prefix,
        range_end=prefix_end(prefix),
        sort_target=RangeRequest.CREATE,
        sort_order=RangeRequest.DESCEND,
        limit=1,
        max_create_revision=revision,
    )


def created_at(key: bytes, revision: int) -> rpc_pb2.Compare:
    """The compare that holds while `key` is the very key created at `revision` (0: it does not exist)."""
    return Compare(key=key, target=Compare.CREATE, result=Compare.EQUAL, create_revision=revision)


def range_op(req: rpc_pb2.RangeRequest) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_range=req)


def put_op(key: bytes, value: bytes, lease: int) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value, lease=lease))


def delete_op(key: bytes) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=key))


class Keyspace:
    """Keyspace runs the recipes' requests on one member: propose, linearizable reads, hub watches."""

    def __init__(self, server: EtcdServer, hub: WatchHub, lessor: Lessor) -> None:
        self.server = server
        self.hub = hub
        self.lessor = lessor
        self._cleanups: set[asyncio.Task[Any]] = set()  # detached cleanups of cancelled calls, kept alive

    async def txn(self, req: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
        """Propose a txn checked as the KV service checks one (so an empty leader key is refused)."""
        check_txn_request(req)
        response: rpc_pb2.TxnResponse = await self.server.propose(
            raft_internal_pb2.InternalRaftRequest(txn=req)
        )
        return response

    async def read(self, *ranges: rpc_pb2.RangeRequest) -> rpc_pb2.TxnResponse:
        """Several ranges at one revision, linearizable, with no log entry."""
        return await self.server.read_only_txn(
            rpc_pb2.TxnRequest(success=[range_op(r) for r in ranges]), serializable=False
        )

    async def range(self, req: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
        return await self.server.range(req)

    async def delete(self, key: bytes) -> rpc_pb2.DeleteRangeResponse:
        req = rpc_pb2.DeleteRangeRequest(key=key)
        check_delete_request(req)
        response: rpc_pb2.DeleteRangeResponse = await self.server.propose(
            raft_internal_pb2.InternalRaftRequest(delete_range=req)
        )
        return response

    async def session_lease(self, lease: int) -> int:
        """The lease a request names, or (as etcd's recipes do for lease 0) a new 60-second one."""
        if lease != NO_LEASE:
            return lease
        grant = self.lessor.check_grant(rpc_pb2.LeaseGrantRequest(TTL=SESSION_TTL))
        response: rpc_pb2.LeaseGrantResponse = await self.server.propose(
            raft_internal_pb2.InternalRaftRequest(lease_grant=grant)
        )
        return response.ID

    async def enter(self, req: rpc_pb2.TxnRequest, key: bytes) -> rpc_pb2.TxnResponse:
        """Run a contender's entry txn, which puts `key` if it succeeds.

        If the caller is cancelled before the answer, the txn may still be applied:
        the key it created is then withdrawn, so no abandoned key ever blocks the queue.
        """
        entry = asyncio.ensure_future(self.txn(req))
        try:
            return await asyncio.shield(entry)
        except asyncio.CancelledError:
            self._detach(self._undo_entry(entry, key))
            raise

    async def _undo_entry(self, entry: asyncio.Future[rpc_pb2.TxnResponse], key: bytes) -> None:
        with contextlib.suppress(errors.EtcdError):
            response = await entry
            if response.succeeded:
                await self.withdraw(key, response.header.revision)

    async def withdraw(self, key: bytes, revision: int) -> rpc_pb2.ResponseHeader:
        """Delete `key` if it is still the key created at `revision` (else leave whoever owns it now)."""
        response = await self.txn(
            rpc_pb2.TxnRequest(compare=[created_at(key, revision)], success=[delete_op(key)])
        )
        return response.header

    def withdraw_detached(self, key: bytes, revision: int) -> None:
        """`withdraw`, run to its end although the call that needs it was cancelled."""
        self._detach(self._withdraw_quietly(key, revision))

    async def _withdraw_quietly(self, key: bytes, revision: int) -> None:
        with contextlib.suppress(errors.EtcdError):  # if it fails, the key's lease still bounds its stay
            await self.withdraw(key, revision)

    def _detach(self, cleanup: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(cleanup)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def wait_turn(self, prefix: bytes, key: bytes, revision: int) -> rpc_pb2.ResponseHeader:
        """Wait until no key under `prefix` is older than `key` (created at `revision`).

        Returns the header of the read that found no older key and `key` alive.

        Each round reads, at one revision R, the newest older key and `key` itself,
        then watches both from R + 1 for a deletion.  Raises ErrSessionExpired as
        soon as `key` is gone (its lease expired or was revoked, or someone deleted
        it): a waiter whose key died must never be told it won.
        """
        while True:
            read = await self.read(last_created_before(prefix, revision - 1), rpc_pb2.RangeRequest(key=key))
            older = read.responses[0].response_range.kvs
            own = read.responses[1].response_range.kvs
            if not own or own[0].create_revision != revision:
                raise ErrSessionExpired()
            if not older:
                return read.header
            watched = [
                deletes_of(older[0].key, read.header.revision + 1),
                deletes_of(key, read.header.revision + 1),
            ]
            async with self.watch(watched) as stream:
                await next_events(stream)  # a deletion (or a cancelled watcher): read again

    @asynccontextmanager
    async def watch(self, requests: Sequence[rpc_pb2.WatchCreateRequest]) -> AsyncIterator[WatchStream]:
        """A hub stream carrying `requests`' watchers, closed on exit."""
        stream = self.hub.new_stream()
        try:
            for req in requests:
                stream.create(req)
            yield stream
        finally:
            stream.close()


def deletes_of(key: bytes, start_revision: int) -> rpc_pb2.WatchCreateRequest:
    return rpc_pb2.WatchCreateRequest(
        key=key, start_revision=start_revision, filters=[rpc_pb2.WatchCreateRequest.NOPUT]
    )


async def next_events(stream: WatchStream) -> rpc_pb2.WatchResponse | None:
    """The next response with events, or a watcher's cancellation (compaction); None if the stream closed."""
    while (response := await stream.next()) is not None:
        if response.events or response.canceled:
            return response
    return None
