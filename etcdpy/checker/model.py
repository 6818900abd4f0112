"""Model: the sequential specification a concurrent history is checked against."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from etcdpy.checker.history import Operation, Unknown

S = TypeVar("S", bound=Hashable)
I = TypeVar("I")  # noqa: E741 - the conventional name for an operation's input type
O = TypeVar("O")  # noqa: E741 - the conventional name for an operation's output type


def whole_history(history: Sequence[Operation[I, O]]) -> list[list[Operation[I, O]]]:
    """Whole_history is the default partition: the history checked as one piece."""
    return [list(history)]


def describe_call(input: object, output: object) -> str:
    """Describe_call is the default description of an operation: its input and output."""
    return f"{input!r} -> {output!r}"


@dataclass(frozen=True)
class Model(Generic[S, I, O]):
    """Model is a sequential object: an initial state and a step function over immutable states.

    `step(state, input, output)` answers whether the object, in `state`, can
    answer `input` with `output`, and the state after doing so.  When `output`
    is `UNKNOWN` the step must accept (the client never saw a result) and
    return the state the operation would leave.  States must be hashable and
    compare equal exactly when they are the same object state: the checker
    memoizes on them.

    `partition` splits a history into independent sub-histories (for example
    one per key) that are checked separately; it is sound only if the object
    is a product of independent objects, one per part (linearizability is
    compositional: Herlihy & Wing, 1990).
    """

    init: Callable[[], S]
    step: Callable[[S, I, O | Unknown], tuple[bool, S]]
    partition: Callable[[Sequence[Operation[I, O]]], list[list[Operation[I, O]]]] = field(
        default=whole_history
    )
    describe_operation: Callable[[I, O | Unknown], str] = field(default=describe_call)
    describe_state: Callable[[S], str] = field(default=repr)
