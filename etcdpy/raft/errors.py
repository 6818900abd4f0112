"""Errors raised by the raft library.

Hierarchy::

    RaftError
    ├── StorageError                      storage cannot serve a request
    │   ├── ErrCompacted                  index below the first available entry
    │   ├── ErrSnapOutOfDate              snapshot older than the one held
    │   ├── ErrUnavailable                index above the last available entry
    │   └── ErrSnapshotTemporarilyUnavailable
    ├── ProposalDropped                   a proposal (or read request) was not accepted
    ├── ErrStepLocalMsg                   a local message type was stepped from outside
    ├── ErrStepPeerNotFound               a response came from a node not in the config
    └── ConfChangeError                   a configuration change is invalid
"""

from __future__ import annotations


class RaftError(Exception):
    """RaftError is the base of every error this package raises on purpose."""


class StorageError(RaftError):
    """StorageError says that storage could not serve a read."""


class ErrCompacted(StorageError):
    """ErrCompacted: the entry asked for is gone, dropped by a compaction or a snapshot."""

    def __init__(self) -> None:
        super().__init__("requested index is unavailable due to compaction")


class ErrSnapOutOfDate(StorageError):
    """ErrSnapOutOfDate: the snapshot is older than the one storage already holds."""

    def __init__(self) -> None:
        super().__init__("requested index is older than the existing snapshot")


class ErrUnavailable(StorageError):
    """ErrUnavailable: the requested entry is not (yet) in storage."""

    def __init__(self) -> None:
        super().__init__("requested entry at index is unavailable")


class ErrSnapshotTemporarilyUnavailable(StorageError):
    """ErrSnapshotTemporarilyUnavailable: a snapshot is being made; ask again later."""

    def __init__(self) -> None:
        super().__init__("snapshot is temporarily unavailable")


class ProposalDropped(RaftError):
    """ProposalDropped: raft refused the proposal; it will never be committed.

    Reasons include: no known leader, a leadership transfer in progress, proposal
    forwarding disabled, the node was removed, or the uncommitted-size limit.
    """

    def __init__(self, reason: str = "raft proposal dropped") -> None:
        super().__init__(reason)


class ErrStepLocalMsg(RaftError):
    """ErrStepLocalMsg: a message type that only raft itself generates was stepped."""

    def __init__(self) -> None:
        super().__init__("raft: cannot step raft local message")


class ErrStepPeerNotFound(RaftError):
    """ErrStepPeerNotFound: a response message came from a peer not in the configuration."""

    def __init__(self) -> None:
        super().__init__("raft: cannot step as peer not found")


class ConfChangeError(RaftError):
    """ConfChangeError: a configuration change cannot be applied to the current configuration."""
