"""Node roles and the read-only views of a node's state: SoftState, ReadState, Status."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from etcdpy.api.raftpb import raft_pb2 as pb


class StateType(enum.Enum):
    """StateType: the role a node plays now; its value is the name the golden transcripts print."""

    FOLLOWER = "StateFollower"
    CANDIDATE = "StateCandidate"
    LEADER = "StateLeader"
    PRE_CANDIDATE = "StatePreCandidate"


class CampaignType(enum.Enum):
    """CampaignType says which kind of election a node starts."""

    PRE_ELECTION = "CampaignPreElection"
    ELECTION = "CampaignElection"
    TRANSFER = "CampaignTransfer"


@dataclass(frozen=True, slots=True)
class SoftState:
    """SoftState: the known leader and this node's role; in a Ready when either changed; never stored."""

    lead: int
    role: StateType


@dataclass(frozen=True, slots=True)
class ReadState:
    """ReadState answers a read_index() call.

    Once the application has applied up to `index`, a read of its state is
    linearizable with respect to the moment read_index(request_ctx) was called.
    """

    index: int
    request_ctx: bytes


@dataclass(frozen=True, slots=True)
class ProgressStatus:
    """ProgressStatus is a snapshot of the leader's Progress for one peer."""

    match: int
    next: int
    state: str
    is_learner: bool
    recent_active: bool
    paused: bool
    inflight: int


@dataclass(frozen=True)
class Status:
    """Status is a point-in-time description of a node, for monitoring and tests."""

    id: int
    hard_state: pb.HardState
    soft_state: SoftState
    applied: int
    config: str
    conf_state: pb.ConfState
    lead_transferee: int
    # progress of every peer; only filled in on the leader
    progress: dict[int, ProgressStatus] = field(default_factory=dict)
