"""The real server's apply and snapshot path as a simulated node's application.

Each node gets its own LevelDB (`JournaledBackend`, in the run's temp dir) and
the server's `Applier` over it.  Client commands become etcd's
InternalRaftRequests as the server proposes them (put, delete_range, txn with a
compare for compare-and-set, range through the log) with the request id in
``header.ID``; ReadIndex reads are served by ``Applier.range`` or
``Applier.read_only_txn`` as `EtcdServer` serves them.  Conf change entries reach
the applier as empty entries, as `EtcdServer._apply_committed` passes them.

Snapshots go through the server's own code (`etcdpy/server/consensus/snapshots.py`,
which `Replication` uses too); this module fakes only the transport's stream and the
node's disk.  A snapshot point carries no data; a MsgSnap going out gets the
sender's current state and is relabelled with that state's index, term and
configuration by `snapshots.snapshot_to_send` (not sent while the node replays
after a restart).  The receiver spools the state to a file in its own spool dir
(`snapshot.Spool`, ``<node dir>/member/snap``), as the transport does, and hands
it to its `snapshots.ReceivedSnapshots`, which keeps it by index (a state at or
below the applied index is deleted at once, an earlier copy of the same index
superseded).  When raft hands the snapshot out in a Ready, `claim` calls
`ReceivedSnapshots.install` before the Ready's write, as `Replication.install_state`
does: `snapshot.install_file` sets the synced marker and replaces what differs in
batches of INSTALL_BATCH_BYTES (a whole state takes several), not synced, and the
marker's deletion goes into a synced LevelDB batch that stands for the Ready's
durable write (`sync` writes it with the node's fsync: the node's disk records the
snapshot point).  `install` then calls `ReceivedSnapshots.installed`, as
`Replication.state_installed` does: the installed and superseded files are
deleted and the applier reloads.

A crash loses a suffix of the unsynced writes (apply batches and install
batches alike: `journal.py`).  While a run's faults are on, power may also fail
right after any install batch (`RunPlan.install_power_loss`; the draw is from
the node's own random source).  The restart does what the server's `open_member`
does before the applier loads: `snapshot.finish_interrupted_install` finishes an
install left with its marker from the file (`DiskLog` records the snapshot
point and hard state on the node's fake disk) or refuses a damaged one; then
the check of a store applied past the raft log's end (`RestartRefused` either
way), and the applied index stored with the data decides what raft's replay
re-applies.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.checker import KvOp, KvOutput
from etcdpy.raft import ErrSnapOutOfDate
from etcdpy.server.apply import Applier
from etcdpy.server.consensus import snapshots
from etcdpy.server.storage import snapshot
from etcdpy.server.storage.backend import Backend, BackendCorruptError
from etcdpy.server.storage.raftlog import PreparedWrite, RaftLogStorage

from .application import Applied
from .disk import FakeDisk
from .journal import JournaledBackend, PowerLoss
from .statemachine import Command

SNAPSHOT_CHUNK_BYTES = 256  # small, so a snapshot of a few dozen keys spans several chunks
INSTALL_BATCH_BYTES = 512  # small, so installing such a snapshot takes several batches a crash can split
COMPACTION_STEP_RECORDS = 4  # physical compaction in small steps, interleaved with applies and crashes
HISTORY_DIGESTS = 25  # revisions whose HashKV the end-of-run check compares between members


class RestartRefused(AssertionError):
    """RestartRefused: the real server would refuse to start on this node's data (see `restart`)."""


class UnexpectedResponse(AssertionError):
    """UnexpectedResponse: the applier answered a client request with an error or another response kind."""


def encode_request(command: Command) -> raft_internal_pb2.InternalRaftRequest:
    """Encode_request is the InternalRaftRequest the server proposes for a client command."""
    request = command.request
    key = str(request.key).encode()
    internal = raft_internal_pb2.InternalRaftRequest()
    internal.header.ID = command.request_id
    if request.op is KvOp.GET:
        internal.range.CopyFrom(rpc_pb2.RangeRequest(key=key))
    elif request.op is KvOp.PUT:
        internal.put.CopyFrom(rpc_pb2.PutRequest(key=key, value=str(request.value).encode()))
    elif request.op is KvOp.DELETE:
        internal.delete_range.CopyFrom(rpc_pb2.DeleteRangeRequest(key=key))
    else:
        internal.txn.CopyFrom(compare_and_set(command))
    return internal


