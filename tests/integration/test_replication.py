"""Replication in one process: members with real LevelDB logs and gRPC peer streams on loopback.

Each member is a Backend + Applier + Replication (RaftNode over RaftLogStorage, PeerTransport)
serving the Peer service on a free port; the tests drive proposals and check
that every member applies the same entries, reads are linearizable through
ReadIndex, and a member that fell behind a compacted log catches up by snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import grpc
import pytest
from procs import free_port

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.server.apply import Applier
from etcdpy.server.consensus import node as raftnode
from etcdpy.server.consensus.membership import Cluster, MembershipApplier, cluster_id, member_id
from etcdpy.server.consensus.node import MAX_FORWARDED_READS, RaftSettings
from etcdpy.server.consensus.replication import Replication, bootstrap_new_cluster
from etcdpy.server.storage import snapshot
from etcdpy.server.storage.backend import Backend
from etcdpy.server.storage.raftlog import RaftLogStorage

TOKEN = "test-token"


class Member:
    """One in-process member; `start` boots it from its data dir, `stop` shuts it down cleanly."""

    def __init__(self, data_dir: Path, port: int, urls: dict[int, str], settings: RaftSettings) -> None:
        self.data_dir = data_dir
        self.port = port
        self.urls = urls
        self.settings = settings
        self.id = member_id([f"http://127.0.0.1:{port}"], TOKEN)
        self.applied_puts: list[bytes] = []

    async def start(self) -> None:
        self.backend = Backend(self.data_dir)
        self.applier = Applier(self.backend)
        raftlog = RaftLogStorage.open(self.backend)
        cluster = Cluster.load(self.backend)
        if cluster is None:
            members = {mid: rpc_pb2.Member(ID=mid, peerURLs=[url]) for mid, url in self.urls.items()}
            cluster = Cluster(cluster_id(members), self.id, members)
            bootstrap_new_cluster(raftlog, cluster)
        self.repl = Replication(
            backend=self.backend,
            applier=self.applier,
            cluster=cluster,
            raftlog=raftlog,
            settings=self.settings,
            membership=MembershipApplier(self.backend, cluster),
            apply_entries=self._apply,
        )
        self.server = grpc.aio.server()
        self.repl.register(self.server, promote=self._promote)
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self.server.start()
        self.task = asyncio.get_running_loop().create_task(self.repl.run())

    async def _promote(self, member_id: int) -> None:
        raise errors.ErrNotCapable()

    def _apply(self, entries: list[pb.Entry]) -> None:
        batch = [(e.index, e.data if e.type == pb.EntryNormal else b"") for e in entries]
        self.applier.apply(batch)

    async def stop(self) -> None:
        await self.repl.stop()
        await self.server.stop(0)
        await asyncio.wait([self.task])
        self.backend.close()

    def value(self, key: bytes) -> bytes | None:
        kvs = self.applier.range(rpc_pb2.RangeRequest(key=key)).kvs
        return kvs[0].value if kvs else None


def put(key: bytes, value: bytes, request_id: int) -> bytes:
    req = raft_internal_pb2.InternalRaftRequest(put=rpc_pb2.PutRequest(key=key, value=value))
    req.header.ID = request_id
    return req.SerializeToString()


async def until(predicate: object, timeout: float = 30.0) -> None:
    """Poll a condition on the event loop (the members run on it) until true or fail."""
    assert callable(predicate)
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def cluster_of(tmp_path: Path, n: int, settings: RaftSettings) -> AsyncIterator[list[Member]]:
    ports = [free_port() for _ in range(n)]
    urls = {member_id([f"http://127.0.0.1:{p}"], TOKEN): f"http://127.0.0.1:{p}" for p in ports}
    members = [Member(tmp_path / f"m{i}", p, urls, settings) for i, p in enumerate(ports)]
    for m in members:
        await m.start()
    try:
        yield members
    finally:
        for m in members:
            if m.backend.db.closed is False:
                await m.stop()


FAST = RaftSettings(tick_seconds=0.01, election_tick=10, heartbeat_tick=1)


def leader_of(members: list[Member]) -> Member:
    live = [m for m in members if not m.backend.db.closed]
    leaders = {m.repl.leader_id for m in live}
    assert len(leaders) == 1
    (lead,) = leaders
    return next(m for m in live if m.id == lead)


def test_three_members_elect_one_leader_and_apply_the_same_writes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster_of(tmp_path, 3, FAST) as members:
            await until(lambda: len({m.repl.leader_id for m in members} - {0}) == 1)
            follower = next(m for m in members if m.id != members[0].repl.leader_id)
            for i in range(50):
                follower.repl.propose(put(b"k%d" % i, b"v%d" % i, i + 1))  # forwarded to the leader
            await until(lambda: all(m.value(b"k49") == b"v49" for m in members))
            indexes = {m.applier.applied_index for m in members}
            assert len(indexes) == 1
            assert len({m.applier.hash() for m in members}) == 1
            # bootstrap: three AddNode entries at term 1, then the first leader's empty entry
            assert members[0].repl.raftlog.term(3) == 1
            assert members[0].repl.raftlog.term(4) >= 2

    asyncio.run(scenario())


def test_read_index_is_batched_and_waits_for_the_commit_point(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster_of(tmp_path, 3, FAST) as members:
            await until(lambda: all(m.repl.leader_id != 0 for m in members))
            follower = next(m for m in members if m.id != m.repl.leader_id)
            leader = leader_of(members)
            leader.repl.propose(put(b"x", b"1", 1))
            await until(lambda: leader.value(b"x") == b"1")
            indexes = await asyncio.gather(*(follower.repl.read_index() for _ in range(20)))
            assert len(set(indexes)) == 1  # one ReadIndex round served all twenty readers
            assert indexes[0] >= leader.applier.applied_index
            await follower.repl.wait_applied(indexes[0])
            assert follower.value(b"x") == b"1"

    asyncio.run(scenario())


def test_a_member_down_past_the_compacted_log_catches_up_by_snapshot(tmp_path: Path) -> None:
    settings = RaftSettings(
        tick_seconds=0.01, election_tick=10, heartbeat_tick=1, snapshot_count=20, catchup_entries=5
    )

    async def scenario() -> None:
        async with cluster_of(tmp_path, 3, settings) as members:
            await until(lambda: all(m.repl.leader_id != 0 for m in members))
            leader = leader_of(members)
            down = next(m for m in members if m is not leader)
            await down.stop()
            # Until the leader notices, its queue to `down` may hold (and later deliver) what it sends.
            await until(lambda: leader.repl.transport.active_since(down.id) is None)
            for i in range(100):
                leader.repl.propose(put(b"k%d" % i, b"v%d" % i, i + 1))
            await until(lambda: leader.value(b"k99") == b"v99")
            assert leader.repl.raftlog.first_index() > 10  # the entries `down` misses are gone
            await down.start()
            target = leader.applier.applied_index
            await until(lambda: down.applier.applied_index >= target)
            assert down.value(b"k99") == b"v99"
            assert down.repl.snapshots_installed >= 1
            assert down.applier.hash() == leader.applier.hash()

    asyncio.run(scenario())


@pytest.mark.parametrize("n", [1])
def test_a_single_member_elects_itself_at_term_two(tmp_path: Path, n: int) -> None:
    async def scenario() -> None:
        async with cluster_of(tmp_path, n, FAST) as members:
            (m,) = members
            await until(lambda: m.repl.leader_id == m.id)
            assert m.repl.term == 2
            await until(lambda: m.applier.applied_index == 2)  # the AddNode, then the leader's empty entry

    asyncio.run(scenario())


def test_read_contexts_are_unique_across_members_and_restarts(tmp_path: Path) -> None:
    # The leader keys pending reads by context: a shared one would answer one member's read with another's.
    async def scenario() -> None:
        seen: list[bytes] = []

        def record_contexts(member: Member) -> None:
            real = member.repl.node.core.read_index

            def recording(ctx: bytes) -> None:
                seen.append(ctx)
                real(ctx)

            member.repl.node.core.read_index = recording  # type: ignore[method-assign]

        async with cluster_of(tmp_path, 3, FAST) as members:
            await until(lambda: all(m.repl.leader_id != 0 for m in members))
            for m in members:
                record_contexts(m)
            await asyncio.gather(*(m.repl.read_index() for m in members))
            restarted = next(m for m in members if m.id != m.repl.leader_id)
            await restarted.stop()
            await restarted.start()
            record_contexts(restarted)
            await until(lambda: restarted.repl.leader_id != 0)
            await restarted.repl.read_index()
        assert len(seen) >= 4 and len(set(seen)) == len(seen)

    asyncio.run(scenario())


class ReadRounds:
    """Records the ReadIndex rounds a member issues, and holds the answers of one message type."""

    def __init__(self, member: Member, answer_type: int) -> None:
        node, self.repl = member.repl.node, member.repl
        self.issued: set[bytes] = set()
        self.held: list[pb.Message] = []
        # What the transport hands over arrives through Replication.step (PeerEvents).
        real_read_index, self.deliver = node.core.read_index, self.repl.step

        def recording(ctx: bytes) -> None:
            self.issued.add(ctx)
            real_read_index(ctx)

        def holding(m: pb.Message) -> None:
            if m.type == answer_type:
                self.held.append(m)
            else:
                self.deliver(m)

        node.core.read_index = recording  # type: ignore[method-assign]
        self.repl.step = holding  # type: ignore[method-assign]

    def release(self) -> None:
        self.repl.step = self.deliver  # type: ignore[method-assign]
        for m in self.held:
            self.deliver(m)


def test_reads_arriving_while_a_round_is_in_flight_share_the_next_round(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster_of(tmp_path, 3, FAST) as members:
            await until(lambda: all(m.repl.leader_id != 0 for m in members))
            leader = leader_of(members)
            rounds = ReadRounds(leader, pb.MsgHeartbeatResp)  # the followers' answers to read heartbeats
            first = asyncio.create_task(leader.repl.read_index())
            await until(lambda: len(rounds.issued) == 1)
            later = [asyncio.create_task(leader.repl.read_index()) for _ in range(10)]
            await asyncio.sleep(0.02)  # several turns of the Ready loop
            later += [asyncio.create_task(leader.repl.read_index()) for _ in range(10)]
            await asyncio.sleep(0.02)
            assert len(rounds.issued) == 1 and not first.done()
            rounds.release()
            indexes = await asyncio.gather(first, *later)
            assert len(rounds.issued) == 2  # the twenty later readers shared one round
            assert len(set(indexes[1:])) == 1

    asyncio.run(scenario())


def test_a_round_for_queued_readers_is_spaced_from_the_last_but_a_lone_reader_never_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spacing = 0.5  # far above a round trip here, so the two cases cannot be confused
    monkeypatch.setattr(raftnode, "LEADER_READ_SPACING", spacing)

    async def scenario() -> None:
        async with cluster_of(tmp_path, 3, FAST) as members:
            await until(lambda: all(m.repl.leader_id != 0 for m in members))
            leader = leader_of(members)
            loop = asyncio.get_running_loop()
            issued: list[float] = []
            real = leader.repl.node.core.read_index

            def recording(ctx: bytes) -> None:
                issued.append(loop.time())
                real(ctx)

            leader.repl.node.core.read_index = recording  # type: ignore[method-assign]
            await leader.repl.read_index()
            await leader.repl.read_index()  # no round in flight: issued at once
            assert len(issued) == 2 and issued[1] - issued[0] < spacing / 2
            rounds = ReadRounds(leader, pb.MsgHeartbeatResp)
            first = asyncio.create_task(leader.repl.read_index())
            await until(lambda: len(issued) == 3)
            queued = asyncio.create_task(leader.repl.read_index())  # behind the round in flight
            await asyncio.sleep(0.02)
            rounds.release()
            await asyncio.wait_for(asyncio.gather(first, queued), 5)
            assert len(issued) == 4 and issued[3] - issued[2] >= spacing

    asyncio.run(scenario())


def test_a_follower_keeps_several_read_rounds_in_flight_to_the_leader(tmp_path: Path) -> None:
    """The leader answers a follower's round at once: the follower need not wait for one to issue the next."""

    async def scenario() -> None:
        async with cluster_of(tmp_path, 3, FAST) as members:
            await until(lambda: all(m.repl.leader_id != 0 for m in members))
            follower = next(m for m in members if m.id != m.repl.leader_id)
            rounds = ReadRounds(follower, pb.MsgReadIndexResp)  # the leader's answers
            readers = []
            for _ in range(MAX_FORWARDED_READS + 3):
                readers += [asyncio.create_task(follower.repl.read_index()) for _ in range(3)]
                await asyncio.sleep(0.01)  # a turn of the Ready loop at least
            assert len(rounds.issued) == MAX_FORWARDED_READS  # in flight at once; the rest wait
            assert not any(r.done() for r in readers)
            rounds.release()
            indexes = await asyncio.wait_for(asyncio.gather(*readers), 5)
            assert min(indexes) >= 1
            assert len(rounds.issued) < len(readers)  # later readers shared rounds

    asyncio.run(scenario())


