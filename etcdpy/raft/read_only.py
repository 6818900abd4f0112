"""ReadOnly: the leader's queue of ReadIndex requests awaiting heartbeat confirmation.

A read at index i is safe once a quorum acknowledges a heartbeat sent after the
request arrived: then no other leader with a newer commit can exist. Heartbeats
carry the context of the newest pending request, and an acknowledgement of a
request also confirms every request queued before it, so one heartbeat round
confirms many reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from etcdpy.api.raftpb import raft_pb2 as pb


@dataclass
class ReadIndexStatus:
    """ReadIndexStatus is one pending ReadIndex request."""

    req: pb.Message
    index: int  # the leader's commit index when the request arrived
    acks: dict[int, bool] = field(default_factory=dict)


class ReadOnly:
    """ReadOnly tracks pending ReadIndex requests in arrival order (safe mode)."""

    __slots__ = ("pending", "queue")

    def __init__(self) -> None:
        self.pending: dict[bytes, ReadIndexStatus] = {}
        self.queue: list[bytes] = []  # request contexts, oldest first

    def add_request(self, index: int, m: pb.Message) -> None:
        """Add_request queues a request (identified by its context) read at index."""
        ctx = m.entries[0].data
        if ctx in self.pending:
            return
        self.pending[ctx] = ReadIndexStatus(m, index)
        self.queue.append(ctx)

    def recv_ack(self, peer: int, ctx: bytes) -> dict[int, bool] | None:
        """Recv_ack records that peer acknowledged the heartbeat for ctx; returns the acks so far."""
        rs = self.pending.get(ctx)
        if rs is None:
            return None
        rs.acks[peer] = True
        return rs.acks

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """Advance dequeues and returns the request for ctx and every request before it."""
        if ctx not in self.pending:
            return []
        n = self.queue.index(ctx) + 1
        done = [self.pending.pop(c) for c in self.queue[:n]]
        del self.queue[:n]
        return done

    def last_pending_request_ctx(self) -> bytes:
        """Last_pending_request_ctx is the newest pending context, or b'' if none."""
        return self.queue[-1] if self.queue else b""
