"""The one table of etcd's errors: exact message text and gRPC status code.

Server and client share it.  The server raises an `EtcdError` subclass and the
gRPC adapter aborts with ``(err.code, err.message)``; the client maps a received
status back to the same class with `from_status`, so ``except ErrCompacted``
works on both sides and the CLI prints ``Error: <message>`` exactly as etcdctl.

Exception hierarchy::

    EtcdError                      code + message, both class attributes
     +-- ErrCompacted, ErrFutureRev, ErrEmptyKey, ...   (one class per etcd error)
     +-- UnknownEtcdError           a status this table does not know (message kept)
"""

from __future__ import annotations

from typing import ClassVar

import grpc

_C = grpc.StatusCode


class EtcdError(Exception):
    """An error etcd reports with a fixed gRPC code and message text."""

    code: ClassVar[grpc.StatusCode] = _C.UNKNOWN
    message: ClassVar[str] = ""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message if message is not None else self.message)

    @property
    def text(self) -> str:
        """The message sent on the wire (the class text unless overridden)."""
        return str(self.args[0])


class UnknownEtcdError(EtcdError):
    """A status not in the table; carries the code and text it arrived with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.status_code = code


def _err(name: str, code: grpc.StatusCode, message: str) -> type[EtcdError]:
    cls = type(name, (EtcdError,), {"code": code, "message": message, "__doc__": message})
    ALL.append(cls)
    return cls


ALL: list[type[EtcdError]] = []

# KV and txn
ErrEmptyKey = _err("ErrEmptyKey", _C.INVALID_ARGUMENT, "etcdserver: key is not provided")
ErrKeyNotFound = _err("ErrKeyNotFound", _C.INVALID_ARGUMENT, "etcdserver: key not found")
ErrValueProvided = _err("ErrValueProvided", _C.INVALID_ARGUMENT, "etcdserver: value is provided")
ErrLeaseProvided = _err("ErrLeaseProvided", _C.INVALID_ARGUMENT, "etcdserver: lease is provided")
ErrTooManyOps = _err("ErrTooManyOps", _C.INVALID_ARGUMENT, "etcdserver: too many operations in txn request")
ErrDuplicateKey = _err(
    "ErrDuplicateKey", _C.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request"
)
ErrInvalidSortOption = _err("ErrInvalidSortOption", _C.INVALID_ARGUMENT, "etcdserver: invalid sort option")
ErrRequestTooLarge = _err("ErrRequestTooLarge", _C.INVALID_ARGUMENT, "etcdserver: request is too large")
ErrTooManyRequests = _err("ErrTooManyRequests", _C.RESOURCE_EXHAUSTED, "etcdserver: too many requests")
ErrCompacted = _err("ErrCompacted", _C.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
ErrFutureRev = _err(
    "ErrFutureRev", _C.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision"
)
ErrNoSpace = _err("ErrNoSpace", _C.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded")

# leases
ErrLeaseNotFound = _err("ErrLeaseNotFound", _C.NOT_FOUND, "etcdserver: requested lease not found")
ErrLeaseExist = _err("ErrLeaseExist", _C.FAILED_PRECONDITION, "etcdserver: lease already exists")
ErrLeaseTTLTooLarge = _err("ErrLeaseTTLTooLarge", _C.OUT_OF_RANGE, "etcdserver: too large lease TTL")

# watch
ErrWatchCanceled = _err("ErrWatchCanceled", _C.CANCELLED, "etcdserver: watch canceled")

# membership
ErrMemberExist = _err("ErrMemberExist", _C.FAILED_PRECONDITION, "etcdserver: member ID already exist")
ErrPeerURLExist = _err("ErrPeerURLExist", _C.FAILED_PRECONDITION, "etcdserver: Peer URLs already exists")
ErrMemberNotEnoughStarted = _err(
    "ErrMemberNotEnoughStarted",
    _C.FAILED_PRECONDITION,
    "etcdserver: re-configuration failed due to not enough started members",
)
ErrMemberBadURLs = _err("ErrMemberBadURLs", _C.INVALID_ARGUMENT, "etcdserver: given member URLs are invalid")
ErrMemberNotFound = _err("ErrMemberNotFound", _C.NOT_FOUND, "etcdserver: member not found")
ErrMemberNotLearner = _err(
    "ErrMemberNotLearner", _C.FAILED_PRECONDITION, "etcdserver: can only promote a learner member"
)
ErrLearnerNotReady = _err(
    "ErrLearnerNotReady",
    _C.FAILED_PRECONDITION,
    "etcdserver: can only promote a learner member which is in sync with leader",
)
ErrTooManyLearners = _err(
    "ErrTooManyLearners", _C.FAILED_PRECONDITION, "etcdserver: too many learner members in cluster"
)

# auth
ErrRootUserNotExist = _err(
    "ErrRootUserNotExist", _C.FAILED_PRECONDITION, "etcdserver: root user does not exist"
)
ErrRootRoleNotExist = _err(
    "ErrRootRoleNotExist", _C.FAILED_PRECONDITION, "etcdserver: root user does not have root role"
)
ErrUserAlreadyExist = _err(
    "ErrUserAlreadyExist", _C.FAILED_PRECONDITION, "etcdserver: user name already exists"
)
ErrUserEmpty = _err("ErrUserEmpty", _C.INVALID_ARGUMENT, "etcdserver: user name is empty")
ErrUserNotFound = _err("ErrUserNotFound", _C.FAILED_PRECONDITION, "etcdserver: user name not found")
ErrRoleAlreadyExist = _err(
    "ErrRoleAlreadyExist", _C.FAILED_PRECONDITION, "etcdserver: role name already exists"
)
ErrRoleNotFound = _err("ErrRoleNotFound", _C.FAILED_PRECONDITION, "etcdserver: role name not found")
ErrRoleEmpty = _err("ErrRoleEmpty", _C.INVALID_ARGUMENT, "etcdserver: role name is empty")
ErrAuthFailed = _err(
    "ErrAuthFailed", _C.INVALID_ARGUMENT, "etcdserver: authentication failed, invalid user ID or password"
)
ErrPermissionNotGiven = _err("ErrPermissionNotGiven", _C.INVALID_ARGUMENT, "etcdserver: permission not given")
ErrPermissionDenied = _err("ErrPermissionDenied", _C.PERMISSION_DENIED, "etcdserver: permission denied")
ErrRoleNotGranted = _err(
    "ErrRoleNotGranted", _C.FAILED_PRECONDITION, "etcdserver: role is not granted to the user"
)
ErrPermissionNotGranted = _err(
    "ErrPermissionNotGranted", _C.FAILED_PRECONDITION, "etcdserver: permission is not granted to the role"
)
ErrAuthNotEnabled = _err(
    "ErrAuthNotEnabled", _C.FAILED_PRECONDITION, "etcdserver: authentication is not enabled"
)
ErrInvalidAuthToken = _err("ErrInvalidAuthToken", _C.UNAUTHENTICATED, "etcdserver: invalid auth token")
ErrInvalidAuthMgmt = _err("ErrInvalidAuthMgmt", _C.INVALID_ARGUMENT, "etcdserver: invalid auth management")
ErrAuthOldRevision = _err(
    "ErrAuthOldRevision", _C.INVALID_ARGUMENT, "etcdserver: revision of auth store is old"
)

# server state
ErrNoLeader = _err("ErrNoLeader", _C.UNAVAILABLE, "etcdserver: no leader")
ErrNotLeader = _err("ErrNotLeader", _C.FAILED_PRECONDITION, "etcdserver: not leader")
ErrLeaderChanged = _err("ErrLeaderChanged", _C.UNAVAILABLE, "etcdserver: leader changed")
ErrNotCapable = _err("ErrNotCapable", _C.UNAVAILABLE, "etcdserver: not capable")
ErrStopped = _err("ErrStopped", _C.UNAVAILABLE, "etcdserver: server stopped")
ErrTimeout = _err("ErrTimeout", _C.UNAVAILABLE, "etcdserver: request timed out")
ErrTimeoutDueToLeaderFail = _err(
    "ErrTimeoutDueToLeaderFail",
    _C.UNAVAILABLE,
    "etcdserver: request timed out, possibly due to previous leader failure",
)
ErrTimeoutDueToConnectionLost = _err(
    "ErrTimeoutDueToConnectionLost",
    _C.UNAVAILABLE,
    "etcdserver: request timed out, possibly due to connection lost",
)
ErrTimeoutWaitAppliedIndex = _err(
    "ErrTimeoutWaitAppliedIndex",
    _C.UNAVAILABLE,
    "etcdserver: request timed out, waiting for the applied index took too long",
)
ErrUnhealthy = _err("ErrUnhealthy", _C.UNAVAILABLE, "etcdserver: unhealthy cluster")
ErrCorrupt = _err("ErrCorrupt", _C.DATA_LOSS, "etcdserver: corrupt cluster")
ErrNotSupportedForLearner = _err(
    "ErrNotSupportedForLearner", _C.UNAVAILABLE, "etcdserver: rpc not supported for learner"
)
ErrBadLeaderTransferee = _err(
    "ErrBadLeaderTransferee", _C.FAILED_PRECONDITION, "etcdserver: bad leader transferee"
)
ErrCanceled = _err("ErrCanceled", _C.CANCELLED, "etcdserver: request canceled")
ErrDeadlineExceeded = _err(
    "ErrDeadlineExceeded", _C.DEADLINE_EXCEEDED, "etcdserver: context deadline exceeded"
)

# Concurrency recipes (etcd's v3lock and v3election services, and clientv3/concurrency).  etcd serves
# Lock and Election through an in-process client, so these, like every error there, go out as UNKNOWN.
ErrSessionExpired = _err("ErrSessionExpired", _C.UNKNOWN, "mutex: session is expired")
ErrElectionNotLeader = _err("ErrElectionNotLeader", _C.UNKNOWN, "election: not leader")
ErrElectionNoLeader = _err("ErrElectionNoLeader", _C.UNKNOWN, "election: no leader")
ErrMissingLeaderKey = _err("ErrMissingLeaderKey", _C.UNKNOWN, '"leader" field must be provided')
RECIPE_ERRORS = (ErrSessionExpired, ErrElectionNotLeader, ErrElectionNoLeader, ErrMissingLeaderKey)

_BY_MESSAGE: dict[str, type[EtcdError]] = {cls.message: cls for cls in ALL}


def from_status(code: grpc.StatusCode, message: str) -> EtcdError:
    """Map a received gRPC status to its table entry (or `UnknownEtcdError`)."""
    cls = _BY_MESSAGE.get(message)
    if cls is not None and cls.code == code:
        return cls()
    return UnknownEtcdError(code, message)
