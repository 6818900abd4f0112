"""The write path in-process: group commit, and a write stuck on disk timing out as etcd does."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.server.apply import Applier
from etcdpy.server.config import Config
from etcdpy.server.etcdserver import EtcdServer
from etcdpy.server.membership import Cluster
from etcdpy.server.storage.backend import Backend
from etcdpy.server.storage.wal import WAL, PreparedSave


def put(key: bytes) -> raft_internal_pb2.InternalRaftRequest:
    return raft_internal_pb2.InternalRaftRequest(put=rpc_pb2.PutRequest(key=key, value=b"v"))


def test_proposals_queued_during_a_write_share_the_next_write(tmp_path: Path) -> None:
    asyncio.run(_group_commit(tmp_path))


async def _group_commit(tmp_path: Path) -> None:
    backend = Backend(tmp_path)
    config = Config(initial_advertise_peer_urls=("http://127.0.0.1:23800",)).validate()
    cluster = Cluster.from_config(config)
    cluster.publish_attributes("default", ["http://127.0.0.1:2379"])
    wal = WAL.open(backend)
    server = EtcdServer(
        cluster=cluster, applier=Applier(backend), max_request_bytes=1 << 20, wal=wal, keep_entries=5000
    )
    server.start_log(True, publish=cluster.write)
    loop = asyncio.get_running_loop()
    release = threading.Event()
    first_write_started = asyncio.Event()
    written_through: list[int] = []
    real_write = wal.write

    def held_write(prepared: PreparedSave) -> None:
        assert prepared.last is not None
        written_through.append(prepared.last.index)
        loop.call_soon_threadsafe(first_write_started.set)
        release.wait(timeout=30)  # the first write "takes long": everything else queues meanwhile
        real_write(prepared)

    wal.write = held_write  # type: ignore[method-assign]
    server.start()
    try:
        first = asyncio.create_task(server.propose(put(b"k00")))
        await first_write_started.wait()
        others = [asyncio.create_task(server.propose(put(b"k%02d" % i))) for i in range(1, 50)]
        await asyncio.sleep(0)  # let every proposal reach the queue
        release.set()
        responses = await asyncio.gather(first, *others)
    finally:
        release.set()
        await server.stop()
        backend.close()
    assert written_through == [5, 54]  # entry 5 alone, then entries 6..54 in one synced write
    assert sorted(r.header.revision for r in responses) == list(range(2, 52))
    assert server.log.commit_index == server.applier.applied_index == 54


def test_a_write_stuck_on_disk_times_out_with_etcds_error(tmp_path: Path) -> None:
    asyncio.run(_stuck_write(tmp_path))


async def _stuck_write(tmp_path: Path) -> None:
    backend = Backend(tmp_path)
    config = Config(initial_advertise_peer_urls=("http://127.0.0.1:23800",)).validate()
    cluster = Cluster.from_config(config)
    cluster.publish_attributes("default", ["http://127.0.0.1:2379"])
    wal = WAL.open(backend)
    server = EtcdServer(
        cluster=cluster,
        applier=Applier(backend),
        max_request_bytes=1 << 20,
        wal=wal,
        keep_entries=5000,
        request_timeout=0.05,
    )
    server.start_log(True, publish=cluster.write)
    release = threading.Event()
    real_write = wal.write

    def stuck_write(prepared: PreparedSave) -> None:
        release.wait(timeout=30)
        real_write(prepared)

    wal.write = stuck_write  # type: ignore[method-assign]
    server.start()
    try:
        with pytest.raises(errors.ErrTimeout):
            await server.propose(put(b"late"))
    finally:
        release.set()
        await server.stop()
        backend.close()
    # The entry was durable after all: the outcome of a timed-out write is unknown, not "failed".
    assert server.applier.applied_index == 5
