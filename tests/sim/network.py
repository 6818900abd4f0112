"""A fake network between simulated raft nodes: drop, duplicate, delay/reorder, partitions.

Time is the simulation step.  Every message gets a delivery step; messages due
at the same step are delivered in a random order, and random delays reorder
messages on the same link.  A partition is a set of cut directed links; a
message is lost if its link is cut when it is sent or when it arrives.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

from etcdpy.api.raftpb import raft_pb2 as pb


def sender(message: pb.Message) -> int:
    """Sender is the message's `from` field (a Python keyword, hence getattr)."""
    frm: int = getattr(message, "from")
    return frm


@dataclass(frozen=True, slots=True)
class NetworkFaults:
    """NetworkFaults are the per-message fault probabilities of a run."""

    drop: float = 0.0  # probability a message is lost
    duplicate: float = 0.0  # probability a message is delivered twice
    max_delay: int = 0  # extra delivery delay, uniform in [0, max_delay] steps: reorders


class FakeNetwork:
    """FakeNetwork carries raft messages between node ids, under the faults of the run."""

    def __init__(self, rng: random.Random, faults: NetworkFaults) -> None:
        self._rng = rng
        self.faults = faults
        self.cut: set[tuple[int, int]] = set()  # directed links (from, to) that lose every message
        # heap of (delivery step, sequence number, message); the sequence number keeps the order stable.
        # Each copy on the wire is its own object, as after a real transport's (de)serialization:
        # raft may keep (and stamp) the entries of a message it receives.
        self._in_flight: list[tuple[int, int, pb.Message]] = []
        self._sequence = 0
        self.sent = 0
        self.dropped = 0
        # snapshots that never arrived: the sender's transport reports them as failed
        self.lost_snapshots: list[pb.Message] = []

    def send(self, message: pb.Message, now: int) -> None:
        """Send puts a message on the wire at step `now`; it arrives one step later at the earliest."""
        self.sent += 1
        faults = self.faults
        copies = 2 if faults.duplicate and self._rng.random() < faults.duplicate else 1
        for _ in range(copies):
            if (sender(message), message.to) in self.cut or (
                faults.drop and self._rng.random() < faults.drop
            ):
                self.lose(message)
                continue
            delay = 1 + (int(self._rng.random() * (faults.max_delay + 1)) if faults.max_delay else 0)
            self._sequence += 1
            copy = pb.Message()
            copy.CopyFrom(message)
            heapq.heappush(self._in_flight, (now + delay, self._sequence, copy))

    def due(self, now: int) -> list[pb.Message]:
        """Due removes and returns the messages arriving at step `now`, shuffled, minus cut links."""
        arrived: list[pb.Message] = []
        while self._in_flight and self._in_flight[0][0] <= now:
            message = heapq.heappop(self._in_flight)[2]
            if (sender(message), message.to) in self.cut:
                self.lose(message)
            else:
                arrived.append(message)
        self._rng.shuffle(arrived)
        return arrived

    def lose(self, message: pb.Message) -> None:
        """Lose counts a message that never arrives (a snapshot is remembered, to be reported failed)."""
        self.dropped += 1
        if message.type == pb.MsgSnap:
            self.lost_snapshots.append(message)

    def take_lost_snapshots(self) -> list[pb.Message]:
        """Take_lost_snapshots returns (and forgets) the snapshot messages lost since the last call."""
        lost, self.lost_snapshots = self.lost_snapshots, []
        return lost

    def partition(self, *groups: set[int]) -> None:
        """Partition cuts every link between nodes of different groups (and keeps existing cuts)."""
        for a_group in groups:
            for b_group in groups:
                if a_group is not b_group:
                    self.cut.update((a, b) for a in a_group for b in b_group)

    def cut_one_way(self, frm: int, to: int) -> None:
        """Cut_one_way loses every message from `frm` to `to` (an asymmetric partition)."""
        self.cut.add((frm, to))

    def heal(self) -> None:
        """Heal restores every link."""
        self.cut.clear()

    @property
    def in_flight(self) -> int:
        """In_flight is the number of messages on the wire."""
        return len(self._in_flight)