def test_proposals_forwarded_to_the_leader_join_its_next_batch(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster_of(tmp_path, 3, FAST) as members:
            await until(lambda: all(m.repl.leader_id != 0 for m in members))
            leader = leader_of(members)
            raw = leader.repl.node.core.raw
            stepped: list[int] = []
            batches: list[int] = []
            real_step, real_propose_many = raw.step, raw.propose_many

            def recording_step(m: pb.Message) -> None:
                stepped.append(m.type)
                real_step(m)

            def recording_propose_many(datas: list[bytes]) -> None:
                batches.append(len(datas))
                real_propose_many(datas)

            raw.step = recording_step  # type: ignore[method-assign]
            raw.propose_many = recording_propose_many  # type: ignore[method-assign]
            followers = [m for m in members if m is not leader]
            for i in range(40):
                followers[i % 2].repl.propose(put(b"f%d" % i, b"v", i + 1))
            await until(lambda: all(m.value(b"f39") == b"v" and m.value(b"f38") == b"v" for m in members))
            assert pb.MsgProp not in stepped  # none stepped one by one: each joined a batch
            assert sum(batches) == 40

    asyncio.run(scenario())


def test_an_idle_member_answers_a_heartbeat_as_soon_as_it_is_stepped(tmp_path: Path) -> None:
    # No loop turn between a read's heartbeat and its answer: that turn would be part of the read's latency.
    async def scenario() -> None:
        async with cluster_of(tmp_path, 3, FAST) as members:
            await until(lambda: all(m.repl.leader_id != 0 for m in members))
            leader = leader_of(members)
            node = next(m for m in members if m is not leader).repl.node
            sent: list[pb.Message] = []
            real_send = node.send

            def recording(messages: Iterable[pb.Message]) -> None:
                batch = list(messages)
                sent.extend(batch)
                real_send(batch)

            node.send = recording
            await until(lambda: node._idle)
            heartbeat = pb.Message(type=pb.MsgHeartbeat, to=node.id, term=node.term, context=b"read-ctx")
            setattr(heartbeat, "from", leader.id)  # `from` is a Python keyword
            node.step(heartbeat)
            assert [m.context for m in sent if m.type == pb.MsgHeartbeatResp] == [b"read-ctx"]

    asyncio.run(scenario())


def test_a_later_copy_of_a_received_snapshot_supersedes_the_earlier_file(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster_of(tmp_path, 1, FAST) as (member,):
            await until(lambda: member.repl.leader_id == member.id)
            directory = snapshot.spool_dir(member.data_dir)
            copies = []
            for state in (b"first copy", b"second copy"):
                spool = snapshot.Spool(directory, 1000)
                spool.write(state)
                copies.append(spool.finish())
                # From an old term: raft ignores the message itself; what is kept of the file is the point.
                message = pb.Message(type=pb.MsgSnap, term=1, to=member.id, **{"from": 99})
                message.snapshot.metadata.index = 1000
                await member.repl.snapshot_received(message, copies[-1])
            first, second = copies
            assert not first.path.exists(), "the superseded copy is left on disk"
            assert second.path.read_bytes() == b"second copy"

    asyncio.run(scenario())


def test_a_member_whose_loop_stopped_says_so_for_an_election_timeout(tmp_path: Path) -> None:
    settings = RaftSettings(tick_seconds=0.05, election_tick=20, heartbeat_tick=1)  # a 1 s election timeout
    tick = settings.tick_seconds

    async def scenario() -> None:
        async with cluster_of(tmp_path, 1, settings) as members:
            (m,) = members
            await until(lambda: m.repl.leader_id == m.id)
            await until(lambda: not m.repl.stalled_lately())  # ticking on time
            time.sleep(5 * tick)  # the loop stops, as under SIGSTOP or a stuck write
            blocked_until = time.monotonic()
            assert m.repl.stalled_lately(), "ticks missing now"
            await asyncio.sleep(2 * tick)
            assert m.repl.stalled_lately(), "ticking again, but within an election timeout of the stall"
            await until(lambda: not m.repl.stalled_lately())
            # The window runs from the first (late) tick after the block, so never ends sooner than this.
            assert time.monotonic() - blocked_until >= settings.election_tick * tick

    asyncio.run(scenario())
