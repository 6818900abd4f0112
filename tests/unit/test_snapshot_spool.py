"""Receiving a raft snapshot into a file and installing it in bounded, crash-safe batches (real LevelDB)."""

from __future__ import annotations

import asyncio
import os
import random
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from lease_support import Member as LeaseMember

from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.api.raftpb import peer_pb2
from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.server.apply import Applier
from etcdpy.server.consensus import snapshots
from etcdpy.server.consensus.membership import Cluster, MembershipApplier, cluster_id
from etcdpy.server.consensus.node import RaftSettings
from etcdpy.server.consensus.replication import Replication, bootstrap_new_cluster
from etcdpy.server.consensus.transport import PeerService, PeerTransport
from etcdpy.server.storage import schema, snapshot
from etcdpy.server.storage.backend import Backend, BackendCorruptError
from etcdpy.server.storage.raftlog import RaftLogStorage, entry_key

CLUSTER_ID = 0xC1
META = pb.SnapshotMetadata(index=100, term=3, conf_state=pb.ConfState(voters=[1, 2, 3]))
APPLIED_KEY = schema.META + schema.META_APPLIED_INDEX
MEMBER_KEY = schema.META + schema.META_MEMBER_ID


def fill(backend: Backend, seed: int, applied: int) -> None:
    """A state over every state keyspace, some keys shared between seeds with other values."""
    rng = random.Random(seed)
    with backend.batch(sync=False) as wb:
        for prefix in (schema.HISTORY, schema.KEY_INDEX, schema.CURRENT, schema.LIVE_KEYS, schema.LEASES):
            for i in rng.sample(range(60), 40):
                wb.put(prefix + b"%03d" % i, rng.randbytes(rng.randrange(0, 300)))
        wb.put(schema.MEMBERS + b"\x00" * 7 + bytes([seed]), b"member %d" % seed)
        wb.put(schema.META + b"cluster_version", b"3.4.0")
        wb.put(APPLIED_KEY, applied.to_bytes(8, "big"))


def state(backend: Backend) -> dict[bytes, bytes]:
    return {
        key: value
        for key, value in backend.db.iterator()
        if not key.startswith((schema.WAL, schema.RAFT_STATE)) and key not in snapshot._LOCAL_KEYS
    }


def spool(directory: Path, source: Backend, index: int) -> snapshot.SpooledSnapshot:
    out = snapshot.Spool(directory, index)
    for chunk in snapshot.open_state(source, chunk_bytes=512)[1]:
        out.write(chunk)
    return out.finish()


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Backend]:
    backend = Backend(tmp_path / "source")
    fill(backend, seed=1, applied=META.index)
    yield backend
    backend.close()


def old_member(data_dir: Path) -> Backend:
    """A member with its own state (applied 5), a raft log 1..5 and its member ID."""
    backend = Backend(data_dir)
    fill(backend, seed=2, applied=5)
    backend.db.put(MEMBER_KEY, (7).to_bytes(8, "big"))
    raftlog = RaftLogStorage.open(backend)
    entries = tuple(pb.Entry(index=i, term=1, data=b"e%d" % i) for i in range(1, 6))
    raftlog.write(raftlog.prepare(entries=entries, hard_state=pb.HardState(term=2, vote=3, commit=5)))
    return backend


class CountingDB:
    """The real DB, but its write batches record how many bytes each wrote (and may crash instead)."""

    def __init__(self, db: Any, sizes: list[int], crash_at: int | None = None) -> None:
        self._db = db
        self._sizes = sizes
        self._crash_at = crash_at  # the batch write that raises Crash instead of writing

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def write_batch(self, **kwargs: Any) -> Any:
        return CountingBatch(self._db.write_batch(**kwargs), self._sizes, self._crash_at)


