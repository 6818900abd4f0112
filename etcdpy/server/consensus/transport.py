"""PeerTransport: raft messages and snapshots between members, on the peer stream or the gRPC Peer service.

Sending: one `PeerSender` per remote member owns a bounded queue and one long
stream; batches go out in the order raft produced them.  The stream is the peer
stream of `peerstream.py` (etcdpy's own framing, ``protocol="stream"``) or the gRPC
Send stream (``protocol="grpc"``); a stream sender whose peer does not answer the
peer stream's handshake (an older etcdpy, or one on grpc) uses the Send stream for
that connection, and tries the peer stream again at the next.  A peer that is
down or slow only fills its own queue: when full, or while the peer is not
connected, its messages are dropped and raft is told the peer is unreachable
(raft retransmits what matters).  A broken stream is reopened with exponential
backoff.

Snapshots (MsgSnap) go on their own Snapshot stream: the first chunk carries the
message, then the state in chunks, the last chunk the crc32 of all data.  The
receiver spools the data to a file in its snapshot dir (never holding the state in
memory), fsyncs it and checks the sum before handing the file on; a stream that
fails, ends early or mismatches leaves no file.  The sender reports FINISH or
FAILURE to raft.

Everything runs on the member's event loop (grpc.aio), as does the raft node.
Channels are opened by the member's peer `Dialer` (etcdpy/server/tls.py): TLS for
``https://`` peer URLs, with the certificate files read again for every new channel.

Metrics (etcd's rafthttp names): the bytes of every batch sent and received, per peer, and
the round trip of the leader's heartbeats: a heartbeat sent to a peer with none outstanding
is timed until that peer's answer arrives (etcd times a probe of its own instead).

Tests route each directed peer link through a proxy of their own with
``ETCDPY_PEER_PROXIES="<peer host:port>=<proxy host:port>,..."``: this member then
dials the proxy wherever it would dial that peer (the peer's URL stays the same in
the membership, so only this member's outgoing link is affected).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import grpc

from etcdpy.api.raftpb import peer_pb2, peer_pb2_grpc
from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.server import failpoints
from etcdpy.server.consensus import peerstream
from etcdpy.server.metrics import NO_METRICS, Count, Metrics
from etcdpy.server.storage.snapshot import Spool, SpooledSnapshot
from etcdpy.server.tls import PLAINTEXT, CertificateGuard, Dialer, TLSInfo, explain_failure

log = logging.getLogger("etcdpy.server.consensus.transport")

QUEUE_BATCHES = 1024  # batches queued per peer before messages to it are dropped
BACKOFF_MIN = 0.05
BACKOFF_MAX = 1.0
CONNECT_TIMEOUT = 1.0  # seconds to wait for a connection before backing off
REMOVED_TEXT = peerstream.REMOVED_TEXT
PROTOCOLS = ("grpc", "stream")  # what raft messages are sent on (--experimental-peer-protocol)
MAX_MESSAGE_BYTES = 2**31 - 1
# grpc's texts for a peer that is not there (not worth a log line: raft reports it unreachable).
_PEER_DOWN = ("Connection refused", "Deadline Exceeded", "DEADLINE_EXCEEDED")


class PeerEvents(Protocol):
    """What the transport tells its member, and asks of it (the member's Replication implements it)."""

    def step(self, message: pb.Message) -> None:
        """A raft message arrived from a peer."""

    async def snapshot_received(self, message: pb.Message, spooled: SpooledSnapshot) -> None:
        """A MsgSnap arrived whole, its state checked and spooled to `spooled` (fsynced)."""

    def snapshot_to_send(self, message: pb.Message) -> tuple[pb.Message, Iterator[bytes]] | None:
        """The MsgSnap to stream (relabelled to the state sent) and that state; None: not now."""

    def report_unreachable(self, peer_id: int) -> None:
        """A message to `peer_id` could not be delivered."""

    def report_snapshot(self, peer_id: int, ok: bool) -> None:
        """A snapshot stream to `peer_id` ended, delivered or not."""

    def removed_by_peers(self) -> None:
        """A peer refused this member's messages: it has been removed from the cluster."""


PROXIES_ENV = "ETCDPY_PEER_PROXIES"


def _parse_proxies(spec: str) -> dict[str, str]:
    """``a=b,c=d`` -> {a: b, c: d}: where to dial instead of a peer's address."""
    pairs = (item.split("=", 1) for item in spec.split(",") if item.strip())
    return {peer.strip(): proxy.strip() for peer, proxy in pairs}


_PROXIES = _parse_proxies(os.environ.get(PROXIES_ENV, ""))


def peer_dialer(info: TLSInfo) -> Dialer:
    """The dialer of peer channels: the peer TLS settings, test proxies in place of peers' addresses."""
    return Dialer(info, map_address=lambda address: _PROXIES.get(address, address))


async def peer_channel(
    dialer: Dialer, urls: Iterable[str], options: list[tuple[str, Any]] | None = None
) -> grpc.aio.Channel:
    """A channel to a peer's Peer service, at the first of its URLs."""
    return await dialer.channel(sorted(urls)[0], options or [])


class PeerSender:
    """The ordered, reconnecting stream of message batches to one peer."""

    def __init__(self, transport: PeerTransport, peer_id: int, urls: Iterable[str]) -> None:
        self.transport = transport
        self.peer_id = peer_id
        self.urls = tuple(urls)
        self.queue: asyncio.Queue[list[pb.Message]] = asyncio.Queue(QUEUE_BATCHES)
        self.active = False  # a stream is open and has carried messages
        self.connected_since: float | None = None  # monotonic time the current connection came up
        self._task: asyncio.Task[None] | None = None
        self._refusal: str | None = None  # the last TLS refusal logged, so that it is logged once
        self.carried_by = ""  # the protocol the last connection to the peer used ("stream", "grpc")
        self.secure = any(url.startswith("https:") for url in self.urls)
        label = f"{peer_id:x}"
        self._sent_bytes = transport.metrics.peer_sent_bytes.labels(label)
        self._sent_failures = transport.metrics.peer_sent_failures.labels(label)
        self.round_trip_seconds = transport.metrics.peer_round_trip_seconds.labels(label)
        self.heartbeat_sent_at: float | None = None  # a heartbeat being timed (until the peer answers)
        # The peer stream's writer while the pump waits for batches with none queued: `send` then writes
        # at once, in its caller's turn, without waking the pump (a loop turn per peer per Ready).
        self._idle_writer: asyncio.StreamWriter | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"peer-{self.peer_id:x}")

    def send(self, messages: list[pb.Message]) -> None:
        if self.connected_since is None:
            # Not connected: drop rather than deliver stale messages later (raft resends what it needs).
            self._drop(messages)
            return
        writer = self._idle_writer
        if writer is not None and self.queue.empty() and not writer.transport.is_closing():
            self._write(writer, messages)
            if writer.transport.get_write_buffer_size() > 0:
                # The socket took part of it: the pump waits for the rest to drain before writing more.
                self._idle_writer = None
                self.queue.put_nowait([])
            return
        try:
            self.queue.put_nowait(messages)
        except asyncio.QueueFull:
            self._drop(messages)

    def _with_queued(self, messages: list[pb.Message]) -> list[pb.Message]:
        """`messages` and the batches queued behind them, up to 4,096 messages: one write for them all."""
        while not self.queue.empty() and len(messages) < 4096:
            messages.extend(self.queue.get_nowait())
        return messages

    def _drop(self, messages: list[pb.Message]) -> None:
        """Messages not sent: raft is told the peer is unreachable, and each counts as a sent failure."""
        self.transport.events.report_unreachable(self.peer_id)
        self._sent_failures.inc(len(messages))

    async def _batches(self) -> AsyncIterator[peer_pb2.MessageBatch]:
        t = self.transport
        while True:
            messages = self._with_queued(await self.queue.get())
            batch = peer_pb2.MessageBatch(
                cluster_id=t.cluster_id, to=self.peer_id, messages=messages, **{"from": t.local_id}
            )
            self._sent_bytes.inc(batch.ByteSize())
            yield batch
            self.active = True

    async def _run(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            connected: bool | None = None  # None: the peer does not speak the peer stream
            if self.transport.protocol == "stream":
                connected = await self._peer_stream()
            if connected is None:
                connected = await self._grpc_stream()
            if connected:
                backoff = BACKOFF_MIN
            self.active = False
            self.connected_since = None
            self.heartbeat_sent_at = None  # its answer will not come on this stream
            # Messages queued for a dead stream are stale; raft resends what it still needs.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.transport.events.report_unreachable(self.peer_id)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _grpc_stream(self) -> bool:
        """One gRPC Send stream, until it breaks; whether a connection came up."""
        try:
            channel = await peer_channel(
                self.transport.dialer,
                self.urls,
                [
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ],
            )
        except OSError as exc:  # a TLS file unreadable right now, or an auto-tls peer that is down
            log.debug("peer %x: %s", self.peer_id, exc)
            return False
        return await self._stream(channel)

    async def _peer_stream(self) -> bool | None:
        """One peer stream (peerstream.py), until it breaks; whether a connection came up, None when
        the peer does not answer the handshake (an older etcdpy, or one on grpc: use the Send stream)."""
        t = self.transport
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT + peerstream.HANDSHAKE_SECONDS):
                reader, writer = await peerstream.dial(
                    t.dialer,
                    sorted(self.urls)[0],
                    cluster_id=t.cluster_id,
                    local_id=t.local_id,
                    peer_id=self.peer_id,
                )
        except peerstream.NotAStreamPeer as exc:
            self._carried_by("grpc", f"it does not answer the peer stream: {exc}")
            return None
        except ssl.SSLError as exc:
            # A certificate refused, by either side: the gRPC path finds out and explains it.
            log.debug(
                "peer %x: the TLS handshake of the peer stream failed (%s): trying gRPC", self.peer_id, exc
            )
            return None
        except peerstream.HandshakeRefused as exc:
            if exc.status == 410:
                t.events.removed_by_peers()
            elif exc.status in (404, 405):
                self._carried_by("grpc", f"it does not serve the peer stream: {exc}")
                return None
            elif exc.text != self._refusal:
                hint = " (check --initial-cluster, --initial-cluster-token)" if exc.status == 412 else ""
                log.error("peer %x refused our messages: %s%s", self.peer_id, exc.text, hint)
            self._refusal = exc.text
            return False
        except ConnectionResetError as exc:
            if self.secure:
                # A TLS peer that refuses this member's certificate closes the connection after the
                # handshake: the gRPC path finds out whether that is it, and explains it (_log_refusal).
                log.debug("peer %x: %s: trying gRPC", self.peer_id, exc)
                return None
            log.debug("peer %x: %s", self.peer_id, exc)
            return False
        except (OSError, TimeoutError) as exc:
            log.debug("peer %x: %s", self.peer_id, exc)
            return False
        self._refusal = None
        self._carried_by("stream", "")
        self.connected_since = time.monotonic()
        pump = asyncio.create_task(self._pump(writer))
        closed = asyncio.create_task(reader.read(1))  # the receiver never writes: any answer ends it
        try:
            await asyncio.wait((pump, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, closed):
                task.cancel()
            await asyncio.gather(pump, closed, return_exceptions=True)
            writer.close()
        if pump.done() and not pump.cancelled() and pump.exception() is not None:
            error = pump.exception()
            if self.active:
                log.warning("lost the stream to peer %x: %s", self.peer_id, error)
        elif self.active:
            log.warning("lost the stream to peer %x: it closed the connection", self.peer_id)
        return True

    def _carried_by(self, protocol: str, why: str) -> None:
        """Log which protocol carries messages to the peer, when it changes (as etcd logs its streams)."""
        if protocol != self.carried_by:
            self.carried_by = protocol
            if protocol == "stream":
                log.info("established the peer stream to peer %x", self.peer_id)
            else:
                log.info("sending to peer %x on gRPC: %s", self.peer_id, why)

    async def _pump(self, writer: asyncio.StreamWriter) -> None:
        """Write queued batches to the peer stream as frames, coalescing what is queued; while none is
        queued and the socket has taken everything, `send` writes itself (`_idle_writer`)."""
        try:
            while True:
                if self.queue.empty() and writer.transport.get_write_buffer_size() == 0:
                    self._idle_writer = writer
                messages = await self.queue.get()
                self._idle_writer = None
                self._write(writer, self._with_queued(messages))
                await writer.drain()
        finally:
            self._idle_writer = None

    def _write(self, writer: asyncio.StreamWriter, messages: list[pb.Message]) -> None:
        if not messages:
            return
        try:
            frames = list(peerstream.encode_frames(messages))
        except peerstream.FrameError as exc:
            log.error("peer %x: %s: dropped", self.peer_id, exc)
            self.transport.events.report_unreachable(self.peer_id)
            return
        for frame in frames:
            self._sent_bytes.inc(len(frame))
            writer.write(frame)
        self.active = True

    async def _stream(self, channel: grpc.aio.Channel) -> bool:
        """Connect, send batches until the stream breaks, close `channel`; whether a connection came up."""
        try:
            await asyncio.wait_for(channel.channel_ready(), CONNECT_TIMEOUT)
            self.connected_since = time.monotonic()
            stub = peer_pb2_grpc.PeerStub(channel)  # type: ignore[no-untyped-call]
            await stub.Send(self._batches())
        except TimeoutError:
            await self._log_refusal(channel)  # the peer is down, or refuses the TLS handshake: say which
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.PERMISSION_DENIED and exc.details() == REMOVED_TEXT:
                self.transport.events.removed_by_peers()
            elif exc.code() is grpc.StatusCode.FAILED_PRECONDITION:
                log.error(
                    "peer %x refused our messages: %s (check --initial-cluster, --initial-cluster-token)",
                    self.peer_id,
                    exc.details(),
                )
            elif self.active:
                log.warning("lost the stream to peer %x: %s", self.peer_id, exc.code().name)
        finally:
            await channel.close(None)
        return self.connected_since is not None

    async def send_snapshot(self, message: pb.Message) -> None:
        """Stream one snapshot to the peer; raft hears FINISH or FAILURE."""
        t = self.transport
        ok = False
        source = t.events.snapshot_to_send(message)
        if source is None:
            t.events.report_snapshot(self.peer_id, False)
            return
        message, state = source
        started = time.monotonic()
        try:
            channel = await peer_channel(
                t.dialer, self.urls, [("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
            )
            async with channel:
                stub = peer_pb2_grpc.PeerStub(channel)  # type: ignore[no-untyped-call]
                await stub.Snapshot(_snapshot_chunks(t.cluster_id, message, state))
                ok = True
        except (grpc.aio.AioRpcError, OSError) as exc:
            details = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
            log.warning("sending a snapshot to peer %x failed: %s", self.peer_id, details)
        t.metrics.snapshot_sent(self.peer_id, ok, time.monotonic() - started)
        t.events.report_snapshot(self.peer_id, ok)

    async def _log_refusal(self, channel: grpc.aio.Channel) -> None:
        """Log why a TLS connection to the peer fails (a refused certificate), once per distinct reason."""
        if not self.secure:
            return
        stub = peer_pb2_grpc.PeerStub(channel)  # type: ignore[no-untyped-call]
        try:
            await stub.Members(peer_pb2.MembersRequest(), timeout=CONNECT_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            reason = exc.details() or exc.code().name
            if not any(down in reason for down in _PEER_DOWN):
                if reason != self._refusal:
                    explained = explain_failure(sorted(self.urls)[0], reason)
                    log.error("cannot connect to peer %x over TLS: %s", self.peer_id, explained)
                self._refusal = reason
                return
        self._refusal = None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def _snapshot_chunks(
    cluster_id: int, message: pb.Message, data: Iterator[bytes]
) -> AsyncIterator[peer_pb2.SnapshotChunk]:
    yield peer_pb2.SnapshotChunk(cluster_id=cluster_id, message=message)
    crc = 0
    for piece in data:
        crc = zlib.crc32(piece, crc)
        yield peer_pb2.SnapshotChunk(cluster_id=cluster_id, data=piece)
        failpoints.hit("snapshotDuringSend", message.snapshot.metadata.index)
        await asyncio.sleep(0)  # let the loop serve others between chunks
    yield peer_pb2.SnapshotChunk(cluster_id=cluster_id, last=True, crc32=crc)


class PeerTransport:
    """Routes outgoing raft messages to per-peer senders and serves the Peer service."""

    def __init__(
        self,
        *,
        local_id: int,
        cluster_id: int,
        events: PeerEvents,
        snapshot_dir: Path,
        dialer: Dialer = PLAINTEXT,
        metrics: Metrics = NO_METRICS,
        protocol: str = "grpc",
    ) -> None:
        assert protocol in PROTOCOLS, protocol
        self.protocol = protocol  # what this member sends raft messages on (see PeerSender)
        self.dialer = dialer  # opens the channels to peers (TLS for https:// peer URLs)
        self.local_id = local_id
        self.cluster_id = cluster_id
        self.events = events
        self.snapshot_dir = snapshot_dir  # where received snapshots are spooled
        self.metrics = metrics
        self._received_bytes: dict[int, Count] = {}  # per sending member: its counter's child
        self.removed: set[int] = set()  # members removed from the cluster: their messages are refused
        self.peers: dict[int, PeerSender] = {}
        self._snapshot_tasks: set[asyncio.Task[None]] = set()
        # The receiving side of peer streams, with the peer certificate checks the gRPC path's guard does.
        self.stream_server = peerstream.StreamServer(self, CertificateGuard.for_info("peer", dialer.info))

    def set_peer(self, peer_id: int, urls: Iterable[str]) -> None:
        """Add a peer, or point an existing one at new URLs; must run on the loop."""
        if peer_id == self.local_id:
            return
        current = self.peers.get(peer_id)
        if current is not None and set(current.urls) == set(urls):
            return
        if current is not None:
            asyncio.get_running_loop().create_task(current.stop())
        sender = PeerSender(self, peer_id, urls)
        self.peers[peer_id] = sender
        sender.start()

    def remove_peer(self, peer_id: int) -> None:
        sender = self.peers.pop(peer_id, None)
        if sender is not None:
            asyncio.get_running_loop().create_task(sender.stop())

    def send(self, messages: Iterable[pb.Message]) -> None:
        """Queue messages to their peers without waiting; unknown peers' messages are dropped."""
        by_peer: dict[int, list[pb.Message]] = {}
        for m in messages:
            if m.type == pb.MsgSnap:
                self._start_snapshot(m)
                continue
            if m.type == pb.MsgHeartbeat:
                self._time_heartbeat(m.to)
                self.metrics.heartbeats.sent(m.to, m.term)
            by_peer.setdefault(m.to, []).append(m)
        for peer_id, batch in by_peer.items():
            sender = self.peers.get(peer_id)
            if sender is not None:
                sender.send(batch)

    def _time_heartbeat(self, peer_id: int) -> None:
        sender = self.peers.get(peer_id)
        if sender is not None and sender.heartbeat_sent_at is None:
            sender.heartbeat_sent_at = time.perf_counter()

    def received(self, sender_id: int, size: int, messages: Iterable[pb.Message]) -> None:
        """Count a batch of `size` bytes that arrived and step its messages into raft; a heartbeat's
        answer ends the round trip being timed."""
        received = self._received_bytes.get(sender_id)
        if received is None:
            received = self._received_bytes[sender_id] = self.metrics.peer_received_bytes.labels(
                f"{sender_id:x}"
            )
        received.inc(size)
        sender = self.peers.get(sender_id)
        timing = sender is not None and sender.heartbeat_sent_at is not None
        step = self.events.step
        for m in messages:
            if timing and m.type == pb.MsgHeartbeatResp:
                assert sender is not None and sender.heartbeat_sent_at is not None
                sender.round_trip_seconds.observe(time.perf_counter() - sender.heartbeat_sent_at)
                sender.heartbeat_sent_at = None
                timing = False
            step(m)

    async def serve_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        """Serve one peer stream connection the peer port's front handed over (peerstream.py)."""
        await self.stream_server.serve(reader, writer, peer)

    def _start_snapshot(self, message: pb.Message) -> None:
        sender = self.peers.get(message.to)
        if sender is None:
            self.events.report_snapshot(message.to, False)
            return
        task = asyncio.get_running_loop().create_task(sender.send_snapshot(message))
        self._snapshot_tasks.add(task)
        task.add_done_callback(self._snapshot_tasks.discard)

    def active_since(self, peer_id: int) -> float | None:
        """Monotonic time since which the connection to the peer has been up (None: it is down)."""
        sender = self.peers.get(peer_id)
        return None if sender is None else sender.connected_since

    async def stop(self) -> None:
        for sender in list(self.peers.values()):
            await sender.stop()
        for task in list(self._snapshot_tasks):
            task.cancel()
        await asyncio.gather(*self._snapshot_tasks, return_exceptions=True)


class PeerService(peer_pb2_grpc.PeerServicer):
    """The receiving side: hands messages and checked snapshots to the transport's sinks."""

    def __init__(self, transport: PeerTransport) -> None:
        self.t = transport

    async def Send(
        self, request_iterator: AsyncIterator[peer_pb2.MessageBatch], context: Any
    ) -> peer_pb2.SendResponse:
        async for batch in request_iterator:
            if batch.cluster_id != self.t.cluster_id:
                self.t.metrics.peer_received_failures.labels(f"{getattr(batch, 'from'):x}").inc()
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"cluster ID mismatch: local {self.t.cluster_id:x}, remote {batch.cluster_id:x}",
                )
            if getattr(batch, "from") in self.t.removed:
                self.t.metrics.peer_received_failures.labels(f"{getattr(batch, 'from'):x}").inc()
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, REMOVED_TEXT)
            self.t.received(getattr(batch, "from"), batch.ByteSize(), batch.messages)
        return peer_pb2.SendResponse(cluster_id=self.t.cluster_id)

    async def Snapshot(
        self, request_iterator: AsyncIterator[peer_pb2.SnapshotChunk], context: Any
    ) -> peer_pb2.SnapshotResponse:
        message: pb.Message | None = None
        spool: Spool | None = None  # the stream's file until handed on; deleted if the stream fails
        started = time.monotonic()
        try:
            async for chunk in request_iterator:
                if chunk.cluster_id != self.t.cluster_id:
                    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "cluster ID mismatch")
                if chunk.HasField("message"):
                    message = chunk.message
                    if spool is None:
                        spool = Spool(self.t.snapshot_dir, message.snapshot.metadata.index)
                if chunk.data:
                    if spool is None:
                        await context.abort(grpc.StatusCode.DATA_LOSS, "snapshot data before its message")
                    assert spool is not None and message is not None
                    spool.write(chunk.data)
                    failpoints.hit("snapshotDuringReceive", message.snapshot.metadata.index)
                if chunk.last:
                    if message is None or spool is None or chunk.crc32 != spool.crc:
                        await context.abort(grpc.StatusCode.DATA_LOSS, "snapshot checksum mismatch")
                    assert message is not None and spool is not None
                    spooled = await asyncio.to_thread(spool.finish)  # fsyncs
                    spool = None
                    await self.t.events.snapshot_received(message, spooled)
                    self.t.metrics.snapshot_received(
                        getattr(message, "from"), True, time.monotonic() - started
                    )
                    return peer_pb2.SnapshotResponse(cluster_id=self.t.cluster_id)
            await context.abort(grpc.StatusCode.DATA_LOSS, "snapshot stream ended early")
            raise AssertionError("unreachable")
        finally:
            if spool is not None:
                spool.discard()
                self.t.metrics.snapshot_received(getattr(message, "from"), False, 0.0)
