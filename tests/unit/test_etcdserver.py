"""EtcdServer in-process over a one-member raft: bootstrap indexes, group commit, etcd's timeout errors."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.server.config import Config
from etcdpy.server.etcdserver import EtcdServer
from etcdpy.server.member import open_member
from etcdpy.server.storage.backend import Backend
from etcdpy.server.storage.raftlog import PreparedWrite


def put(key: bytes) -> raft_internal_pb2.InternalRaftRequest:
    return raft_internal_pb2.InternalRaftRequest(put=rpc_pb2.PutRequest(key=key, value=b"v"))


@asynccontextmanager
async def member(tmp_path: Path, **config: Any) -> AsyncIterator[EtcdServer]:
    """A started one-member server that has published itself (raft index 4, as etcd)."""
    backend = Backend(tmp_path)
    cfg = Config(
        initial_advertise_peer_urls=("http://127.0.0.1:23800",), heartbeat_interval_ms=10, **config
    ).validate()
    built = await open_member(cfg, backend)
    built.start()
    server = built.server
    try:
        while server.applier.applied_index < 4:
            await server.replication.wait_applied(server.applier.applied_index + 1)
        yield server
    finally:
        await built.stop()
        backend.close()


class HeldBatch:
    """A write batch whose write blocks until released, recording the last index it carries."""

    def __init__(self, batch: Any, release: threading.Event, started: asyncio.Event, loop: Any) -> None:
        self.batch, self.release, self.started, self.loop = batch, release, started, loop

    def write(self) -> None:
        self.loop.call_soon_threadsafe(self.started.set)
        self.release.wait(timeout=30)
        self.batch.write()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.batch, name)


def hold_writes(server: EtcdServer, release: threading.Event, started: asyncio.Event) -> list[int]:
    """Make every raft log write wait for `release`; return the list of last indexes written."""
    raftlog = server.replication.raftlog
    real_prepare = raftlog.prepare
    written: list[int] = []
    loop = asyncio.get_running_loop()

    def prepare(**kwargs: Any) -> PreparedWrite:
        prepared = real_prepare(**kwargs)
        if prepared.entries:
            written.append(prepared.entries[-1].index)
        return dataclasses.replace(prepared, batch=HeldBatch(prepared.batch, release, started, loop))

    raftlog.prepare = prepare  # type: ignore[method-assign]
    return written


def test_a_new_member_is_at_index_four_term_two_before_the_first_write(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with member(tmp_path) as server:
            status = server.status()
            assert (status.raftIndex, status.raftAppliedIndex, status.raftTerm) == (4, 4, 2)
            assert status.leader == server.cluster.local_id
            response = await server.propose(put(b"first"))
            assert response.header.revision == 2
            assert server.status().raftIndex == 5

    asyncio.run(scenario())


def test_proposals_queued_during_a_write_share_the_next_write(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with member(tmp_path) as server:
            release, started = threading.Event(), asyncio.Event()
            written = hold_writes(server, release, started)
            try:
                first = asyncio.create_task(server.propose(put(b"k00")))
                await started.wait()
                others = [asyncio.create_task(server.propose(put(b"k%02d" % i))) for i in range(1, 50)]
                await asyncio.sleep(0)  # let every proposal reach the queue
                release.set()
                responses = await asyncio.gather(first, *others)
            finally:
                release.set()
            assert written == [5, 54]  # entry 5 alone, then entries 6..54 in one synced write
            assert sorted(r.header.revision for r in responses) == list(range(2, 52))

    asyncio.run(scenario())


def test_a_write_stuck_on_disk_times_out_with_etcds_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with member(tmp_path) as server:
            server.request_timeout = 0.05
            release, started = threading.Event(), asyncio.Event()
            hold_writes(server, release, started)
            try:
                with pytest.raises(errors.ErrTimeout):
                    await server.propose(put(b"late"))
            finally:
                release.set()
            # The entry was durable after all: the outcome of a timed-out write is unknown, not "failed".
            await server.replication.wait_applied(5)

    asyncio.run(scenario())


def test_linearizable_reads_share_one_read_index_round(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with member(tmp_path) as server:
            await server.propose(put(b"x"))
            node = server.replication.node
            calls = 0
            real = node.core.read_index

            def counting(ctx: bytes) -> None:
                nonlocal calls
                calls += 1
                real(ctx)

            node.core.read_index = counting  # type: ignore[method-assign]
            reads = await asyncio.gather(*(server.range(rpc_pb2.RangeRequest(key=b"x")) for _ in range(30)))
            assert all(r.kvs[0].value == b"v" for r in reads)
            assert calls == 1

    asyncio.run(scenario())


def test_committed_entries_already_on_disk_do_not_wait_for_the_next_write(tmp_path: Path) -> None:
    # Entry 5 is durable and committed when entry 6's write starts: its client needs no second fsync.
    async def scenario() -> None:
        async with member(tmp_path) as server:
            raftlog = server.replication.raftlog
            real_prepare = raftlog.prepare
            loop = asyncio.get_running_loop()
            holds = {5: (threading.Event(), asyncio.Event()), 6: (threading.Event(), asyncio.Event())}

            def prepare(**kwargs: Any) -> PreparedWrite:
                prepared = real_prepare(**kwargs)
                if not prepared.entries:
                    return prepared
                release, started = holds[prepared.entries[-1].index]
                return dataclasses.replace(prepared, batch=HeldBatch(prepared.batch, release, started, loop))

            raftlog.prepare = prepare  # type: ignore[method-assign]
            try:
                first = asyncio.create_task(server.propose(put(b"a")))
                await holds[5][1].wait()
                second = asyncio.create_task(server.propose(put(b"b")))
                await asyncio.sleep(0)  # queued: it goes into the next write
                holds[5][0].set()
                await holds[6][1].wait()  # entry 6 is being written, and stays so
                response = await asyncio.wait_for(first, 10)
                assert response.header.revision == 2
                assert not second.done()
            finally:
                for release, _ in holds.values():
                    release.set()
            assert (await second).header.revision == 3

    asyncio.run(scenario())
