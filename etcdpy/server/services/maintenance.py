"""Maintenance service: Status, Hash, HashKV, MoveLeader, Alarm, Defragment, Snapshot (etcd's backups)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from typing import BinaryIO

import grpc

from etcdpy.api import errors
from etcdpy.api.alarms import alarm_text
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2, rpc_pb2_grpc
from etcdpy.server.etcdserver import EtcdServer
from etcdpy.server.services.common import Context, answers_unimplemented, maps_etcd_errors
from etcdpy.server.storage import etcddb

log = logging.getLogger(__name__)


@answers_unimplemented
class MaintenanceService(rpc_pb2_grpc.MaintenanceServicer):
    """/etcdserverpb.Maintenance."""

    def __init__(self, server: EtcdServer) -> None:
        self.server = server

    def _check_admin(self) -> None:
        """Root only, as etcd's authMaintenanceServer, which returns the auth package's own errors unmapped:
        they reach clients as UNKNOWN, worded ``auth: ...`` (e.g. ``auth: permission denied``)."""
        try:
            self.server.check_admin()
        except errors.EtcdError as exc:
            raise errors.UnknownEtcdError(
                grpc.StatusCode.UNKNOWN, exc.text.replace("etcdserver: ", "auth: ", 1)
            ) from None

    @maps_etcd_errors
    async def Status(self, request: rpc_pb2.StatusRequest, context: Context) -> rpc_pb2.StatusResponse:
        response = self.server.status()
        # etcd lists its view of the active alarms after its own errors ("memberID:1 alarm:NOSPACE ").
        response.errors.extend(alarm_text(alarm) for alarm in self.server.alarms())
        return response

    @maps_etcd_errors
    async def Alarm(self, request: rpc_pb2.AlarmRequest, context: Context) -> rpc_pb2.AlarmResponse:
        # Every action, GET included, goes through the log as in etcd: the answer is the cluster's.
        response: rpc_pb2.AlarmResponse = await self.server.propose(
            raft_internal_pb2.InternalRaftRequest(alarm=request)
        )
        response.ClearField("header")  # etcd's AlarmResponse carries no header
        return response

    @maps_etcd_errors
    async def Hash(self, request: rpc_pb2.HashRequest, context: Context) -> rpc_pb2.HashResponse:
        self._check_admin()
        return rpc_pb2.HashResponse(header=self.server.header(), hash=self.server.hash())

    @maps_etcd_errors
    async def HashKV(self, request: rpc_pb2.HashKVRequest, context: Context) -> rpc_pb2.HashKVResponse:
        self._check_admin()
        hash_value, compact_revision, hash_revision = self.server.hash_kv(request.revision)
        header = self.server.header()
        header.revision = hash_revision
        return rpc_pb2.HashKVResponse(
            header=header, hash=hash_value, compact_revision=compact_revision, hash_revision=hash_revision
        )

    @maps_etcd_errors
    async def Snapshot(
        self, request: rpc_pb2.SnapshotRequest, context: Context
    ) -> AsyncIterator[rpc_pb2.SnapshotResponse]:
        self._check_admin()
        # etcd's stream: the bbolt file of one point in time (here a LevelDB snapshot, taken at once,
        # so writes go on) in 32 KiB blobs counting down remaining_bytes, then its sha256 alone.
        backend = self.server.applier.backend
        started = time.perf_counter()  # etcd_disk_backend_snapshot_duration_seconds: until the last blob
        # The worker thread owns the view once started: a client that goes away meanwhile must not
        # release it under the thread's feet, so the wait is shielded and the file closed when done.
        job = asyncio.ensure_future(
            asyncio.to_thread(etcddb.spool_snapshot, backend.snapshot(), backend.data_dir / "member")
        )
        try:
            spooled, written = await asyncio.shield(job)
        except OSError as exc:
            await context.abort(grpc.StatusCode.UNKNOWN, f"snapshot: {exc.strerror or exc}")
            return
        except asyncio.CancelledError:
            job.add_done_callback(_close_spooled)
            raise
        log.info("sending a snapshot at revision %d (%d bytes)", written.revision, written.size)
        digest = hashlib.sha256()
        remaining = written.size
        try:
            while remaining > 0:
                block = await asyncio.to_thread(spooled.read, min(remaining, 32 * etcddb.SEND_CHUNK_BYTES))
                if not block:
                    await context.abort(grpc.StatusCode.UNKNOWN, "snapshot: the spooled file ended early")
                digest.update(block)
                for start in range(0, len(block), etcddb.SEND_CHUNK_BYTES):
                    blob = block[start : start + etcddb.SEND_CHUNK_BYTES]
                    remaining -= len(blob)
                    yield rpc_pb2.SnapshotResponse(remaining_bytes=remaining, blob=blob)
            yield rpc_pb2.SnapshotResponse(remaining_bytes=0, blob=digest.digest())
            self.server.metrics.snapshot_seconds.observe(time.perf_counter() - started)
        finally:
            spooled.close()

    @maps_etcd_errors
    async def MoveLeader(
        self, request: rpc_pb2.MoveLeaderRequest, context: Context
    ) -> rpc_pb2.MoveLeaderResponse:
        await self.server.members.move_leader(request.targetID)
        return rpc_pb2.MoveLeaderResponse()  # etcd 3.4 answers without a header

    @maps_etcd_errors
    async def Defragment(
        self, request: rpc_pb2.DefragmentRequest, context: Context
    ) -> rpc_pb2.DefragmentResponse:
        self._check_admin()
        # Online, unlike etcd's: LevelDB compacts on a worker thread while the loop serves reads and
        # writes; a second call waits for the running one (Backend.defragment).
        backend = self.server.applier.backend
        log.info("starting defragment")
        before = backend.size_bytes()
        with self.server.metrics.defragmenting():  # etcd_disk_defrag_inflight, then the duration
            await asyncio.to_thread(backend.defragment)
        log.info("finished defragment: %d -> %d bytes on disk", before, backend.size_bytes())
        return rpc_pb2.DefragmentResponse()  # etcd 3.4 answers without a header


def _close_spooled(job: asyncio.Future[tuple[BinaryIO, etcddb.Written]]) -> None:
    """Close the file of a snapshot nobody waits for any more."""
    if not job.cancelled() and job.exception() is None:
        job.result()[0].close()
