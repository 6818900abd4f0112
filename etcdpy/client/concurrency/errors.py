"""Errors of the concurrency recipes, all `EtcdError`s like every other client failure::

    EtcdError (etcdpy.api.errors)
     +-- SessionExpired     the session's lease is gone (or its waiting key was deleted)
     +-- NotLeader          proclaim by an election participant that does not lead
     +-- NoLeader           leader() while nobody campaigns

The texts are those of etcd's Go recipes (clientv3/concurrency).  A lock or
campaign that runs out of time raises the builtin `TimeoutError` instead.
"""

from __future__ import annotations

from etcdpy.api.errors import EtcdError

__all__ = ["NoLeader", "NotLeader", "SessionExpired"]


class SessionExpired(EtcdError):
    """The session's lease expired or was revoked (or its key in the queue was deleted)."""

    message = "mutex: session is expired"


class NotLeader(EtcdError):
    """The caller does not lead the election (it never won, resigned, or lost its key)."""

    message = "election: not leader"


class NoLeader(EtcdError):
    """No participant holds a key in the election."""

    message = "election: no leader"