class CountingBatch:
    def __init__(self, batch: Any, sizes: list[int], crash_at: int | None) -> None:
        self._batch = batch
        self._sizes = sizes
        self._crash_at = crash_at
        self._bytes = 0

    def put(self, key: bytes, value: bytes) -> None:
        self._bytes += len(key) + len(value)
        self._batch.put(key, value)

    def delete(self, key: bytes) -> None:
        self._bytes += len(key)
        self._batch.delete(key)

    def write(self) -> None:
        if self._crash_at is not None and len(self._sizes) + 1 >= self._crash_at:
            raise Crash()
        self._sizes.append(self._bytes)
        self._batch.write()

    def clear(self) -> None:
        self._bytes = 0
        self._batch.clear()


def test_a_spooled_install_gives_exactly_the_source_state_in_bounded_batches(
    tmp_path: Path, source: Backend
) -> None:
    target = old_member(tmp_path / "target")
    spooled = spool(snapshot.spool_dir(target.data_dir), source, META.index)
    sizes: list[int] = []
    real_db = target.db
    target.db = CountingDB(real_db, sizes)
    written = snapshot.install_file(target, spooled, META, batch_bytes=1000)
    target.db = real_db
    assert state(target) == state(source)
    assert len(state(source)) > 100
    assert written == len(sizes) > 10, "the install was not cut into batches"
    largest_op = 300 + 8
    assert max(sizes) <= 1000 + largest_op, f"a batch wrote {max(sizes)} bytes"
    # What is the member's own stays: its ID, its log (dropped later by the caller's batch), the marker.
    assert target.get(MEMBER_KEY) == (7).to_bytes(8, "big")
    assert target.get(entry_key(5)) is not None
    marker = snapshot.read_marker(target)
    assert marker is not None and marker.meta == META and marker.name == spooled.path.name
    assert marker.crc == zlib.crc32(spooled.path.read_bytes())
    target.close()


def test_an_install_writes_only_what_differs(tmp_path: Path, source: Backend) -> None:
    target = Backend(tmp_path / "target")
    fill(target, seed=1, applied=META.index)
    target.db.put(schema.HISTORY + b"only-here", b"x")
    spooled = spool(snapshot.spool_dir(target.data_dir), source, META.index)
    sizes: list[int] = []
    real_db = target.db
    target.db = CountingDB(real_db, sizes)
    snapshot.install_file(target, spooled, META)
    target.db = real_db
    assert state(target) == state(source)
    assert sizes == [len(schema.HISTORY + b"only-here")], "records already there were written again"
    target.close()


class Crash(Exception):
    pass


@pytest.mark.parametrize("crash_at", [None, 1, 2, 3, 6, 20, 10_000])
def test_a_crash_anywhere_in_an_install_ends_with_the_new_state_or_the_old_never_a_mix(
    tmp_path: Path, source: Backend, crash_at: int | None
) -> None:
    """crash_at: None crashes before the marker; k at the k-th state batch's write; 10_000 after the last."""
    data_dir = tmp_path / "target"
    target = old_member(data_dir)
    old_state = state(target)
    spooled = spool(snapshot.spool_dir(data_dir), source, META.index)
    raftlog = RaftLogStorage.open(target)
    # What raft's Ready writes after the install: the snapshot point, log and a newer hard state.
    raftlog.prepare(snapshot=META, hard_state=pb.HardState(term=4, vote=2, commit=META.index))
    if crash_at is not None:
        sizes: list[int] = []
        real_db = target.db
        target.db = CountingDB(real_db, sizes, crash_at=crash_at)
        try:
            snapshot.install_file(target, spooled, META, batch_bytes=1000)
        except Crash:
            assert len(sizes) == crash_at - 1
        else:
            assert crash_at > len(sizes) > 10
        target.db = real_db
    target.close()  # the process is gone: the caller's final batch was never written

    reopened = Backend(data_dir)
    if crash_at is not None and 2 <= crash_at <= 6:
        mixed = state(reopened)
        assert mixed not in (old_state, state(source)), "the crash left no mix to finish: a weak test"
    relog = RaftLogStorage.open(reopened)
    assert snapshot.finish_interrupted_install(reopened, relog) == (None if crash_at is None else META)
    if crash_at is None:
        assert state(reopened) == old_state
        assert relog.snapshot_meta.index == 0 and relog.last_index() == 5
    else:
        assert state(reopened) == state(source)
        for log_view in (relog, RaftLogStorage.open(reopened)):  # the view, and what is on disk
            assert log_view.snapshot_meta == META
            assert log_view.first_index() == META.index + 1 and log_view.last_index() == META.index
            assert log_view.hard_state == pb.HardState(term=3, vote=0, commit=META.index)
        assert reopened.get(entry_key(5)) is None
    assert snapshot.read_marker(reopened) is None
    assert reopened.get(MEMBER_KEY) == (7).to_bytes(8, "big")
    assert not list(snapshot.spool_dir(data_dir).iterdir()), "the spooled file outlived the install"
    # A second start finds nothing to do.
    assert snapshot.finish_interrupted_install(reopened, RaftLogStorage.open(reopened)) is None
    reopened.close()


