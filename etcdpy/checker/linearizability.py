"""Linearizability checking in the style of Porcupine.

The search is Wing & Gong's (1993) with Lowe's (2017) memoization, as in
Porcupine (Athalye, 2017):

* every operation becomes two entries, a call and a return, in one doubly
  linked list sorted by time (calls before returns on equal times, so
  operations that touch are treated as concurrent);
* walking the list from its head, a call entry is a candidate to take effect
  next; if the model accepts it from the current state, it is "lifted" out of
  the list (with its return) and the walk restarts from the head;
* reaching a return entry means that operation should already have taken
  effect: undo the last choice ("unlift" it) and try the next candidate;
* a cache of (set of linearized operations, state) pairs prunes every branch
  that reaches a configuration already explored: the future only depends on
  that pair.

A history is split by the model's `partition` first; each part is checked on
its own, and the history is linearizable exactly when every part is.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from etcdpy.checker.history import CallEvent, Operation, ReturnEvent, operations_from_events
from etcdpy.checker.model import Model

S = TypeVar("S", bound=Hashable)
I = TypeVar("I")  # noqa: E741 - the conventional name for an operation's input type
O = TypeVar("O")  # noqa: E741 - the conventional name for an operation's output type

# The deadline is consulted once every this many search steps: often enough to
# stop promptly, rarely enough not to slow the search down.
_DEADLINE_CHECK_INTERVAL = 1024

# Only this many distinct longest partial linearizations are kept for the explanation.
_MAX_PARTIALS = 3


class Outcome(enum.Enum):
    """Outcome is the verdict on a history."""

    OK = "ok"  # linearizable
    ILLEGAL = "illegal"  # not linearizable
    UNKNOWN = "unknown"  # the timeout expired before a verdict


@dataclass(frozen=True)
class PartitionResult(Generic[S, I, O]):
    """PartitionResult is the verdict on one part of a history, with the evidence for it.

    `linearization` (when OK) lists indexes into `operations` in the order
    they took effect.  `partial_linearizations` (when ILLEGAL or UNKNOWN) are
    the longest prefixes of a linearization the search found, longest first:
    the history goes wrong right after one of them.
    """

    outcome: Outcome
    operations: tuple[Operation[I, O], ...]
    linearization: tuple[int, ...] | None
    partial_linearizations: tuple[tuple[int, ...], ...]

    def explain(self, model: Model[S, I, O]) -> str:
        """Explain renders the evidence: the linearization found, or where every attempt got stuck."""
        if self.linearization is not None:
            return "linearizable:\n" + _render_sequence(model, self.operations, self.linearization)
        lines = [f"{self.outcome.value}: {len(self.operations)} operations"]
        for partial in self.partial_linearizations or ((),):
            lines.append(f"longest partial linearization ({len(partial)} operations):")
            lines.append(_render_sequence(model, self.operations, partial))
            lines.append(_render_stuck(model, self.operations, partial))
        return "\n".join(lines)


@dataclass(frozen=True)
class CheckResult(Generic[S, I, O]):
    """CheckResult is the verdict on a whole history: ILLEGAL if any part is, else UNKNOWN if any part is."""

    outcome: Outcome
    partitions: tuple[PartitionResult[S, I, O], ...]

    @property
    def ok(self) -> bool:
        """Ok tells whether the history was proven linearizable."""
        return self.outcome is Outcome.OK

    def explain(self, model: Model[S, I, O]) -> str:
        """Explain renders the evidence for the parts that are not linearizable (or not decided)."""
        failed = [p for p in self.partitions if p.outcome is not Outcome.OK]
        if not failed:
            return f"linearizable ({len(self.partitions)} partitions)"
        return "\n\n".join(p.explain(model) for p in failed)


def check_operations(
    model: Model[S, I, O], history: Sequence[Operation[I, O]], timeout: float | None = None
) -> CheckResult[S, I, O]:
    """Check_operations decides whether `history` is linearizable with respect to `model`.

    `timeout` (seconds, wall clock) bounds the whole check; when it expires the
    outcome is UNKNOWN unless some part was already found ILLEGAL.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    results = [_check_part(model, part, deadline) for part in model.partition(history)]
    outcomes = {r.outcome for r in results}
    if Outcome.ILLEGAL in outcomes:
        outcome = Outcome.ILLEGAL
    elif Outcome.UNKNOWN in outcomes:
        outcome = Outcome.UNKNOWN
    else:
        outcome = Outcome.OK
    return CheckResult(outcome, tuple(results))


def check_events(
    model: Model[S, I, O],
    events: Iterable[CallEvent[I] | ReturnEvent[O]],
    timeout: float | None = None,
) -> CheckResult[S, I, O]:
    """Check_events is `check_operations` for a history given as a list of call/return events."""
    return check_operations(model, operations_from_events(events), timeout)


