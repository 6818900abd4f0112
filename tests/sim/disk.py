"""A fake disk for raft: what raft reads (the page cache) and what survives a crash (what was synced).

Writes go to `working`, the MemoryStorage raft reads, and are queued; `sync`
replays the queue onto `durable`.  A crash throws away the queue: the node
restarts from `durable`.  The application's state has its own share of the
disk (see `application.py`), synced at the same moments.
"""

from __future__ import annotations

from collections.abc import Callable

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft import NO_LIMIT, MemoryStorage

Write = Callable[[MemoryStorage], None]


class FakeDisk:
    """FakeDisk holds one node's raft log, hard state and snapshot across crashes."""

    def __init__(self, initial: MemoryStorage) -> None:
        self.working = initial
        self.durable = copy_storage(initial)
        self._unsynced: list[Write] = []
        self.syncs = 0
        self.lost_writes = 0

    def _write(self, write: Write) -> None:
        write(self.working)
        self._unsynced.append(write)

    def apply_snapshot(self, snapshot: pb.Snapshot) -> None:
        """Apply_snapshot replaces the log by a snapshot received from the leader."""
        self._write(lambda storage: storage.apply_snapshot(snapshot))

    def append(self, entries: list[pb.Entry]) -> None:
        """Append writes log entries (replacing a conflicting suffix)."""
        self._write(lambda storage: storage.append(entries))

    def set_hard_state(self, hard_state: pb.HardState) -> None:
        """Set_hard_state writes term, vote and commit."""
        saved = pb.HardState()
        saved.CopyFrom(hard_state)
        self._write(lambda storage: storage.set_hard_state(saved))

    def create_snapshot(self, index: int, conf_state: pb.ConfState, data: bytes) -> None:
        """Create_snapshot records the application's own snapshot at `index`."""
        self._write(lambda storage: _ignore_result(storage.create_snapshot(index, conf_state, data)))

    def compact(self, index: int) -> None:
        """Compact discards log entries up to `index`."""
        self._write(lambda storage: storage.compact(index))

    def sync(self) -> None:
        """Sync makes every write so far durable."""
        for write in self._unsynced:
            write(self.durable)
        self._unsynced.clear()
        self.syncs += 1

    def crash(self) -> None:
        """Crash loses what was not synced: the page cache is rebuilt from the durable image."""
        self.lost_writes += len(self._unsynced)
        self._unsynced.clear()
        self.working = copy_storage(self.durable)


def _ignore_result(_: object) -> None:
    return None


def copy_storage(source: MemoryStorage) -> MemoryStorage:
    """Copy_storage is an independent MemoryStorage holding the same snapshot, entries and hard state.

    The log may start before the snapshot (entries kept after compaction for
    slow followers), so the copy is rebuilt from the compaction point up.
    """
    copy = MemoryStorage()
    snapshot = source.snapshot()
    offset = source.first_index() - 1
    if offset > 0:
        base = pb.Snapshot(data=snapshot.data)
        base.metadata.CopyFrom(snapshot.metadata)
        base.metadata.index, base.metadata.term = offset, source.term(offset)
        copy.apply_snapshot(base)
    last = source.last_index()
    if last > offset:
        copy.append(source.entries(offset + 1, last + 1, NO_LIMIT))
    if snapshot.metadata.index > offset:
        copy.create_snapshot(snapshot.metadata.index, snapshot.metadata.conf_state, snapshot.data)
    hard_state = pb.HardState()
    hard_state.CopyFrom(source.hard_state)
    copy.set_hard_state(hard_state)
    return copy
