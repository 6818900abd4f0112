"""KV model: independent registers, one per key, with get, put, delete and compare-and-set.

A key's value is any hashable value, or None when the key is absent (never
written, or deleted).  `cas(key, expected, value)` sets the key to `value` iff
its current value equals `expected` (None: "the key is absent", i.e. create).
Histories are partitioned by key, so every register is checked on its own.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from etcdpy.checker.history import UNKNOWN, Operation, Unknown
from etcdpy.checker.model import Model

# State of the KV object: the (key, value) pairs of present keys, sorted by key.
# After partitioning by key a state holds at most one pair, so lookups are cheap.
KvState = tuple[tuple[Hashable, Hashable], ...]


class KvOp(enum.Enum):
    """KvOp is the kind of a register request."""

    GET = "get"
    PUT = "put"
    DELETE = "delete"
    CAS = "cas"


@dataclass(frozen=True, slots=True)
class KvInput:
    """KvInput is one register request; build it with `get`, `put`, `delete` or `cas`."""

    op: KvOp
    key: Hashable
    value: Hashable | None = None  # put: the value written; cas: the value written on success
    expected: Hashable | None = None  # cas: the value required (None: the key is absent)

    @classmethod
    def get(cls, key: Hashable) -> KvInput:
        """Get reads the key's value."""
        return cls(KvOp.GET, key)

    @classmethod
    def put(cls, key: Hashable, value: Hashable) -> KvInput:
        """Put writes the key's value."""
        return cls(KvOp.PUT, key, value)

    @classmethod
    def delete(cls, key: Hashable) -> KvInput:
        """Delete makes the key absent."""
        return cls(KvOp.DELETE, key)

    @classmethod
    def cas(cls, key: Hashable, expected: Hashable | None, value: Hashable) -> KvInput:
        """Cas writes `value` iff the key's value equals `expected` (None: absent)."""
        return cls(KvOp.CAS, key, value, expected)


@dataclass(frozen=True, slots=True)
class KvOutput:
    """KvOutput is a register response: the value read (get) or whether the swap happened (cas).

    Put and delete answer `KvOutput()`.
    """

    value: Hashable | None = None  # get: the value read (None: absent)
    ok: bool = True  # cas: whether the value was swapped


KvOperation = Operation[KvInput, KvOutput]
"""KvOperation is an operation on the KV model."""


def _lookup(state: KvState, key: Hashable) -> Hashable | None:
    for k, v in state:
        if k == key:
            return v
    return None


def _assign(state: KvState, key: Hashable, value: Hashable | None) -> KvState:
    kept = [(k, v) for k, v in state if k != key]
    if value is not None:
        kept.append((key, value))
    return tuple(sorted(kept, key=repr))


def _kv_init() -> KvState:
    return ()


def _kv_step(state: KvState, request: KvInput, response: KvOutput | Unknown) -> tuple[bool, KvState]:
    current = _lookup(state, request.key)
    if request.op is KvOp.GET:
        return response is UNKNOWN or response.value == current, state
    if request.op is KvOp.PUT:
        return True, _assign(state, request.key, request.value)
    if request.op is KvOp.DELETE:
        return True, _assign(state, request.key, None)
    swapped = current == request.expected
    after = _assign(state, request.key, request.value) if swapped else state
    return response is UNKNOWN or response.ok == swapped, after


def _kv_partition(history: Sequence[KvOperation]) -> list[list[KvOperation]]:
    by_key: dict[Hashable, list[KvOperation]] = {}
    for op in history:
        # A read whose answer never arrived changes nothing and fits anywhere: leave it out.
        if op.input.op is KvOp.GET and op.output is UNKNOWN:
            continue
        by_key.setdefault(op.input.key, []).append(op)
    return list(by_key.values())


def _kv_describe_operation(request: KvInput, response: KvOutput | Unknown) -> str:
    if request.op is KvOp.GET:
        call = f"get({request.key!r})"
        result = "?" if response is UNKNOWN else repr(response.value)
    elif request.op is KvOp.PUT:
        call = f"put({request.key!r}, {request.value!r})"
        result = "?" if response is UNKNOWN else "ok"
    elif request.op is KvOp.DELETE:
        call = f"delete({request.key!r})"
        result = "?" if response is UNKNOWN else "ok"
    else:
        call = f"cas({request.key!r}, {request.expected!r} -> {request.value!r})"
        result = "?" if response is UNKNOWN else ("swapped" if response.ok else "failed")
    return f"{call} = {result}"


def _kv_describe_state(state: KvState) -> str:
    return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in state) + "}"


KV_MODEL: Model[KvState, KvInput, KvOutput] = Model(
    init=_kv_init,
    step=_kv_step,
    partition=_kv_partition,
    describe_operation=_kv_describe_operation,
    describe_state=_kv_describe_state,
)
"""KV_MODEL is the model of a key-value store of independent registers, partitioned by key."""
