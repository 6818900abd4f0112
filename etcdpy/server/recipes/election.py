"""Election: etcd's leader election, run on the server for the Election service (v3election).

A candidate of ``name`` owns ``name/<lease hex>`` (value: its proclamation,
attached to its lease); the leader is the key with the lowest create revision.
A `LeaderKey` (name, key, create revision, lease) proves leadership: Proclaim
and Resign act only while that very key (same create revision) exists.

As etcd does: a Campaign answers with the header of its own txn (not of the
moment it won), a Campaign cancelled while it waits resigns, and Resign of a
key that is gone succeeds.  Beyond etcd 3.4: a Campaign cancelled before its
first txn was answered resigns too, and a candidate whose key vanishes while
it waits (lease expired or revoked) fails with ErrSessionExpired instead of
being told it leads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.api.v3electionpb import v3election_pb2 as pb
from etcdpy.server.recipes.errors import ErrElectionNoLeader, ErrElectionNotLeader, ErrSessionExpired
from etcdpy.server.recipes.keyspace import (
    Keyspace,
    contender_key,
    created_at,
    first_created,
    next_events,
    prefix_end,
    prefix_of,
    put_op,
    range_op,
)

PUT = kv_pb2.Event.PUT


async def campaign(keyspace: Keyspace, name: bytes, lease: int, value: bytes) -> pb.CampaignResponse:
    """Become the leader of `name` with `value`, waiting until every older candidate is gone."""
    lease = await keyspace.session_lease(lease)
    key = contender_key(name, lease)
    entry = rpc_pb2.TxnRequest(
        compare=[created_at(key, 0)],
        success=[put_op(key, value, lease)],
        failure=[range_op(rpc_pb2.RangeRequest(key=key))],
    )
    response = await keyspace.enter(entry, key)
    leader = pb.LeaderKey(name=name, key=key, rev=response.header.revision, lease=lease)
    if not response.succeeded:  # this lease campaigns already: take its place, with the new value
        existing = response.responses[0].response_range.kvs[0]
        leader.rev = existing.create_revision
        if existing.value != value:
            try:
                await proclaim(keyspace, leader, value)
            except errors.EtcdError:
                await resign(keyspace, leader)
                raise
    try:
        await keyspace.wait_turn(prefix_of(name), key, leader.rev)
    except ErrSessionExpired:
        raise
    except asyncio.CancelledError:
        keyspace.withdraw_detached(leader.key, leader.rev)
        raise
    return pb.CampaignResponse(header=response.header, leader=leader)


async def proclaim(keyspace: Keyspace, leader: pb.LeaderKey, value: bytes) -> rpc_pb2.ResponseHeader:
    """Set the leader's value; ErrElectionNotLeader unless `leader`'s key still exists unchanged."""
    lease = await keyspace.session_lease(leader.lease)  # etcd's Proclaim also grants one for lease 0
    response = await keyspace.txn(
        rpc_pb2.TxnRequest(
            compare=[created_at(leader.key, leader.rev)], success=[put_op(leader.key, value, lease)]
        )
    )
    if not response.succeeded:
        raise ErrElectionNotLeader()
    return response.header


async def resign(keyspace: Keyspace, leader: pb.LeaderKey) -> rpc_pb2.ResponseHeader:
    """Give up leadership (delete the key if it is still `leader`'s); succeeds if it is gone already."""
    return await keyspace.withdraw(leader.key, leader.rev)


async def leader(keyspace: Keyspace, name: bytes) -> pb.LeaderResponse:
    """The current leader's key-value; ErrElectionNoLeader if no candidate exists."""
    response = await keyspace.range(first_created(prefix_of(name)))
    if not response.kvs:
        raise ErrElectionNoLeader()
    return pb.LeaderResponse(header=response.header, kv=response.kvs[0])


async def observe(keyspace: Keyspace, name: bytes) -> AsyncIterator[pb.LeaderResponse]:
    """Every leader of `name` in turn, starting with the current one, and each value it proclaims.

    A leader's key is followed until it is deleted; then the next leader is read
    (or, with none, the first candidate put is awaited).  The stream ends if a
    watch it needs was compacted away, as etcd's does.
    """
    prefix = prefix_of(name)
    while True:
        current = await keyspace.range(first_created(prefix))
        if current.kvs:
            header, kv = current.header, current.kvs[0]
        else:
            first = await _first_put(keyspace, prefix, current.header.revision + 1)
            if first is None:
                return
            header, kv = first
        yield pb.LeaderResponse(header=header, kv=kv)
        watch = rpc_pb2.WatchCreateRequest(key=kv.key, start_revision=header.revision + 1)
        async with keyspace.watch([watch]) as stream:
            deleted = False
            while not deleted:
                response = await next_events(stream)
                if response is None or response.canceled:
                    return
                for event in response.events:
                    if event.type != PUT:
                        deleted = True  # on to the next leader; later events belong to a new key
                        break
                    yield pb.LeaderResponse(header=response.header, kv=event.kv)


async def _first_put(
    keyspace: Keyspace, prefix: bytes, start_revision: int
) -> tuple[rpc_pb2.ResponseHeader, kv_pb2.KeyValue] | None:
    """The first key put under `prefix` from `start_revision` on, with a header at its revision."""
    watch = rpc_pb2.WatchCreateRequest(
        key=prefix,
        range_end=prefix_end(prefix),
        start_revision=start_revision,
        filters=[rpc_pb2.WatchCreateRequest.NODELETE],
    )
    async with keyspace.watch([watch]) as stream:
        response = await next_events(stream)
    if response is None or response.canceled:
        return None
    kv = response.events[0].kv
    header = rpc_pb2.ResponseHeader()
    header.CopyFrom(response.header)
    header.revision = kv.mod_revision  # a response may span revisions: report the put's, as etcd does
    return header, kv
