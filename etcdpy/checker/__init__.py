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

__all__ = [
    "KV_MODEL",
    "UNKNOWN",
    "CallEvent",
    "CheckResult",
    "KvInput",
    "KvOp",
    "KvOperation",
    "KvOutput",
    "KvState",
    "Model",
    "Operation",
    "Outcome",
    "PartitionResult",
    "Recorder",
    "ReturnEvent",
    "Unknown",
    "check_events",
    "check_operations",
    "operations_from_events",
]
