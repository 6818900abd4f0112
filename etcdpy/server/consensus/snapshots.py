"""A member's raft snapshots on their way in and out: received files kept until installed, and what is sent.

Receiving: the transport spools each MsgSnap's state to a file of its own
(`snapshot.Spool`) and hands it on; `ReceivedSnapshots` keeps the files by
snapshot index from then until an install makes them useless::

    keep(index, file)   on arrival, before raft steps the message: a state at or
                        below the applied index is deleted at once (raft refuses it;
                        while the install of `index` is in flight the applied index is
                        below it); an earlier copy of the same index, not yet claimed
                        by an install, is superseded and deleted
    install(meta, batch)
                        when raft hands the snapshot out in a Ready, just before the
                        Ready's write (on the raft log's worker thread): claim the file
                        kept for that index, pin the store's reads to the old state,
                        `snapshot.install_file` (synced marker, state in bounded
                        batches), and delete the marker in `batch`, the Ready's own
                        durable write
    installed(index)    once that write is durable: the applier reloads the new state
                        (which ends the pin); the installed file and every kept one at
                        or below its index are deleted

A file stays until an install at or past its index completed (a Ready in flight may
still install it) or the next start (`snapshot.finish_interrupted_install` deletes
what is left).

Sending: raft's snapshot point is older than the store (entries were applied
since), so `snapshot_to_send` streams the state as it is now and relabels the
MsgSnap with that state's index, term and configuration, as etcd does: a follower
then records the index of the state it installs.

The member's `Replication` and the simulator's server application (tests/sim)
both use these, so every simulated seed tests the code that ships.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Protocol

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.server.apply import Applier
from etcdpy.server.storage import snapshot
from etcdpy.server.storage.backend import Backend


class MarkerBatch(Protocol):
    """MarkerBatch is the Ready's durable write as an install sees it: the marker is deleted there."""

    def delete(self, key: bytes) -> None: ...


class ReceivedSnapshots:
    """ReceivedSnapshots keeps a member's received snapshot files by index until an install is done with them.

    The event loop keeps files as they arrive; the raft log's worker thread claims the one it
    installs; hence the lock.
    """

    def __init__(
        self,
        applier: Applier,
        *,
        batch_bytes: int = snapshot.INSTALL_BATCH_BYTES,
        after_batch: snapshot.AfterBatch | None = None,
    ) -> None:
        assert batch_bytes > 0, batch_bytes
        self._applier = applier
        self._batch_bytes = batch_bytes
        self._after_batch = after_batch  # tests inject power losses between install batches
        self._lock = threading.Lock()
        self._kept: dict[int, snapshot.SpooledSnapshot] = {}  # guarded by _lock
        self._claimed: tuple[int, snapshot.SpooledSnapshot] | None = None  # the install's, until installed
        self.installing = False  # from an install's start until installed (snapshot_apply_in_progress)

    def keep(self, index: int, spooled: snapshot.SpooledSnapshot) -> bool:
        """Keep a received state for the install of snapshot `index`; False: deleted (raft refuses it)."""
        if index <= self._applier.applied_index:
            spooled.path.unlink(missing_ok=True)
            return False
        with self._lock:
            replaced = self._kept.get(index)
            self._kept[index] = spooled
        if replaced is not None:
            # An earlier copy of the same index, not claimed by an install (that takes it out of
            # `_kept` first): superseded by this one.
            replaced.path.unlink(missing_ok=True)
        return True

    def install(self, meta: pb.SnapshotMetadata, batch: MarkerBatch) -> int:
        """Install the state kept for `meta.index` (steps 1 and 2 of `snapshot.install_file`); blocking.

        `batch` is the Ready's durable write, which records the snapshot point: the marker is
        deleted there (step 3), so a crash before it is written is finished at the next start.
        Meanwhile reads (ranges, hashes, watch history) are served from the old state, pinned.
        Returns the number of state batches written.
        """
        with self._lock:
            assert self._claimed is None, f"installing {meta.index} while {self._claimed} is not done"
            spooled = self._kept.pop(meta.index, None)
        if spooled is None:
            raise RuntimeError(f"raft installs snapshot {meta.index} but its state was not received")
        self.installing = True
        self._applier.pin_reads()
        written = snapshot.install_file(
            self._applier.backend,
            spooled,
            meta,
            batch_bytes=self._batch_bytes,
            after_batch=self._after_batch,
        )
        batch.delete(snapshot.MARKER_KEY)
        with self._lock:
            self._claimed = (meta.index, spooled)
        return written

    def installed(self, index: int) -> None:
        """The install of `index` is durable: delete its file and the kept ones it supersedes; reload.

        The applier re-reads the new state, which also unpins the store's reads.
        """
        with self._lock:
            claimed, self._claimed = self._claimed, None
            assert claimed is not None and claimed[0] == index, f"installed {index}, claimed {claimed}"
            stale = [self._kept.pop(kept) for kept in sorted(self._kept) if kept <= index]
        for spooled in (*stale, claimed[1]):  # later ones keep theirs: each file has a name of its own
            spooled.path.unlink(missing_ok=True)
        self._applier.reload()
        self.installing = False


class Delivered(Protocol):
    """Delivered is how far a member's raft has handed its state machine entries (RaftNode, ReadyHandler)."""

    @property
    def delivered_index(self) -> int:
        """The last index raft handed over in this life (entry or snapshot)."""
        ...

    @property
    def conf_state(self) -> pb.ConfState:
        """The configuration at `delivered_index`."""
        ...


def relabel_snapshot(
    message: pb.Message, applied: int, node: Delivered, term: Callable[[int], int]
) -> pb.Message | None:
    """The MsgSnap relabelled with the index, term and configuration of the state at `applied`.

    None while the node's configuration is not the one at `applied` (it replays after a
    restart, so `applied` is past what raft delivered) or the state is older than the
    snapshot: raft hears the send failed and tries again later.
    """
    assert message.type == pb.MsgSnap, message.type
    if applied != node.delivered_index or applied < message.snapshot.metadata.index:
        return None
    relabelled = pb.Message()
    relabelled.CopyFrom(message)
    meta = relabelled.snapshot.metadata
    meta.index = applied
    meta.term = term(applied)
    meta.conf_state.CopyFrom(node.conf_state)
    return relabelled


def snapshot_to_send(
    backend: Backend,
    message: pb.Message,
    node: Delivered,
    term: Callable[[int], int],
    *,
    chunk_bytes: int = snapshot.CHUNK_BYTES,
) -> tuple[pb.Message, Iterator[bytes]] | None:
    """The state as it is now, in chunks, with the MsgSnap relabelled to it (`relabel_snapshot`).

    None: not now (the state is closed again).
    """
    applied, state = snapshot.open_state(backend, chunk_bytes)
    relabelled = relabel_snapshot(message, applied, node, term)
    if relabelled is None:
        state.close()  # type: ignore[attr-defined]  # a generator
        return None
    return relabelled, state
