"""Errors of the concurrency recipes, all `EtcdError`s like every other client failure::

    EtcdError (etcdpy.api.errors; these are its table entries ErrSessionExpired, ErrElection*)
     +-- SessionExpired     the session's lease is gone (or its waiting key was deleted)
     +-- NotLeader          proclaim by an election participant that does not lead
     +-- NoLeader           leader() while nobody campaigns

The texts are those of etcd's Go recipes (clientv3/concurrency).  A lock or
campaign that runs out of time raises the builtin `TimeoutError` instead.
"""

from __future__ import annotations

from etcdpy.api import errors

__all__ = ["NoLeader", "NotLeader", "SessionExpired"]


# The one error table's entries (the server's Lock and Election services raise the same ones), so an
# answer from either server maps back to them.
SessionExpired = errors.ErrSessionExpired  # the session's lease expired or was revoked (or its key deleted)
NotLeader = errors.ErrElectionNotLeader  # the caller does not lead (never won, resigned, or lost its key)
NoLeader = errors.ErrElectionNoLeader  # no participant holds a key in the election
