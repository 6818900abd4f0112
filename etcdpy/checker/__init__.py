"""Linearizability checking of recorded client histories (Porcupine-style).

Record what clients did as `Operation`s (or as `CallEvent`/`ReturnEvent`
lists), pick a `Model` (for a key-value store: `KV_MODEL`), and call
`check_operations`:

    history = [
        Operation(client_id=1, input=KvInput.put("x", 1), output=KvOutput(), call_time=0, return_time=2),
        Operation(client_id=2, input=KvInput.get("x"), output=KvOutput(1), call_time=1, return_time=3),
    ]
    result = check_operations(KV_MODEL, history, timeout=10)
    assert result.ok, result.explain(KV_MODEL)

Operations whose outcome the client never learned take `UNKNOWN` as output.
While clients run against a real cluster, a `Recorder` collects the history.

Watch streams are checked against etcd's watch guarantees (ordered, unique,
reliable, atomic, bookmarkable, prev_kv, filters, resumable) by
`check_watches` over a `StoreHistory` and `WatcherRecord`s; see
`etcdpy.checker.watch`.
"""

from etcdpy.checker.history import (
    UNKNOWN,
    CallEvent,
    Operation,
    ReturnEvent,
    Unknown,
    operations_from_events,
)
from etcdpy.checker.kv import KV_MODEL, KvInput, KvOp, KvOperation, KvOutput, KvState
from etcdpy.checker.linearizability import (
    CheckResult,
    Outcome,
    PartitionResult,
    check_events,
    check_operations,
)
from etcdpy.checker.model import Model
from etcdpy.checker.recorder import Recorder
from etcdpy.checker.watch import (
    COMPACTED_REASON,
    CommittedWrite,
    Delete,
    Guarantee,
    KeyRange,
    Put,
    StoreHistory,
    Violation,
    WatchCheckOptions,
    WatchCheckResult,
    WatcherId,
    WatcherRecord,
    check_resumed_chain,
    check_watches,
    history_from_writes,
)

__all__ = [
    "COMPACTED_REASON",
    "KV_MODEL",
    "UNKNOWN",
    "CallEvent",
    "CheckResult",
    "CommittedWrite",
    "Delete",
    "Guarantee",
    "KeyRange",
    "KvInput",
    "KvOp",
    "KvOperation",
    "KvOutput",
    "KvState",
    "Model",
    "Operation",
    "Outcome",
    "PartitionResult",
    "Put",
    "Recorder",
    "ReturnEvent",
    "StoreHistory",
    "Unknown",
    "Violation",
    "WatchCheckOptions",
    "WatchCheckResult",
    "WatcherId",
    "WatcherRecord",
    "check_events",
    "check_operations",
    "check_resumed_chain",
    "check_watches",
    "history_from_writes",
    "operations_from_events",
]