def compare_and_set(command: Command) -> rpc_pb2.TxnRequest:
    """Compare_and_set is the txn a client sends for a CAS: compare the key, put on success.

    "The key is absent" compares its create revision or its version with 0 (both
    idioms are common); the failure branch reads the key for half the requests.
    """
    request = command.request
    key = str(request.key).encode()
    compare = rpc_pb2.Compare
    if request.expected is None:
        if command.request_id % 2:
            cmp = compare(key=key, target=compare.CREATE, result=compare.EQUAL, create_revision=0)
        else:
            cmp = compare(key=key, target=compare.VERSION, result=compare.EQUAL, version=0)
    else:
        cmp = compare(
            key=key, target=compare.VALUE, result=compare.EQUAL, value=str(request.expected).encode()
        )
    put = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=str(request.value).encode()))
    failure = (
        [rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key))] if command.request_id % 2 else []
    )
    return rpc_pb2.TxnRequest(compare=[cmp], success=[put], failure=failure)


def _value(response: rpc_pb2.RangeResponse) -> str | None:
    return response.kvs[0].value.decode() if response.kvs else None


def decode_output(command: Command, response: object) -> KvOutput:
    """Decode_output is the register answer in a server response to `command`."""
    op = command.request.op
    if op is KvOp.GET and isinstance(response, rpc_pb2.RangeResponse):
        return KvOutput(_value(response))
    if op is KvOp.GET and isinstance(response, rpc_pb2.TxnResponse) and response.succeeded:
        return KvOutput(_value(response.responses[0].response_range))
    if op is KvOp.PUT and isinstance(response, rpc_pb2.PutResponse):
        return KvOutput()
    if op is KvOp.DELETE and isinstance(response, rpc_pb2.DeleteRangeResponse):
        return KvOutput()
    if op is KvOp.CAS and isinstance(response, rpc_pb2.TxnResponse):
        return KvOutput(ok=response.succeeded)
    raise UnexpectedResponse(f"request {command.request_id} {command.request} answered {response!r}")


def compaction_request(revision: int) -> bytes:
    """Compaction_request is the entry data of a compaction proposal (nobody waits for its answer)."""
    return raft_internal_pb2.InternalRaftRequest(
        compaction=rpc_pb2.CompactionRequest(revision=revision)
    ).SerializeToString()


class DiskLog(RaftLogStorage):
    """DiskLog is a node's fake disk as the `RaftLogStorage` given to `finish_interrupted_install`.

    Only the write side that function uses: `prepare` a snapshot point and hard state, and
    `write` them.  The fake disk's write and the LevelDB batch (the marker's deletion) are
    synced together, as the real raft log's one batch is (no crash falls inside a restart).
    """

    def __init__(self, backend: Backend, disk: FakeDisk) -> None:
        super().__init__(backend)
        self._disk = disk
        durable = disk.working  # at a start the page cache holds what was durable
        self.hard_state = pb.HardState()
        self.hard_state.CopyFrom(durable.hard_state)
        self.snapshot_meta = pb.SnapshotMetadata()
        self.snapshot_meta.CopyFrom(durable.snapshot().metadata)

    def prepare(
        self,
        *,
        entries: tuple[pb.Entry, ...] = (),
        hard_state: pb.HardState | None = None,
        snapshot: pb.SnapshotMetadata | None = None,
        compact_to: int = 0,
        sync: bool = True,
    ) -> PreparedWrite:
        if entries or compact_to:
            raise NotImplementedError("DiskLog writes a snapshot point and a hard state only")
        if snapshot is not None and snapshot.index <= self.snapshot_meta.index:
            raise ErrSnapOutOfDate()
        return PreparedWrite(self.backend.db.write_batch(sync=True), snapshot, (), hard_state, 0)

    def write(self, prepared: PreparedWrite) -> None:
        if prepared.snapshot is not None:
            self._disk.apply_snapshot(pb.Snapshot(metadata=prepared.snapshot))
        if prepared.hard_state is not None:
            self._disk.set_hard_state(prepared.hard_state)
        self._disk.sync()
        prepared.batch.write()
        self.apply_prepared(prepared)


