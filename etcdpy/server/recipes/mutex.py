"""Mutex: etcd's distributed lock, run on the server for the Lock service (v3lock).

Lock(name, lease), as etcd's clientv3 Mutex does it:

1. In one txn: if ``name/<lease hex>`` does not exist, put it (empty value,
   attached to the lease) and note its create revision; otherwise reuse it
   (the lease already waits or holds).  Read the owner (lowest create revision
   under ``name/``) in the same txn: if it is this key, the lock is held.
2. Else wait, watching only the newest older key (no herd: each deletion wakes
   one waiter), until no older key remains: the lock is held.
3. Unlike etcd 3.4, a waiter whose own key vanished meanwhile (lease expired or
   revoked) fails with ErrSessionExpired, at once, instead of being told it holds
   the lock (see `Keyspace.wait_turn`).

A Lock call cancelled (or failing) while it waits deletes its key, as etcd does,
so it never holds the lock later for a client that gave up; one cancelled even
before its first txn was answered deletes the key that txn created (etcd leaves
that one until the lease ends).  The create revision
of the key is the fencing token: it only grows from one holder to the next.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.server.recipes.errors import ErrSessionExpired
from etcdpy.server.recipes.keyspace import (
    Keyspace,
    contender_key,
    created_at,
    first_created,
    prefix_of,
    put_op,
    range_op,
)


@dataclass(frozen=True)
class Held:
    """Held is an acquired lock: the response header, the key to unlock with and its create revision."""

    header: rpc_pb2.ResponseHeader
    key: bytes
    revision: int  # the key's create revision: a fencing token, increasing from holder to holder


async def lock(keyspace: Keyspace, name: bytes, lease: int) -> Held:
    """Acquire the lock `name` for `lease` (0: a new 60-second lease), waiting as long as it takes."""
    lease = await keyspace.session_lease(lease)
    prefix = prefix_of(name)
    key = contender_key(name, lease)
    acquire = rpc_pb2.TxnRequest(
        compare=[created_at(key, 0)],
        success=[put_op(key, b"", lease), range_op(first_created(prefix))],
        failure=[range_op(rpc_pb2.RangeRequest(key=key)), range_op(first_created(prefix))],
    )
    response = await keyspace.enter(acquire, key)
    revision = response.header.revision
    if not response.succeeded:
        revision = response.responses[0].response_range.kvs[0].create_revision
    owner = response.responses[1].response_range.kvs
    if not owner or owner[0].create_revision == revision:
        return Held(response.header, key, revision)
    try:
        header = await keyspace.wait_turn(prefix, key, revision)
    except ErrSessionExpired:
        raise  # the key is gone already
    except (asyncio.CancelledError, errors.EtcdError):
        keyspace.withdraw_detached(key, revision)
        raise
    return Held(header, key, revision)


async def unlock(keyspace: Keyspace, key: bytes) -> rpc_pb2.DeleteRangeResponse:
    """Release a lock by deleting its key (a missing key is no error, as with etcd)."""
    return await keyspace.delete(key)