class _EntryList:
    """_EntryList is the time-ordered list of call and return entries, linked through index arrays.

    Entry 0 is the head sentinel; entries 1..2n are the events.  `-1` ends the list.
    A call entry precedes its return entry (asserted when the list is built), and both
    are in the list or neither is: `lift` and `unlift` move them together (not
    asserted there: they run at every step of the search).
    """

    __slots__ = ("match", "next", "operation", "prev")

    def __init__(self, operations: Sequence[Operation[I, O]]) -> None:
        events: list[tuple[float, int, int]] = []
        for index, op in enumerate(operations):
            events.append((op.call_time, 0, index))
            events.append((op.return_time, 1, index))
        events.sort()
        size = len(events) + 1
        self.next = [*range(1, size), -1]
        self.prev = list(range(-1, size - 1))
        self.operation = [-1] + [index for _, _, index in events]
        # match[e] is the return entry of call entry e, and -1 for return entries.
        self.match = [-1] * size
        return_entry = {index: entry for entry, (_, kind, index) in enumerate(events, 1) if kind == 1}
        for entry, (_, kind, index) in enumerate(events, 1):
            if kind == 0:
                self.match[entry] = return_entry[index]
                assert self.match[entry] > entry, f"operation {index} returns before its call"

    def lift(self, call: int) -> None:
        """Lift removes call entry `call` and its return entry from the list."""
        nxt, prev = self.next, self.prev
        for entry in (call, self.match[call]):
            nxt[prev[entry]] = nxt[entry]
            if nxt[entry] != -1:
                prev[nxt[entry]] = prev[entry]

    def unlift(self, call: int) -> None:
        """Unlift puts back what `lift(call)` removed, in reverse order (dancing links)."""
        nxt, prev = self.next, self.prev
        for entry in (self.match[call], call):
            nxt[prev[entry]] = entry
            if nxt[entry] != -1:
                prev[nxt[entry]] = entry


def _check_part(
    model: Model[S, I, O], operations: Sequence[Operation[I, O]], deadline: float | None
) -> PartitionResult[S, I, O]:
    """_check_part runs the memoized Wing & Gong search over one part of a history."""
    ops = tuple(operations)
    entries = _EntryList(ops)
    nxt, match, operation_of = entries.next, entries.match, entries.operation
    step = model.step
    state = model.init()
    linearized = 0  # bitset over operation indexes
    cache: set[tuple[int, S]] = {(linearized, state)}
    calls: list[tuple[int, S]] = []  # the current partial linearization: (call entry, state before it)
    longest: dict[int, tuple[int, ...]] = {}  # op -> longest partial linearization seen containing it
    iterations = 0
    entry = nxt[0]
    while nxt[0] != -1:
        iterations += 1
        if (
            deadline is not None
            and iterations % _DEADLINE_CHECK_INTERVAL == 0
            and time.monotonic() > deadline
        ):
            _record_longest(longest, calls, operation_of)
            return PartitionResult(Outcome.UNKNOWN, ops, None, _best_partials(longest))
        if match[entry] != -1:
            index = operation_of[entry]
            op = ops[index]
            accepted, new_state = step(state, op.input, op.output)
            if accepted:
                new_linearized = linearized | (1 << index)
                if (new_linearized, new_state) not in cache:
                    cache.add((new_linearized, new_state))
                    calls.append((entry, state))
                    state, linearized = new_state, new_linearized
                    entries.lift(entry)
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
        else:
            # A return entry: its operation has not taken effect yet, so this branch is dead.
            if not calls:
                return PartitionResult(Outcome.ILLEGAL, ops, None, _best_partials(longest))
            _record_longest(longest, calls, operation_of)
            entry, state = calls.pop()
            linearized &= ~(1 << operation_of[entry])
            entries.unlift(entry)
            entry = nxt[entry]
    order = tuple(operation_of[call] for call, _ in calls)
    return PartitionResult(Outcome.OK, ops, order, ())


def _record_longest(
    longest: dict[int, tuple[int, ...]], calls: list[tuple[int, S]], operation_of: list[int]
) -> None:
    sequence: tuple[int, ...] | None = None
    for call, _ in calls:
        index = operation_of[call]
        known = longest.get(index)
        if known is None or len(calls) > len(known):
            if sequence is None:
                sequence = tuple(operation_of[c] for c, _ in calls)
            longest[index] = sequence


def _best_partials(longest: dict[int, tuple[int, ...]]) -> tuple[tuple[int, ...], ...]:
    distinct = sorted(set(longest.values()), key=lambda seq: (-len(seq), seq))
    return tuple(distinct[:_MAX_PARTIALS])


def _replay(model: Model[S, I, O], operations: Sequence[Operation[I, O]], order: Sequence[int]) -> list[S]:
    """_replay returns the state after each operation of `order`, starting from the initial state."""
    states = [model.init()]
    for index in order:
        _, state = model.step(states[-1], operations[index].input, operations[index].output)
        states.append(state)
    return states


def _render_sequence(
    model: Model[S, I, O], operations: Sequence[Operation[I, O]], order: Sequence[int]
) -> str:
    states = _replay(model, operations, order)
    lines = [f"  initial state {model.describe_state(states[0])}"]
    for index, state in zip(order, states[1:], strict=True):
        lines.append(_render_operation(model, operations[index], f"-> {model.describe_state(state)}"))
    return "\n".join(lines)


def _render_stuck(model: Model[S, I, O], operations: Sequence[Operation[I, O]], order: Sequence[int]) -> str:
    """_render_stuck lists the operations that could come next after `order`, and why none fits."""
    state = _replay(model, operations, order)[-1]
    done = set(order)
    pending = [i for i in range(len(operations)) if i not in done]
    if not pending:
        return "  (nothing left to linearize)"
    deadline = min(operations[i].return_time for i in pending)
    candidates = [i for i in pending if operations[i].call_time <= deadline]
    lines = [f"  then none of these fits state {model.describe_state(state)}:"]
    for index in candidates:
        accepted, _ = model.step(state, operations[index].input, operations[index].output)
        verdict = "(fits, but no linearization continues from there)" if accepted else "(rejected)"
        lines.append(_render_operation(model, operations[index], verdict))
    return "\n".join(lines)


def _render_operation(model: Model[S, I, O], op: Operation[I, O], suffix: str) -> str:
    returned = "?" if math.isinf(op.return_time) else f"{op.return_time:g}"
    described = model.describe_operation(op.input, op.output)
    return f"    client {op.client_id} [{op.call_time:g}, {returned}] {described} {suffix}"


__all__ = ["CheckResult", "Outcome", "PartitionResult", "check_events", "check_operations"]
