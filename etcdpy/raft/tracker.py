"""ProgressTracker: the active configuration, each peer's Progress, and election votes."""

from __future__ import annotations

from dataclasses import dataclass, field

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft.progress import Progress
from etcdpy.raft.quorum import JointConfig, VoteResult


@dataclass
class TrackerConfig:
    """TrackerConfig is a (possibly joint) configuration.

    Learners and voters (both halves) are disjoint; learners_next is a subset
    of voters.outgoing, disjoint from voters.incoming, and its members become
    learners when the joint configuration is left. confchange maintains both and
    checks them after every change (`_check_invariants`).
    """

    voters: JointConfig = field(default_factory=JointConfig)
    # auto_leave: leave the joint configuration automatically once it is applied.
    auto_leave: bool = False
    learners: set[int] = field(default_factory=set)
    learners_next: set[int] = field(default_factory=set)

    def clone(self) -> TrackerConfig:
        """Clone returns an independent copy."""
        return TrackerConfig(
            JointConfig(self.voters.incoming, self.voters.outgoing),
            self.auto_leave,
            set(self.learners),
            set(self.learners_next),
        )

    def __str__(self) -> str:
        parts = [f"voters={self.voters}"]
        if self.learners:
            parts.append("learners=(" + " ".join(str(i) for i in sorted(self.learners)) + ")")
        if self.learners_next:
            parts.append("learners_next=(" + " ".join(str(i) for i in sorted(self.learners_next)) + ")")
        if self.auto_leave:
            parts.append("autoleave")
        return " ".join(parts)


ProgressMap = dict[int, Progress]


class ProgressTracker:
    """ProgressTracker tracks the configuration and what the leader knows of every peer."""

    __slots__ = ("config", "max_inflight", "max_inflight_bytes", "progress", "votes")

    def __init__(self, max_inflight: int, max_inflight_bytes: int = 0) -> None:
        self.config = TrackerConfig()
        self.progress: ProgressMap = {}
        # votes received in the current (pre-)election: id -> granted
        self.votes: dict[int, bool] = {}
        self.max_inflight = max_inflight
        self.max_inflight_bytes = max_inflight_bytes

    def conf_state(self) -> pb.ConfState:
        """Conf_state is the configuration as a ConfState (sorted IDs)."""
        c = self.config
        return pb.ConfState(
            voters=sorted(c.voters.incoming),
            voters_outgoing=sorted(c.voters.outgoing),
            learners=sorted(c.learners),
            learners_next=sorted(c.learners_next),
            auto_leave=c.auto_leave,
        )

    def is_singleton(self) -> bool:
        """Is_singleton says whether the configuration is one voter and not joint."""
        return len(self.config.voters.incoming) == 1 and not self.config.voters.outgoing

    def _acked(self, i: int) -> int | None:
        pr = self.progress.get(i)
        return pr.match if pr is not None else None

    def committed(self) -> int:
        """Committed: the voters' quorum rule applied to every peer's match index (see JointConfig)."""
        return self.config.voters.committed_index(self._acked)

    def sorted_ids(self) -> list[int]:
        """Sorted_ids lists every tracked peer in ascending order."""
        return sorted(self.progress)

    def quorum_active(self) -> bool:
        """Quorum_active says whether a quorum of voters was recently active."""
        votes = {i: pr.recent_active for i, pr in self.progress.items() if not pr.is_learner}
        return self.config.voters.vote_result(votes) is VoteResult.WON

    def voter_nodes(self) -> list[int]:
        """Voter_nodes: the voters of both halves, sorted."""
        return sorted(self.config.voters.ids())

    def reset_votes(self) -> None:
        """Reset_votes forgets the answers of the previous (pre-)election."""
        self.votes = {}

    def record_vote(self, i: int, granted: bool) -> None:
        """Record_vote records i's first answer in this election (later ones are ignored)."""
        self.votes.setdefault(i, granted)

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        """Tally_votes returns (granted, rejected, result) counting only current voters."""
        granted = rejected = 0
        for i, pr in self.progress.items():
            if pr.is_learner or i not in self.votes:
                continue
            if self.votes[i]:
                granted += 1
            else:
                rejected += 1
        return granted, rejected, self.config.voters.vote_result(self.votes)
