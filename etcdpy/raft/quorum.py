"""Quorum: commit indexes and vote results of majority and joint configurations."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping

AckedIndexer = Callable[[int], "int | None"]
"""AckedIndexer returns the highest log index a voter is known to hold, or None if unknown."""

_NO_QUORUM_NEEDED = (1 << 64) - 1


class VoteResult(enum.Enum):
    """VoteResult: won, lost, or pending while the votes still missing could decide either way."""

    PENDING = "VotePending"
    LOST = "VoteLost"
    WON = "VoteWon"


class MajorityConfig(frozenset[int]):
    """MajorityConfig: the voter IDs of one configuration; more than half of them form a quorum."""

    def __str__(self) -> str:
        return "(" + " ".join(str(i) for i in sorted(self)) + ")"

    def committed_index(self, acked: AckedIndexer) -> int:
        """Committed_index is the largest index held by a majority of the voters.

        An empty configuration commits everything (it places no constraint, which
        is what the empty half of a non-joint JointConfig needs).
        """
        n = len(self)
        if n == 0:
            return _NO_QUORUM_NEEDED
        indexes = sorted((acked(i) or 0) for i in self)
        # With ascending order, the index at position n - (n//2 + 1) is held by
        # n//2 + 1 voters (itself and all larger ones): a majority.
        return indexes[n - (n // 2 + 1)]

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        """Vote_result tallies votes (True = granted; absent = not yet voted)."""
        if not self:
            return VoteResult.WON  # an empty config is satisfied by anything
        granted = rejected = 0
        for voter in self:
            v = votes.get(voter)
            if v is None:
                continue
            if v:
                granted += 1
            else:
                rejected += 1
        quorum = len(self) // 2 + 1
        if granted >= quorum:
            return VoteResult.WON
        if granted + (len(self) - granted - rejected) >= quorum:
            return VoteResult.PENDING
        return VoteResult.LOST


class JointConfig:
    """JointConfig is two majority configs (incoming, outgoing) that must both agree.

    Outside of a joint transition the outgoing config is empty and the joint
    config behaves like the incoming one alone.
    """

    __slots__ = ("incoming", "outgoing")

    def __init__(self, incoming: Iterable[int] = (), outgoing: Iterable[int] = ()) -> None:
        self.incoming = MajorityConfig(incoming)
        self.outgoing = MajorityConfig(outgoing)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, JointConfig)
            and self.incoming == other.incoming
            and self.outgoing == other.outgoing
        )

    def __hash__(self) -> int:
        return hash((self.incoming, self.outgoing))

    def __str__(self) -> str:
        if self.outgoing:
            return f"{self.incoming}&&{self.outgoing}"
        return str(self.incoming)

    def ids(self) -> frozenset[int]:
        """Ids is the union of both halves."""
        return self.incoming | self.outgoing

    def is_joint(self) -> bool:
        """Is_joint says whether a joint transition is in progress."""
        return bool(self.outgoing)

    def committed_index(self, acked: AckedIndexer) -> int:
        """Committed_index is the largest index committed under both halves."""
        return min(self.incoming.committed_index(acked), self.outgoing.committed_index(acked))

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        """Vote_result is WON only if both halves won, LOST if either lost."""
        r1 = self.incoming.vote_result(votes)
        r2 = self.outgoing.vote_result(votes)
        if r1 == r2:
            return r1
        if VoteResult.LOST in (r1, r2):
            return VoteResult.LOST
        return VoteResult.PENDING