def test_the_callers_batch_completes_an_install_and_a_restart_then_has_nothing_to_do(
    tmp_path: Path, source: Backend
) -> None:
    data_dir = tmp_path / "target"
    target = old_member(data_dir)
    spooled = spool(snapshot.spool_dir(data_dir), source, META.index)
    raftlog = RaftLogStorage.open(target)
    hard_state = pb.HardState(term=4, vote=2, commit=META.index)
    prepared = raftlog.prepare(snapshot=META, hard_state=hard_state)
    snapshot.install_file(target, spooled, META, batch_bytes=1000)
    prepared.batch.delete(snapshot.MARKER_KEY)  # as ReceivedSnapshots.install does
    raftlog.write(prepared)
    target.close()
    reopened = Backend(data_dir)
    relog = RaftLogStorage.open(reopened)
    assert snapshot.finish_interrupted_install(reopened, relog) is None
    assert state(reopened) == state(source)
    assert relog.snapshot_meta == META and relog.hard_state == hard_state
    assert not spooled.path.exists(), "a start leaves no received file behind"
    reopened.close()


def test_an_interrupted_install_whose_file_is_damaged_refuses_to_start(
    tmp_path: Path, source: Backend
) -> None:
    data_dir = tmp_path / "target"
    target = old_member(data_dir)
    spooled = spool(snapshot.spool_dir(data_dir), source, META.index)
    snapshot.install_file(target, spooled, META, batch_bytes=1000)
    with spooled.path.open("r+b") as f:
        f.seek(10)
        byte = f.read(1)
        f.seek(10)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(BackendCorruptError, match="interrupted"):
        snapshot.finish_interrupted_install(target, RaftLogStorage.open(target))
    assert snapshot.read_marker(target) is not None, "the marker must stay while the state is a mix"
    target.close()


def test_a_start_removes_leftover_incoming_and_received_files(tmp_path: Path) -> None:
    backend = Backend(tmp_path / "member")
    directory = snapshot.spool_dir(backend.data_dir)
    directory.mkdir(parents=True)
    leftovers = [directory / "0000000000000064.1a2b3c4d.incoming", directory / "0000000000000032.snap"]
    for path in leftovers:
        path.write_bytes(b"partial")
    unrelated = directory / "notes.txt"
    unrelated.write_text("not ours")
    assert snapshot.finish_interrupted_install(backend, RaftLogStorage.open(backend)) is None
    assert not any(path.exists() for path in leftovers)
    assert unrelated.exists()
    backend.close()


# ---- the receiving side: PeerService.Snapshot spools to a file ----


class Aborted(Exception):
    pass


class FakeContext:
    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        raise Aborted(details)


