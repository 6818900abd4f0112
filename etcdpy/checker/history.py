"""History: the operations clients invoked, what they observed, and when.

A history is what a test records while clients talk to a system: for every
request, the client that issued it, its input, its output, the time it was
called and the time its response arrived.  Times only need to be comparable
(wall-clock seconds, simulated steps, positions in an event list).

Some requests never complete from the client's point of view: the connection
dropped, the server crashed, the client gave up.  Such an operation's output is
`UNKNOWN`: it may or may not have taken effect, at any moment after it was
called, so it is checked as if it returned at +infinity with an output that
matches whatever the model computes (Jepsen's "info" operations).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - the conventional name for an operation's input type
O = TypeVar("O")  # noqa: E741 - the conventional name for an operation's output type


class Unknown(enum.Enum):
    """Unknown is the type of `UNKNOWN`, the output of an operation whose outcome was never learned."""

    UNKNOWN = "unknown"

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = Unknown.UNKNOWN


@dataclass(frozen=True, slots=True)
class Operation(Generic[I, O]):
    """Operation is one client request: what was asked, what was observed, when it started and ended.

    An operation with output `UNKNOWN` may take effect at any point after
    `call_time`; its `return_time` is therefore taken to be +infinity whatever
    value is passed (pass the time the client gave up, for the record: it is
    replaced by `math.inf`).
    """

    client_id: int
    input: I
    output: O | Unknown
    call_time: float
    return_time: float  # >= call_time; inf when output is UNKNOWN (both enforced in __post_init__)

    def __post_init__(self) -> None:
        if self.output is UNKNOWN:
            object.__setattr__(self, "return_time", math.inf)
        if not self.call_time <= self.return_time:
            raise ValueError(f"operation returns before it is called: {self!r}")

    @property
    def outcome_known(self) -> bool:
        """Outcome_known tells whether the client learned the operation's result."""
        return self.output is not UNKNOWN


@dataclass(frozen=True, slots=True)
class CallEvent(Generic[I]):
    """CallEvent records that client `client_id` invoked operation `op_id` with `input`."""

    client_id: int
    op_id: int
    input: I


@dataclass(frozen=True, slots=True)
class ReturnEvent(Generic[O]):
    """ReturnEvent records that operation `op_id` completed with `output` (which may be UNKNOWN)."""

    op_id: int
    output: O | Unknown


def operations_from_events(events: Iterable[CallEvent[I] | ReturnEvent[O]]) -> list[Operation[I, O]]:
    """Operations_from_events turns a totally ordered list of call/return events into operations.

    An event's position in the list is its time.  A call with no matching
    return is an operation of unknown outcome.  Each `op_id` must be called
    exactly once, and returned at most once, after its call.
    """
    calls: dict[int, tuple[int, CallEvent[I]]] = {}
    returns: dict[int, tuple[int, ReturnEvent[O]]] = {}
    for position, event in enumerate(events):
        if isinstance(event, CallEvent):
            if event.op_id in calls:
                raise ValueError(f"operation {event.op_id} is called twice")
            calls[event.op_id] = (position, event)
        else:
            if event.op_id not in calls:
                raise ValueError(f"operation {event.op_id} returns before it is called")
            if event.op_id in returns:
                raise ValueError(f"operation {event.op_id} returns twice")
            returns[event.op_id] = (position, event)
    operations: list[Operation[I, O]] = []
    for op_id, (call_time, call) in calls.items():
        returned = returns.get(op_id)
        output: O | Unknown = UNKNOWN if returned is None else returned[1].output
        return_time = math.inf if returned is None else float(returned[0])
        operations.append(Operation(call.client_id, call.input, output, float(call_time), return_time))
    return operations
