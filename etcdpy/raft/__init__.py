"""etcdpy.raft: a pure, deterministic Raft consensus library modeled on etcd-io/raft.

No I/O, no clock, no threads: time is tick(), input is step()/propose()/...,
output is a Ready (see rawnode.py for the loop the application runs).
Randomness comes only from RaftConfig.rand. Messages and entries are the protobuf
types of etcdpy.api.raftpb, ready to be sent over the wire.
"""

from etcdpy.raft.coalesce import coalesce
from etcdpy.raft.confchange import (
    as_v2,
    conf_change_entry,
    conf_changes_from_string,
    conf_changes_to_string,
    decode_conf_change,
)
from etcdpy.raft.config import NullLogger, RaftConfig, RaftLogger
from etcdpy.raft.describe import describe_entry, describe_hard_state, describe_message, describe_snapshot
from etcdpy.raft.errors import (
    ConfChangeError,
    ErrCompacted,
    ErrSnapOutOfDate,
    ErrSnapshotTemporarilyUnavailable,
    ErrStepLocalMsg,
    ErrStepPeerNotFound,
    ErrUnavailable,
    ProposalDropped,
    RaftError,
    StorageError,
)
from etcdpy.raft.messages import NONE, sender
from etcdpy.raft.rawnode import RawNode, Ready, SnapshotStatus
from etcdpy.raft.status import ProgressStatus, ReadState, SoftState, StateType, Status
from etcdpy.raft.storage import NO_LIMIT, MemoryStorage, Storage

__all__ = [
    "NONE",
    "NO_LIMIT",
    "ConfChangeError",
    "ErrCompacted",
    "ErrSnapOutOfDate",
    "ErrSnapshotTemporarilyUnavailable",
    "ErrStepLocalMsg",
    "ErrStepPeerNotFound",
    "ErrUnavailable",
    "MemoryStorage",
    "NullLogger",
    "ProgressStatus",
    "ProposalDropped",
    "RaftConfig",
    "RaftError",
    "RaftLogger",
    "RawNode",
    "ReadState",
    "Ready",
    "SnapshotStatus",
    "SoftState",
    "StateType",
    "Status",
    "Storage",
    "StorageError",
    "as_v2",
    "coalesce",
    "conf_change_entry",
    "conf_changes_from_string",
    "conf_changes_to_string",
    "decode_conf_change",
    "describe_entry",
    "describe_hard_state",
    "describe_message",
    "describe_snapshot",
    "sender",
]