class SnapshotsKept:
    """PeerEvents that keep every snapshot handed on and ignore the rest."""

    def __init__(self, received: list[tuple[pb.Message, snapshot.SpooledSnapshot]]) -> None:
        self.received = received

    def step(self, message: pb.Message) -> None:
        pass

    async def snapshot_received(self, message: pb.Message, spooled: snapshot.SpooledSnapshot) -> None:
        self.received.append((message, spooled))

    def snapshot_to_send(self, message: pb.Message) -> None:
        return None

    def report_unreachable(self, peer_id: int) -> None:
        pass

    def report_snapshot(self, peer_id: int, ok: bool) -> None:
        pass

    def removed_by_peers(self) -> None:
        pass


def receiver(directory: Path, received: list[tuple[pb.Message, snapshot.SpooledSnapshot]]) -> PeerService:
    transport = PeerTransport(
        local_id=2, cluster_id=CLUSTER_ID, events=SnapshotsKept(received), snapshot_dir=directory
    )
    return PeerService(transport)


def stream(pieces: list[bytes], *, crc: int | None, end: bool = True) -> list[peer_pb2.SnapshotChunk]:
    message = pb.Message(type=pb.MsgSnap, to=2, snapshot=pb.Snapshot(metadata=META))
    chunks = [peer_pb2.SnapshotChunk(cluster_id=CLUSTER_ID, message=message)]
    chunks += [peer_pb2.SnapshotChunk(cluster_id=CLUSTER_ID, data=piece) for piece in pieces]
    if end:
        total = 0
        for piece in pieces:
            total = zlib.crc32(piece, total)
        chunks.append(
            peer_pb2.SnapshotChunk(cluster_id=CLUSTER_ID, last=True, crc32=total if crc is None else crc)
        )
    return chunks


async def feed(chunks: list[peer_pb2.SnapshotChunk], fail_after: int | None = None) -> AsyncIterator[Any]:
    for i, chunk in enumerate(chunks):
        if fail_after is not None and i == fail_after:
            raise ConnectionResetError("the sender went away")
        yield chunk


PIECES = [os.urandom(1000) for _ in range(5)]


def test_a_received_snapshot_is_spooled_to_a_checked_durable_file(tmp_path: Path) -> None:
    received: list[tuple[pb.Message, snapshot.SpooledSnapshot]] = []
    service = receiver(tmp_path / "snap", received)
    asyncio.run(service.Snapshot(feed(stream(PIECES, crc=None)), FakeContext()))
    ((message, spooled),) = received
    assert message.snapshot.metadata == META
    assert spooled.path.parent == tmp_path / "snap"
    assert spooled.path.name.startswith(f"{META.index:016x}.") and spooled.path.suffix == ".snap"
    assert spooled.path.read_bytes() == b"".join(PIECES)
    assert spooled.crc == zlib.crc32(b"".join(PIECES)) and spooled.size == 5000
    assert sorted(p.name for p in (tmp_path / "snap").iterdir()) == [spooled.path.name]


@pytest.mark.parametrize("case", ["checksum mismatch", "ended early", "sender failed"])
def test_a_failed_snapshot_stream_leaves_no_file(tmp_path: Path, case: str) -> None:
    received: list[tuple[pb.Message, snapshot.SpooledSnapshot]] = []
    service = receiver(tmp_path / "snap", received)
    context = FakeContext()
    if case == "checksum mismatch":
        call = service.Snapshot(feed(stream(PIECES, crc=12345)), context)
    elif case == "ended early":
        call = service.Snapshot(feed(stream(PIECES, crc=None, end=False)), context)
    else:
        call = service.Snapshot(feed(stream(PIECES, crc=None), fail_after=3), context)
    with pytest.raises((Aborted, ConnectionResetError)):
        asyncio.run(call)
    if case != "sender failed":
        assert context.code is grpc.StatusCode.DATA_LOSS
    assert received == []
    directory = tmp_path / "snap"
    assert directory.is_dir(), "the stream never reached its file"
    assert list(directory.iterdir()) == []


