"""Server-side lock waiting, in process: waiters sleep on the watch hub; a release wakes only the next one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server.config import Config
from etcdpy.server.member import open_member
from etcdpy.server.recipes import Keyspace, mutex
from etcdpy.server.recipes.errors import ErrSessionExpired
from etcdpy.server.recipes.keyspace import next_events, prefix_end
from etcdpy.server.storage.backend import Backend

QUIET_SECONDS = 0.3  # how long nothing may happen while nobody releases


@asynccontextmanager
async def keyspace(tmp_path: Path) -> AsyncIterator[Keyspace]:
    """A started one-member server with its lessor and watch hub, as `open_member` builds them."""
    backend = Backend(tmp_path)
    cfg = Config(initial_advertise_peer_urls=("http://127.0.0.1:23800",), heartbeat_interval_ms=10).validate()
    member = await open_member(cfg, backend)
    member.start()
    try:
        await member.server.published.wait()
        yield Keyspace(member.server, member.hub, member.lessor)
    finally:
        await member.stop()
        backend.close()


class ReadCounter:
    """Counts the waiters' reads (one per round of `wait_turn`) and lets a test await a count."""

    def __init__(self, space: Keyspace) -> None:
        self.count = 0
        self._changed = asyncio.Condition()
        real_read = space.read

        async def read(*ranges: rpc_pb2.RangeRequest) -> Any:
            response = await real_read(*ranges)
            async with self._changed:
                self.count += 1
                self._changed.notify_all()
            return response

        space.read = read  # type: ignore[method-assign]

    async def reached(self, count: int) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.count >= count), 10)


async def grant(space: Keyspace) -> int:
    return await space.session_lease(0)


def test_prefix_end_covers_exactly_the_prefix() -> None:
    assert prefix_end(b"name/") == b"name0"
    assert prefix_end(b"/") == b"0"
    assert prefix_end(b"a\xff/") == b"a\xff0"


def test_waiters_sleep_until_a_release_and_a_release_wakes_only_the_next(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with keyspace(tmp_path) as space:
            holder = await mutex.lock(space, b"herd", await grant(space))
            reads = ReadCounter(space)
            waiters = []
            for _ in range(4):
                waiters.append(asyncio.create_task(mutex.lock(space, b"herd", await grant(space))))
                await reads.reached(len(waiters))  # each waiter reads once, then watches
            await asyncio.sleep(QUIET_SECONDS)
            assert reads.count == 4, "a waiter polled while nobody released"
            await mutex.unlock(space, holder.key)
            first = await asyncio.wait_for(waiters[0], 10)
            await asyncio.sleep(QUIET_SECONDS)
            assert reads.count == 5, "a release woke more than the next waiter"
            assert not any(w.done() for w in waiters[1:])
            await mutex.unlock(space, first.key)
            second = await asyncio.wait_for(waiters[1], 10)
            assert second.revision > first.revision  # the fencing token grows from holder to holder
            for waiter in waiters[2:]:
                waiter.cancel()
            await asyncio.gather(*waiters[2:], return_exceptions=True)

    asyncio.run(scenario())


def test_a_waiter_fails_as_soon_as_its_lease_is_revoked(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with keyspace(tmp_path) as space:
            await mutex.lock(space, b"gone", await grant(space))
            doomed = await grant(space)
            reads = ReadCounter(space)
            waiter = asyncio.create_task(mutex.lock(space, b"gone", doomed))
            await reads.reached(1)  # the waiter's key exists and it waits
            await space.server.propose(
                raft_internal_pb2.InternalRaftRequest(lease_revoke=rpc_pb2.LeaseRevokeRequest(ID=doomed))
            )
            with pytest.raises(ErrSessionExpired):  # while the holder still holds: no need to wait for it
                await asyncio.wait_for(waiter, 10)

    asyncio.run(scenario())


def test_a_lock_cancelled_before_its_entry_txn_is_answered_leaves_no_key(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with keyspace(tmp_path) as space:
            lease = await grant(space)
            key = b"early/%x" % lease
            created = rpc_pb2.WatchCreateRequest(key=key, start_revision=space.hub.rev + 1)
            async with space.watch([created]) as stream:
                call = asyncio.create_task(mutex.lock(space, b"early", lease))
                await asyncio.sleep(0)  # the call runs up to its proposal, then waits for the answer
                call.cancel()
                kinds = []
                while len(kinds) < 2:  # the entry txn is applied anyway, then its key withdrawn
                    response = await asyncio.wait_for(next_events(stream), 10)
                    assert response is not None
                    kinds.extend(event.type for event in response.events)
                assert kinds == [kv_pb2.Event.PUT, kv_pb2.Event.DELETE]
            with pytest.raises(asyncio.CancelledError):
                await call

    asyncio.run(scenario())