class ServerApplication:
    """ServerApplication is a node's Applier on its own LevelDB, with the server's snapshot path."""

    def __init__(
        self,
        data_dir: Path,
        rng: random.Random,
        stats: Counter[str],
        install_power_loss: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self._dir = data_dir
        self._spool_dir = snapshot.spool_dir(data_dir)
        # What a power loss keeps, where an install loses power: not drawn from the run's fault schedule.
        self._rng = rng
        # Now, per install batch: the probability that power fails right after it (the run decides when).
        self._install_power_loss = install_power_loss
        self._stats = stats
        self._backend: JournaledBackend | None = None
        self._applier: Applier | None = None
        # The server's own keeper of received snapshot files, over this node's applier (while it runs).
        self.received_snapshots: snapshots.ReceivedSnapshots | None = None
        # The snapshot index being installed: its marker is set and its batches written, until installed.
        self._installing: int | None = None
        # The Ready's durable write as the server's raft log batch: the install deletes the marker there.
        self._marker_batch: Any | None = None
        self._compacting = False  # a scheduled compaction still has versions to delete
        self._commands: dict[int, Command] = {}  # request id -> command, for decoding answers

    @property
    def applier(self) -> Applier:
        """Applier is the open applier (the node runs)."""
        assert self._applier is not None, "the application is closed (crashed or stopped)"
        return self._applier

    @property
    def applied(self) -> int:
        return self.applier.applied_index

    def encode(self, command: Command) -> bytes:
        self._commands[command.request_id] = command
        return encode_request(command).SerializeToString()

    def apply(self, entries: list[pb.Entry]) -> list[Applied]:
        applier = self.applier
        before = applier.applied_index
        fresh = [e for e in entries if e.index > before]
        if not fresh:
            return []
        compacted = applier.compact_revision
        results = iter(
            applier.apply([(e.index, e.data if e.type == pb.EntryNormal else b"") for e in entries])
        )
        digest = self.digest()
        done: list[Applied] = []
        for entry in fresh:
            request_id: int | None = None
            output: KvOutput | None = None
            if entry.type == pb.EntryNormal and entry.data:
                result = next(results)
                command = self._commands.get(result.request_id)
                if command is not None:  # a client's request (a compaction has no waiting client)
                    request_id, output = result.request_id, decode_output(command, result.response)
                    if command.request.op is KvOp.CAS:
                        self._stats["txns_succeeded" if output.ok else "txns_failed"] += 1
            done.append(Applied(entry, request_id, output, digest if entry is fresh[-1] else None))
        if applier.compact_revision != compacted:
            self._compacting = True
            self._stats["compactions_applied"] += 1
        return done

    def read(self, command: Command) -> KvOutput:
        key = str(command.request.key).encode()
        range_request = rpc_pb2.RangeRequest(key=key)
        response: object
        if command.request_id % 2:
            response = self.applier.range(range_request)
        else:
            txn = rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_range=range_request)])
            response = self.applier.read_only_txn(txn)
        return decode_output(command, response)

    def digest(self) -> Hashable:
        applier = self.applier
        hash_kv, compact_revision, revision = applier.hash_kv(0)
        return (revision, compact_revision, hash_kv)

    def history_digests(self) -> dict[int, Hashable]:
        """HashKV at every revision since the last compaction (at most HISTORY_DIGESTS of them, spread)."""
        applier = self.applier
        first, last = max(applier.compact_revision + 1, 1), applier.current_revision
        stride = max(1, (last - first) // HISTORY_DIGESTS)
        revisions = {*range(last, first - 1, -stride), first}
        return {revision: applier.hash_kv(revision) for revision in sorted(revisions)}

    def snapshot_data(self) -> bytes:
        return b""  # a snapshot point only: the state is read when a MsgSnap goes out

    def sending(
        self, message: pb.Message, node: snapshots.Delivered, term: Callable[[int], int]
    ) -> pb.Message | None:
        """Sending attaches the sender's current state to a MsgSnap, relabelled as `Replication` does.

        The server's `snapshots.snapshot_to_send`, with the stream's chunks joined into the message.
        """
        if message.type != pb.MsgSnap:
            return message
        source = snapshots.snapshot_to_send(
            self.applier.backend, message, node, term, chunk_bytes=SNAPSHOT_CHUNK_BYTES
        )
        if source is None:
            return None  # replaying after a restart: raft hears the send failed
        sent, chunks = source
        sent.snapshot.data = b"".join(chunks)
        if sent.snapshot.metadata.index != message.snapshot.metadata.index:
            self._stats["snapshots_relabelled"] += 1
        return sent

    def receiving(self, message: pb.Message) -> pb.Message:
        """Receiving spools a MsgSnap's state to a file, as the transport does, and keeps it (`keep`)."""
        if message.type != pb.MsgSnap:
            return message
        received = self.received_snapshots
        assert received is not None, "a message reached a node that does not run"
        index = message.snapshot.metadata.index
        spool = snapshot.Spool(self._spool_dir, index)
        spool.write(message.snapshot.data)
        spooled = spool.finish()
        message.snapshot.data = b""
        if received.keep(index, spooled):
            self._stats["snapshots_spooled"] += 1
        return message

    def claim(self, raft_snapshot: pb.Snapshot) -> None:
        """Claim starts the install of a snapshot raft hands out, before the Ready's write (`install_state`).

        `ReceivedSnapshots.install`, as `Replication.install_state`: the synced marker, then the
        state replaced in batches of INSTALL_BATCH_BYTES; the marker's deletion goes into the
        Ready's durable write, which `sync` writes.
        """
        received = self.received_snapshots
        assert received is not None and self._installing is None
        meta = raft_snapshot.metadata
        self._installing = meta.index
        self._marker_batch = self.applier.backend.db.write_batch(sync=True)
        self._stats["install_batches"] += received.install(meta, self._marker_batch)

    def _after_install_batch(self, written: int) -> None:
        rate = self._install_power_loss()
        if rate and self._rng.random() < rate:
            self._stats["power_losses_in_install"] += 1
            raise PowerLoss(f"power fails after batch {written} of the snapshot install")

    def install(self, raft_snapshot: pb.Snapshot) -> None:
        index = raft_snapshot.metadata.index
        received = self.received_snapshots
        assert received is not None and self._installing == index, "install without claim"
        assert self._marker_batch is None, "installed before the Ready's write was durable"
        self._installing = None
        received.installed(index)  # as Replication.state_installed: files dropped, the applier reloaded
        applier = self.applier
        self._compacting = applier.compaction_pending
        if applier.applied_index != index:
            raise AssertionError(f"installed the state at applied index {applier.applied_index} as {index}")

    def step(self) -> None:
        if self._compacting and self._applier is not None and self._installing is None:
            self._compacting = not self._applier.compact_step(COMPACTION_STEP_RECORDS)
            self._stats["compaction_steps"] += 1

    def sync(self) -> None:
        backend = self._backend
        if backend is None:
            return
        if self._marker_batch is not None:
            # The Ready's durable write: with the snapshot point (on the node's disk), the marker goes.
            self._marker_batch.write()
            self._marker_batch = None
        else:
            backend.synced()

    def crash(self) -> None:
        backend = self._backend
        assert backend is not None
        if self._installing is not None:
            self._stats["installs_interrupted"] += 1
        keep = self._rng.randint(0, len(backend.unsynced))
        self._stats["apply_batches_lost"] += backend.lose_unsynced(keep)
        self.close()

    def restart(self, disk: FakeDisk) -> pb.SnapshotMetadata | None:
        """Restart opens the store as `open_member` does: an interrupted install is finished first."""
        self.close()
        backend = self._backend = JournaledBackend(self._dir)
        try:
            finished = snapshot.finish_interrupted_install(backend, DiskLog(backend, disk))
        except BackendCorruptError as error:
            raise RestartRefused(f"node {self._dir.name}: {error}") from error
        if finished is not None:
            self._stats["installs_finished_at_start"] += 1
        self._applier = Applier(backend)
        self.received_snapshots = snapshots.ReceivedSnapshots(
            self._applier, batch_bytes=INSTALL_BATCH_BYTES, after_batch=self._after_install_batch
        )
        raft_snapshot = disk.working.snapshot()
        if self._applier.applied_index > raft_snapshot.metadata.index:
            self._stats["restarts_replaying_from_stored_index"] += 1
        self._compacting = self._applier.compaction_pending
        applied = self._applier.applied_index
        if applied < raft_snapshot.metadata.index:
            raise AssertionError(
                f"the store reopened at applied index {applied}, below the snapshot "
                f"at {raft_snapshot.metadata.index} on the node's disk: the log cannot replay the gap"
            )
        log_end = max(disk.working.last_index(), raft_snapshot.metadata.index)
        if applied > log_end:
            # The check etcdpy/server/member.py (build) makes before it starts a member.
            raise RestartRefused(
                f"node {self._dir.name}: the store applied index {applied} but the raft log ends at "
                f"{log_end}: the server refuses to start on this data dir"
            )
        return finished

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
        self._backend = None
        self._applier = None
        self.received_snapshots = None  # the files stay: the next start deletes them, as the server's does
        self._installing = None
        self._marker_batch = None
