"""RaftConfig: the parameters of one raft node; RaftLogger: where raft reports what it does."""

from __future__ import annotations

from dataclasses import dataclass, field
from random import Random
from typing import Protocol

from etcdpy.raft.storage import NO_LIMIT, Storage


class RaftLogger(Protocol):
    """RaftLogger receives raft's log lines (printf-style format plus arguments).

    Raft is pure, so it does not use the logging module (which reads clocks and
    takes locks); the application adapts this to whatever logging it has.
    """

    def debug(self, fmt: str, *args: object) -> None: ...

    def info(self, fmt: str, *args: object) -> None: ...

    def warning(self, fmt: str, *args: object) -> None: ...

    def error(self, fmt: str, *args: object) -> None: ...


class NullLogger:
    """NullLogger discards everything (the default)."""

    def debug(self, fmt: str, *args: object) -> None:
        """Debug discards the line."""

    def info(self, fmt: str, *args: object) -> None:
        """Info discards the line."""

    def warning(self, fmt: str, *args: object) -> None:
        """Warning discards the line."""

    def error(self, fmt: str, *args: object) -> None:
        """Error discards the line."""


@dataclass
class RaftConfig:
    """RaftConfig holds the parameters of a raft node.

    Time is counted in ticks (calls of RawNode.tick()); randomness comes only
    from `rand`, so a node with the same inputs behaves the same way every run.
    """

    id: int
    # election_tick: a follower that hears no leader for a random time in
    # [election_tick, 2*election_tick) ticks starts an election.
    election_tick: int
    # heartbeat_tick: the leader sends heartbeats every heartbeat_tick ticks.
    heartbeat_tick: int
    storage: Storage
    # applied: the last index the application had applied when restarting.
    applied: int = 0
    # max_size_per_msg: byte limit on the entries of one MsgApp (at least one entry is sent).
    max_size_per_msg: int = 1 << 20
    # max_committed_size_per_ready: byte limit on committed entries per Ready (0: max_size_per_msg).
    max_committed_size_per_ready: int = 0
    # max_inflight_msgs: MsgApps in flight to one follower in the replicate state.
    max_inflight_msgs: int = 256
    # max_inflight_bytes: bytes in flight to one follower (0: no limit).
    max_inflight_bytes: int = 0
    # check_quorum: a leader steps down when it has not heard from a quorum in an
    # election timeout, and followers ignore votes while they hear from a leader.
    check_quorum: bool = False
    # pre_vote: a node first checks that it could win before disrupting the term.
    pre_vote: bool = False
    # max_uncommitted_entries_size: bytes of uncommitted entry payload the leader accepts (0: no limit).
    max_uncommitted_entries_size: int = 0
    # rand: the only source of randomness (election jitter); None seeds Random(id).
    rand: Random | None = None
    # disable_proposal_forwarding: followers drop proposals instead of forwarding them.
    disable_proposal_forwarding: bool = False
    logger: RaftLogger = field(default_factory=NullLogger)

    def validate(self) -> None:
        """Validate raises ValueError for an unusable configuration and fills in defaults."""
        if self.id == 0:
            raise ValueError("cannot use none as id")
        if self.heartbeat_tick <= 0:
            raise ValueError("heartbeat tick must be greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election tick must be greater than heartbeat tick")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max inflight messages must be greater than 0")
        if self.max_uncommitted_entries_size == 0:
            self.max_uncommitted_entries_size = NO_LIMIT
        if self.max_committed_size_per_ready == 0:
            self.max_committed_size_per_ready = self.max_size_per_msg
        if self.rand is None:
            self.rand = Random(self.id)
