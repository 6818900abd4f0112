"""The peer stream's receiving side on a loopback socket: the handshake's checks, frames stepped in
order, and a broken stream (garbage, an oversized length, a truncated frame) dropped with nothing of
it stepped; and what `dial` tells of a peer whose grpcio owns the port."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import grpc
import pytest

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.server.consensus import peerstream
from etcdpy.server.consensus.peerstream import PATH, StreamServer, encode_frames
from etcdpy.server.tls import PLAINTEXT

CLUSTER, LOCAL, SENDER = 0xC1, 0x2, 0x1


@dataclass
class Receiver:
    local_id: int = LOCAL
    cluster_id: int = CLUSTER
    removed: set[int] = field(default_factory=set)
    stepped: list[tuple[int, pb.Message]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    def received(self, sender_id: int, size: int, messages: Iterable[pb.Message]) -> None:
        self.sizes.append(size)
        self.stepped.extend((sender_id, m) for m in messages)


@asynccontextmanager
async def serving() -> AsyncIterator[tuple[Receiver, int, list[asyncio.Task[None]]]]:
    """A StreamServer on a loopback port: its receiver, the port, the connections' handler tasks."""
    receiver = Receiver()
    handlers: list[asyncio.Task[None]] = []
    server_side = StreamServer(receiver)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        await server_side.serve(reader, writer, "test")

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield receiver, server.sockets[0].getsockname()[1], handlers
    finally:
        server.close()
        await server.wait_closed()


def heartbeat(i: int) -> pb.Message:
    return pb.Message(type=pb.MsgHeartbeat, to=LOCAL, term=3, commit=i, **{"from": SENDER})


def head(cluster: int = CLUSTER, sender: int = SENDER, to: int = LOCAL, path: str = PATH) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Etcd-Cluster-ID: {cluster:x}\r\n"
        f"X-Server-From: {sender:x}\r\nX-Raft-To: {to:x}\r\n\r\n"
    ).encode()


async def opened(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head())
    assert await reader.readuntil(b"\r\n\r\n") == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    return reader, writer


def test_batches_are_stepped_in_order_with_the_sender_the_handshake_named() -> None:
    async def scenario() -> None:
        async with serving() as (receiver, port, handlers):
            reader, writer = await opened(port)
            frames = [f for i in range(0, 6, 2) for f in encode_frames([heartbeat(i), heartbeat(i + 1)])]
            writer.write(b"".join(frames))
            writer.write_eof()
            assert await reader.read() == b""  # the server closes after the clean end
            writer.close()
            await asyncio.gather(*handlers)
            assert receiver.stepped == [(SENDER, heartbeat(i)) for i in range(6)]
            assert receiver.sizes == [len(f) for f in frames]

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "bad",
    [
        (5).to_bytes(4, "big") + b"\xff\xff\xff\xff\x0f",  # a frame that is not a MessageBatch
        (2**31).to_bytes(4, "big"),  # an oversized length
        b"GET / HTTP/1.1\r\n\r\n",  # a second request, read as a length
    ],
    ids=["garbage", "oversized-length", "http-request"],
)
def test_a_bad_frame_drops_the_connection_and_nothing_of_it_is_stepped(
    bad: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with serving() as (receiver, port, handlers):
            reader, writer = await opened(port)
            (good,) = encode_frames([heartbeat(1)])
            writer.write(good + bad + b"".join(encode_frames([heartbeat(2)])))
            assert await reader.read() == b""  # dropped without waiting for the client to close
            await asyncio.gather(*handlers)
            writer.close()
            assert receiver.stepped == [(SENDER, heartbeat(1))]

    with caplog.at_level(logging.WARNING, "etcdpy.server.consensus.peerstream"):
        asyncio.run(scenario())
    assert "dropped the peer stream from test: " in caplog.text


def test_a_stream_that_ends_inside_a_frame_steps_nothing_of_that_frame(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with serving() as (receiver, port, handlers):
            _reader, writer = await opened(port)
            (frame,) = encode_frames([heartbeat(1)])
            writer.write(frame[:-2])
            writer.write_eof()
            await asyncio.gather(*handlers)
            writer.close()
            assert receiver.stepped == []

    with caplog.at_level(logging.WARNING, "etcdpy.server.consensus.peerstream"):
        asyncio.run(scenario())
    assert "the stream ended inside a frame" in caplog.text


@pytest.mark.parametrize(
    ("request_head", "status", "text"),
    [
        (head(cluster=0xBAD), 412, "cluster ID mismatch: local c1, remote bad"),
        (head(to=0x9), 412, "the stream is for member 9, this is member 2"),
        (head(sender=0x7), 410, "the member has been permanently removed from the cluster"),
        (head(path="/raft/stream/msgapp"), 404, "404 page not found"),
        (b"POST /raft/stream/batch HTTP/1.1\r\nX-Raft-To: 2\r\n\r\n", 400, "missing or malformed"),
    ],
    ids=["cluster-id", "to", "removed", "path", "headers"],
)
def test_the_handshake_is_refused_with_a_status_and_nothing_is_read_after_it(
    request_head: bytes, status: int, text: str
) -> None:
    async def scenario() -> None:
        async with serving() as (receiver, port, _handlers):
            receiver.removed.add(0x7)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request_head + b"".join(encode_frames([heartbeat(1)])))
            answer = await reader.read()
            writer.close()
            assert answer.startswith(f"HTTP/1.1 {status} ".encode())
            assert text in answer.decode()
            assert receiver.stepped == []

    asyncio.run(scenario())


def test_dial_opens_a_stream_and_reports_a_refusal() -> None:
    async def scenario() -> None:
        async with serving() as (receiver, port, handlers):
            url = f"http://127.0.0.1:{port}"
            _reader, writer = await peerstream.dial(
                PLAINTEXT, url, cluster_id=CLUSTER, local_id=SENDER, peer_id=LOCAL
            )
            writer.write(b"".join(encode_frames([heartbeat(4)])))
            writer.close()
            await asyncio.gather(*handlers)
            assert receiver.stepped == [(SENDER, heartbeat(4))]
            with pytest.raises(peerstream.HandshakeRefused) as refused:
                await peerstream.dial(PLAINTEXT, url, cluster_id=0x5, local_id=SENDER, peer_id=LOCAL)
            assert (refused.value.status, refused.value.text) == (
                412,
                "cluster ID mismatch: local c1, remote 5",
            )

    asyncio.run(scenario())


def test_dial_tells_a_peer_whose_grpcio_owns_the_port_from_one_that_is_down() -> None:
    async def scenario() -> None:
        server = grpc.aio.server()
        port = server.add_insecure_port("127.0.0.1:0")
        url = f"http://127.0.0.1:{port}"
        await server.start()
        try:
            with pytest.raises(peerstream.NotAStreamPeer):
                await peerstream.dial(PLAINTEXT, url, cluster_id=1, local_id=1, peer_id=2)
        finally:
            await server.stop(None)
        with pytest.raises(OSError):  # now nobody listens there: unreachable, not another protocol
            await peerstream.dial(PLAINTEXT, url, cluster_id=1, local_id=1, peer_id=2)

    asyncio.run(scenario())
