"""PeerSender on the peer stream, to a real StreamServer on a loopback port: what raft hands it arrives
whole and in order, or is reported undelivered; batches are written in the caller's turn while the
stream is idle, and queued for the pump while the socket is full."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.server.consensus.transport import QUEUE_BATCHES, PeerSender, PeerTransport
from etcdpy.server.storage.snapshot import SpooledSnapshot

CLUSTER, SENDER, RECEIVER = 0xC1, 0x1, 0x2


class Events:
    """A member's side of the transport: what was stepped, and which peers were reported unreachable."""

    def __init__(self) -> None:
        self.stepped: list[pb.Message] = []
        self.unreachable = 0

    def step(self, message: pb.Message) -> None:
        self.stepped.append(message)

    async def snapshot_received(self, message: pb.Message, spooled: SpooledSnapshot) -> None:
        raise AssertionError("no snapshot in these tests")

    def snapshot_to_send(self, message: pb.Message) -> tuple[pb.Message, Iterator[bytes]] | None:
        return None

    def report_unreachable(self, peer_id: int) -> None:
        self.unreachable += 1

    def report_snapshot(self, peer_id: int, ok: bool) -> None:
        pass

    def removed_by_peers(self) -> None:
        pass


def append(index: int, size: int = 0) -> pb.Message:
    message = pb.Message(type=pb.MsgApp, to=RECEIVER, term=2, index=index - 1)
    setattr(message, "from", SENDER)  # a keyword in Python
    message.entries.add(term=2, index=index, data=b"x" * size)
    return message


@asynccontextmanager
async def linked(tmp_path: Path) -> AsyncIterator[tuple[PeerSender, Events, list[asyncio.Transport]]]:
    """A sender's transport and a receiver's, on the peer stream: the sender to the receiver, the
    receiver's events, and the receiving connections' transports (to stop reading)."""
    received = Events()
    receiving = PeerTransport(
        local_id=RECEIVER, cluster_id=CLUSTER, events=received, snapshot_dir=tmp_path, protocol="stream"
    )
    connections: list[asyncio.Transport] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer.transport)  # type: ignore[arg-type]
        await receiving.stream_server.serve(reader, writer, "test")

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sending = PeerTransport(
        local_id=SENDER, cluster_id=CLUSTER, events=Events(), snapshot_dir=tmp_path, protocol="stream"
    )
    sending.set_peer(RECEIVER, [f"http://127.0.0.1:{port}"])
    sender = sending.peers[RECEIVER]
    try:
        async with asyncio.timeout(10):
            while sender.carried_by != "stream" or not connections:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # the pump has started and waits for batches
        yield sender, received, connections
    finally:
        await sender.stop()
        server.close()
        await server.wait_closed()


async def stepped(events: Events, count: int) -> None:
    async with asyncio.timeout(20):
        while len(events.stepped) < count:
            await asyncio.sleep(0.01)


def test_an_idle_stream_takes_a_batch_in_the_senders_turn(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with linked(tmp_path) as (sender, received, _):
            for index in range(1, 4):
                sender.send([append(index)])
                assert sender.queue.empty(), "written at once, not queued for the pump"
            await stepped(received, 3)
            assert [m.index for m in received.stepped] == [0, 1, 2]

    asyncio.run(scenario())


def test_batches_sent_while_the_receiver_stops_reading_arrive_in_order_or_are_reported(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with linked(tmp_path) as (sender, received, connections):
            for connection in connections:
                connection.pause_reading()
            sent = 0
            # 64 KiB entries: the socket buffers fill within a few hundred, then the pump's queue.
            while sender.queue.qsize() < QUEUE_BATCHES // 2 and sent < 2 * QUEUE_BATCHES:
                sent += 1
                sender.send([append(sent, 64 * 1024)])
                if sent % 16 == 0:
                    await asyncio.sleep(0)  # the pump writes what the socket takes
            assert sender.queue.qsize() == QUEUE_BATCHES // 2, (
                "a full socket hands batches to the pump's queue"
            )
            for more in range(QUEUE_BATCHES):  # past the queue's bound: dropped and reported
                sender.send([append(sent + 1 + more)])
            reported = sender.transport.events
            for connection in connections:
                connection.resume_reading()
            await stepped(received, sent + QUEUE_BATCHES // 2)
            await asyncio.sleep(0.2)
            indexes = [m.index + 1 for m in received.stepped]
            assert indexes == sorted(set(indexes)), "in order, none twice"
            assert indexes[:sent] == list(range(1, sent + 1)), "everything queued before the bound arrived"
            assert len(indexes) < sent + QUEUE_BATCHES
            assert isinstance(reported, Events) and reported.unreachable > 0

    asyncio.run(scenario())
