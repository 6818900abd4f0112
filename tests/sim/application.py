"""What a simulated node applies committed entries to: the `Application` seam and the toy store behind it.

A node hands its application runs of committed entries, asks it to serve
ReadIndex reads, and drives its durability: `sync` when the node's fsync
completes, `crash` when the machine loses power, `restart` when it boots from
its disk again.  Two applications exist: `ToyApplication` (a dict of registers,
fast, the default sweep) and `serverapp.ServerApplication` (the real server's
Applier on LevelDB and its snapshot path).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.checker import KvOutput
from etcdpy.server.consensus.snapshots import Delivered

from .disk import FakeDisk
from .statemachine import Command, KvStateMachine


@dataclass(frozen=True, slots=True)
class Applied:
    """Applied is one entry an application has just applied (never one it already held)."""

    entry: pb.Entry
    request_id: int | None  # the client request the entry carries, if any
    output: KvOutput | None  # what applying it answers that request
    digest: Hashable | None  # the store's digest right after the entry; None where it cannot be observed


class Application(Protocol):
    """Application is the state machine of one simulated node, with its own share of the disk."""

    @property
    def applied(self) -> int:
        """Applied is the index of the last entry the store holds."""
        ...

    def encode(self, command: Command) -> bytes:
        """Encode is the entry data proposing a client command."""
        ...

    def apply(self, entries: list[pb.Entry]) -> list[Applied]:
        """Apply applies committed entries (conf changes move the applied index only); returns the new."""
        ...

    def read(self, command: Command) -> KvOutput:
        """Read serves a read from the applied state (after ReadIndex confirmed it is current enough)."""
        ...

    def digest(self) -> Hashable:
        """Digest identifies the store's contents: equal digests at one index, equal stores."""
        ...

    def history_digests(self) -> dict[int, Hashable]:
        """History_digests are the store's digests at several revisions (what corruption checks compare)."""
        ...

    def snapshot_data(self) -> bytes:
        """Snapshot_data is what a snapshot taken now at `applied` stores as its data."""
        ...

    def sending(self, message: pb.Message, node: Delivered, term: Callable[[int], int]) -> pb.Message | None:
        """Sending is an outgoing message as it goes on the wire (a MsgSnap gets its state attached).

        `node` is the sender's raft, `term` its log's terms.  None: not sent now (raft hears the
        snapshot failed).
        """
        ...

    def receiving(self, message: pb.Message) -> pb.Message:
        """Receiving is an arrived message as raft should step it (a MsgSnap's state is kept aside)."""
        ...

    def claim(self, snapshot: pb.Snapshot) -> None:
        """Claim takes the state of a snapshot raft hands out in a Ready, before the Ready is written.

        The server starts writing that state here (a crash may interrupt it: see `restart`).
        """
        ...

    def install(self, snapshot: pb.Snapshot) -> None:
        """Install makes the store the state of a snapshot raft accepted, once its Ready is durable."""
        ...

    def step(self) -> None:
        """Step does a bounded piece of background work (physical compaction), if any."""
        ...

    def sync(self) -> None:
        """Sync makes everything written so far durable (the node's fsync completed)."""
        ...

    def crash(self) -> None:
        """Crash loses what a power loss may lose; the application is unusable until `restart`."""
        ...

    def restart(self, disk: FakeDisk) -> pb.SnapshotMetadata | None:
        """Restart reopens the store from what survived, next to the node's durable disk.

        Returns the snapshot whose install a crash interrupted and the restart finished (it
        may write that snapshot point to `disk`, as the server's start does), if any.
        """
        ...

    def close(self) -> None:
        """Close releases what the application holds open (the member is removed, or the run ends)."""
        ...


class ToyApplication:
    """ToyApplication applies JSON commands to a `KvStateMachine`; a snapshot carries the whole store."""

    def __init__(self) -> None:
        self.store = KvStateMachine()
        self._applied = 0
        # the store and applied index as of the last sync: what a restart finds (a private copy)
        self._durable: tuple[int, KvStateMachine] = (0, KvStateMachine())

    @property
    def applied(self) -> int:
        return self._applied

    def encode(self, command: Command) -> bytes:
        return command.encode()

    def apply(self, entries: list[pb.Entry]) -> list[Applied]:
        done: list[Applied] = []
        for entry in entries:
            if entry.index <= self._applied:
                continue
            request_id: int | None = None
            output: KvOutput | None = None
            if entry.type == pb.EntryNormal and entry.data:
                command = Command.decode(entry.data)
                request_id, output = command.request_id, self.store.apply(command)
            self._applied = entry.index
            done.append(Applied(entry, request_id, output, self.store.digest()))
        return done

    def read(self, command: Command) -> KvOutput:
        return KvOutput(self.store.read(str(command.request.key)))

    def digest(self) -> Hashable:
        return self.store.digest()

    def history_digests(self) -> dict[int, Hashable]:
        return {self._applied: self.store.digest()}  # no history: the one state it has

    def snapshot_data(self) -> bytes:
        return self.store.encode()

    def sending(self, message: pb.Message, node: Delivered, term: Callable[[int], int]) -> pb.Message | None:
        return message  # the snapshot carries the store at its own point

    def receiving(self, message: pb.Message) -> pb.Message:
        return message

    def claim(self, snapshot: pb.Snapshot) -> None:
        return None  # the snapshot carries the store

    def install(self, snapshot: pb.Snapshot) -> None:
        self.store = KvStateMachine.decode(snapshot.data)
        self._applied = snapshot.metadata.index

    def step(self) -> None:
        return None

    def sync(self) -> None:
        if self._applied != self._durable[0]:
            self._durable = (self._applied, self.store.copy())

    def crash(self) -> None:
        return None  # the restart reads the durable copy

    def restart(self, disk: FakeDisk) -> pb.SnapshotMetadata | None:
        snapshot = disk.working.snapshot()
        applied, store = self._durable
        if snapshot.metadata.index > applied:
            # The disk holds a newer snapshot than the store it saved: restore the store from it.
            self.install(snapshot)
            return None
        self.store, self._applied = store.copy(), applied
        return None

    def close(self) -> None:
        return None