def test_a_crash_while_a_start_finishes_an_install_is_finished_by_the_next_start(
    tmp_path: Path, source: Backend
) -> None:
    data_dir = tmp_path / "target"
    target = old_member(data_dir)
    spooled = spool(snapshot.spool_dir(data_dir), source, META.index)
    with pytest.raises(Crash):
        real_db = target.db
        target.db = CountingDB(real_db, [], crash_at=3)
        snapshot.install_file(target, spooled, META, batch_bytes=1000)
    target.db = real_db
    target.close()
    for crash_at in (1, 2):  # starts that crash at the state batch, then at the final one
        reopened = Backend(data_dir)
        real_db = reopened.db
        reopened.db = CountingDB(real_db, [], crash_at=crash_at)
        with pytest.raises(Crash):
            snapshot.finish_interrupted_install(reopened, RaftLogStorage.open(reopened))
        reopened.db = real_db
        assert snapshot.read_marker(reopened) is not None and spooled.path.exists()
        reopened.close()
    reopened = Backend(data_dir)
    assert snapshot.finish_interrupted_install(reopened, RaftLogStorage.open(reopened)) == META
    assert state(reopened) == state(source)
    assert RaftLogStorage.open(reopened).snapshot_meta == META
    assert snapshot.read_marker(reopened) is None and not spooled.path.exists()
    reopened.close()


def test_a_file_damaged_before_its_install_is_refused_with_the_old_state_whole(
    tmp_path: Path, source: Backend
) -> None:
    target = old_member(tmp_path / "target")
    old_state = state(target)
    spooled = spool(snapshot.spool_dir(target.data_dir), source, META.index)
    with spooled.path.open("r+b") as f:
        f.truncate(spooled.size - 1)
    with pytest.raises(ValueError, match="checksum"):
        snapshot.install_file(target, spooled, META)
    assert state(target) == old_state and snapshot.read_marker(target) is None
    target.close()


def test_replication_deletes_a_received_file_once_installed_superseded_or_refused(tmp_path: Path) -> None:
    """Replication's bookkeeping: a refused snapshot's file goes at once, the rest once one is installed."""
    members = {1: rpc_pb2.Member(ID=1, peerURLs=["http://127.0.0.1:9"])}
    cluster = Cluster(cluster_id(members), 1, members)
    source = Backend(tmp_path / "source")
    fill(source, seed=1, applied=META.index)
    source.db.delete(schema.MEMBERS + b"\x00" * 7 + b"\x01")
    with source.batch(sync=False) as wb:
        cluster.write(wb)
    target = Backend(tmp_path / "target")
    raftlog = RaftLogStorage.open(target)
    bootstrap_new_cluster(raftlog, cluster)
    target.db.put(APPLIED_KEY, (50).to_bytes(8, "big"))
    directory = snapshot.spool_dir(target.data_dir)

    def msg_snap(index: int) -> pb.Message:
        return pb.Message(type=pb.MsgSnap, snapshot=pb.Snapshot(metadata=pb.SnapshotMetadata(index=index)))

    async def scenario() -> None:
        applier = Applier(target)
        repl = Replication(
            backend=target,
            applier=applier,
            cluster=cluster,
            raftlog=raftlog,
            settings=RaftSettings(tick_seconds=0.1, election_tick=10),
            membership=MembershipApplier(target, cluster),
            apply_entries=lambda entries: None,
        )
        stepped: list[int] = []

        def step(message: pb.Message) -> None:
            stepped.append(message.snapshot.metadata.index)

        repl.node.step = step  # type: ignore[method-assign]
        refused = spool(directory, source, 40)  # at or below the applied index: raft refuses it
        await repl.snapshot_received(msg_snap(40), refused)
        assert not refused.path.exists()
        older, newer = spool(directory, source, 90), spool(directory, source, META.index)
        await repl.snapshot_received(msg_snap(90), older)
        await repl.snapshot_received(msg_snap(META.index), newer)
        assert stepped == [40, 90, META.index]
        assert older.path.exists() and newer.path.exists(), "files raft may still install were deleted"
        prepared = raftlog.prepare(snapshot=META, hard_state=pb.HardState(term=3, commit=META.index))
        installed = pb.Snapshot(metadata=META)
        repl.install_state(installed, prepared)  # as ReadyHandler.write, on the raft log's worker thread
        raftlog.write(prepared)
        repl.state_installed(installed)
        try:
            assert list(directory.iterdir()) == []
            assert applier.applied_index == META.index and state(target) == state(source)
            assert snapshot.read_marker(target) is None
        finally:
            await repl.transport.stop()

    asyncio.run(scenario())
    source.close()
    target.close()


@dataclass
class Delivered:
    delivered_index: int
    conf_state: pb.ConfState


def test_an_outgoing_snapshot_is_labelled_with_the_state_sent_and_held_back_while_replaying() -> None:
    """The state sent is the store's now, newer than raft's snapshot point: the MsgSnap says which it is."""
    conf_state = pb.ConfState(voters=[1, 2], learners=[3])
    message = pb.Message(type=pb.MsgSnap, to=2, term=7, snapshot=pb.Snapshot(metadata=META))
    terms = {120: 6, 100: 3}
    relabelled = snapshots.relabel_snapshot(message, 120, Delivered(120, conf_state), terms.__getitem__)
    assert relabelled is not None
    assert relabelled.snapshot.metadata == pb.SnapshotMetadata(index=120, term=6, conf_state=conf_state)
    assert (relabelled.to, relabelled.term) == (2, 7)
    assert message.snapshot.metadata == META, "the raft message itself is left as raft made it"
    # Replaying after a restart: the store applied past what raft delivered, whose configuration is older.
    assert snapshots.relabel_snapshot(message, 130, Delivered(120, conf_state), terms.__getitem__) is None
    # A state older than the snapshot point is never sent in its name.
    assert snapshots.relabel_snapshot(message, 90, Delivered(90, conf_state), terms.__getitem__) is None


def test_reads_see_the_old_state_whole_while_an_install_replaces_it(tmp_path: Path) -> None:
    """An install spans many batches; the member's reads (pinned) never see a mix of old and new."""
    source, target = LeaseMember(tmp_path / "source"), LeaseMember(tmp_path / "target")
    try:
        for i in range(30):
            source.put(b"k%02d" % i, b"new-%d" % i)
            target.put(b"k%02d" % i, b"old-%d" % i)
        spooled = spool(snapshot.spool_dir(target.backend.data_dir), source.backend, META.index)
        store = target.applier.store

        def values() -> list[bytes]:
            with store.read() as reader:
                return [kv.value for kv in reader.range(b"k", b"l", reader.rev)]

        seen: list[list[bytes]] = []
        store.pin()
        written = snapshot.install_file(
            target.backend, spooled, META, batch_bytes=200, after_batch=lambda n: seen.append(values())
        )
        assert written > 3 and len(seen) == written
        assert all(v == [b"old-%d" % i for i in range(30)] for v in seen)
        target.applier.reload()  # as Replication does once the install is written
        assert values() == [b"new-%d" % i for i in range(30)]
    finally:
        source.close()
        target.close()


def test_a_second_stream_of_the_same_index_never_replaces_the_first_file(tmp_path: Path) -> None:
    # The first may be under install, its marker naming it with its checksum: replacing it would make
    # a crash mid-install look like a damaged file at the next start.
    first, second = snapshot.Spool(tmp_path, META.index), snapshot.Spool(tmp_path, META.index)
    first.write(b"old state")
    second.write(b"the same index, other bytes")
    one, two = first.finish(), second.finish()
    assert one.path != two.path
    assert one.path.read_bytes() == b"old state" and snapshot.file_crc(one.path) == one.crc
    assert two.path.read_bytes() == b"the same index, other bytes"
