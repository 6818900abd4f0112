"""Linearizability checker: histories that must be rejected, accepted, and generated ones."""

from __future__ import annotations

import math
import random
import types
from collections.abc import Hashable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import etcdpy.checker
from etcdpy.checker import (
    KV_MODEL,
    UNKNOWN,
    CallEvent,
    KvInput,
    KvOp,
    KvOperation,
    KvOutput,
    KvState,
    Model,
    Operation,
    Outcome,
    ReturnEvent,
    check_events,
    check_operations,
    operations_from_events,
)

# The KV model without partitioning: the same registers, searched as one object.
UNPARTITIONED_KV_MODEL: Model[KvState, KvInput, KvOutput] = Model(
    init=KV_MODEL.init,
    step=KV_MODEL.step,
    describe_operation=KV_MODEL.describe_operation,
    describe_state=KV_MODEL.describe_state,
)


def put(client: int, key: str, value: int, call: float, ret: float) -> KvOperation:
    return Operation(client, KvInput.put(key, value), KvOutput(), call, ret)


def get(client: int, key: str, seen: int | None, call: float, ret: float) -> KvOperation:
    return Operation(client, KvInput.get(key), KvOutput(seen), call, ret)


def cas(
    client: int, key: str, expected: int | None, value: int, ok: bool, call: float, ret: float
) -> KvOperation:
    return Operation(client, KvInput.cas(key, expected, value), KvOutput(ok=ok), call, ret)


def unknown_put(client: int, key: str, value: int, call: float) -> KvOperation:
    return Operation(client, KvInput.put(key, value), UNKNOWN, call, call)


def verdict(history: list[KvOperation]) -> Outcome:
    partitioned = check_operations(KV_MODEL, history).outcome
    # Partitioning by key must never change the verdict, only the cost.
    assert check_operations(UNPARTITIONED_KV_MODEL, history).outcome is partitioned
    return partitioned


class TestRejected:
    def test_stale_read_after_a_completed_write(self) -> None:
        history = [put(1, "x", 1, 0, 1), get(2, "x", None, 2, 3)]
        assert verdict(history) is Outcome.ILLEGAL

    def test_lost_write_read_back_overwritten_value(self) -> None:
        history = [put(1, "x", 1, 0, 1), put(1, "x", 2, 2, 3), get(2, "x", 1, 4, 5)]
        assert verdict(history) is Outcome.ILLEGAL

    def test_two_cas_from_the_same_value_both_succeed(self) -> None:
        history = [put(1, "x", 0, 0, 1), cas(2, "x", 0, 1, True, 2, 5), cas(3, "x", 0, 2, True, 3, 6)]
        assert verdict(history) is Outcome.ILLEGAL

    def test_read_of_a_value_never_written(self) -> None:
        history = [put(1, "x", 1, 0, 1), get(2, "x", 42, 0, 3)]
        assert verdict(history) is Outcome.ILLEGAL

    def test_reads_going_back_in_time_between_concurrent_writes(self) -> None:
        history = [
            put(1, "x", 1, 0, 10),
            put(2, "x", 2, 0, 10),
            get(3, "x", 1, 1, 2),
            get(3, "x", 2, 3, 4),
            get(3, "x", 1, 5, 6),
        ]
        assert verdict(history) is Outcome.ILLEGAL

    def test_unknown_write_cannot_take_effect_before_it_is_called(self) -> None:
        history = [get(1, "x", 7, 0, 1), unknown_put(2, "x", 7, 2)]
        assert verdict(history) is Outcome.ILLEGAL

    def test_unknown_write_cannot_be_undone_once_observed(self) -> None:
        history = [unknown_put(1, "x", 7, 0), get(2, "x", 7, 5, 6), get(2, "x", None, 7, 8)]
        assert verdict(history) is Outcome.ILLEGAL

    def test_failed_cas_while_the_expected_value_was_stable(self) -> None:
        history = [put(1, "x", 0, 0, 1), cas(2, "x", 0, 5, False, 2, 3), get(2, "x", 0, 4, 5)]
        assert verdict(history) is Outcome.ILLEGAL


class TestAccepted:
    def test_empty_history(self) -> None:
        assert verdict([]) is Outcome.OK

    def test_read_concurrent_with_a_write_sees_old_then_new(self) -> None:
        history = [put(1, "x", 1, 0, 10), get(2, "x", None, 1, 2), get(2, "x", 1, 3, 4)]
        assert verdict(history) is Outcome.OK

    @pytest.mark.parametrize("order", [(1, 2), (2, 1)])
    def test_concurrent_writes_in_either_order(self, order: tuple[int, int]) -> None:
        first, second = order
        history = [
            put(1, "x", 1, 0, 10),
            put(2, "x", 2, 0, 10),
            get(3, "x", first, 1, 2),
            get(3, "x", second, 3, 4),
            get(3, "x", second, 11, 12),
        ]
        assert verdict(history) is Outcome.OK

    def test_operations_that_touch_are_concurrent(self) -> None:
        history = [put(1, "x", 1, 0, 5), get(2, "x", None, 5, 6)]
        assert verdict(history) is Outcome.OK

    def test_unknown_write_that_took_effect(self) -> None:
        history = [unknown_put(1, "x", 7, 0), get(2, "x", 7, 5, 6)]
        assert verdict(history) is Outcome.OK

    def test_unknown_write_that_did_not_take_effect(self) -> None:
        history = [unknown_put(1, "x", 7, 0), get(2, "x", None, 5, 6), get(2, "x", None, 100, 101)]
        assert verdict(history) is Outcome.OK

    def test_unknown_write_taking_effect_long_after_the_client_gave_up(self) -> None:
        history = [unknown_put(1, "x", 7, 0), get(2, "x", None, 50, 51), get(2, "x", 7, 100, 101)]
        assert verdict(history) is Outcome.OK

    def test_unknown_cas_that_swapped(self) -> None:
        history = [
            put(1, "x", 0, 0, 1),
            Operation(2, KvInput.cas("x", 0, 9), UNKNOWN, 2, 3),
            get(3, "x", 9, 4, 5),
        ]
        assert verdict(history) is Outcome.OK

    def test_one_of_two_concurrent_cas_wins(self) -> None:
        history = [put(1, "x", 0, 0, 1), cas(2, "x", 0, 1, True, 2, 5), cas(3, "x", 0, 2, False, 3, 6)]
        assert verdict(history) is Outcome.OK

    def test_delete_makes_the_key_absent(self) -> None:
        history = [
            put(1, "x", 1, 0, 1),
            Operation(1, KvInput.delete("x"), KvOutput(), 2, 3),
            cas(1, "x", None, 4, True, 4, 5),
        ]
        assert verdict(history) is Outcome.OK


class TestPartitioning:
    def test_each_key_is_its_own_partition(self) -> None:
        history = [put(1, "a", 1, 0, 1), put(1, "b", 2, 2, 3), get(2, "a", 1, 4, 5), get(2, "b", 3, 6, 7)]
        result = check_operations(KV_MODEL, history)
        assert result.outcome is Outcome.ILLEGAL
        verdicts = {p.operations[0].input.key: p.outcome for p in result.partitions}
        assert verdicts == {"a": Outcome.OK, "b": Outcome.ILLEGAL}

    def test_unknown_reads_are_left_out(self) -> None:
        history = [put(1, "a", 1, 0, 1), Operation(2, KvInput.get("a"), UNKNOWN, 2, 3)]
        (partition,) = KV_MODEL.partition(history)
        assert [op.input.op for op in partition] == [KvOp.PUT]


class TestResult:
    def test_linearization_orders_every_operation_consistently_with_real_time(self) -> None:
        history = [put(1, "x", 1, 0, 10), get(2, "x", 1, 1, 2), get(3, "x", None, 0, 1)]
        (partition,) = check_operations(KV_MODEL, history).partitions
        assert partition.linearization == (2, 0, 1)

    def test_illegal_result_explains_where_the_search_got_stuck(self) -> None:
        history = [put(1, "x", 1, 0, 1), get(2, "x", None, 2, 3)]
        result = check_operations(KV_MODEL, history)
        (partition,) = result.partitions
        assert partition.partial_linearizations == ((0,),)
        explanation = result.explain(KV_MODEL)
        assert "put('x', 1) = ok -> {'x': 1}" in explanation
        assert "get('x') = None (rejected)" in explanation

    def test_timeout_gives_unknown_and_no_timeout_decides(self) -> None:
        # Ten concurrent writes and an impossible read: every subset and order is explored.
        history = [put(i, "x", i, 0, 10) for i in range(10)] + [get(10, "x", 99, 11, 12)]
        assert check_operations(KV_MODEL, history, timeout=0).outcome is Outcome.UNKNOWN
        assert check_operations(KV_MODEL, history).outcome is Outcome.ILLEGAL


class TestHistoryForms:
    def test_events_pair_calls_with_returns_and_unreturned_calls_are_unknown(self) -> None:
        events: list[CallEvent[KvInput] | ReturnEvent[KvOutput]] = [
            CallEvent(1, 0, KvInput.put("x", 1)),
            CallEvent(2, 1, KvInput.put("x", 2)),
            ReturnEvent(0, KvOutput()),
            CallEvent(3, 2, KvInput.get("x")),
            ReturnEvent(2, KvOutput(2)),
        ]
        ops = operations_from_events(events)
        assert [(op.call_time, op.return_time) for op in ops] == [(0, 2), (1, math.inf), (3, 4)]
        assert ops[1].output is UNKNOWN
        assert check_events(KV_MODEL, events).ok

    def test_events_reading_a_value_before_its_write_is_called_are_rejected(self) -> None:
        events: list[CallEvent[KvInput] | ReturnEvent[KvOutput]] = [
            CallEvent(3, 2, KvInput.get("x")),
            ReturnEvent(2, KvOutput(2)),
            CallEvent(2, 1, KvInput.put("x", 2)),
        ]
        assert check_events(KV_MODEL, events).outcome is Outcome.ILLEGAL

    @pytest.mark.parametrize(
        "events",
        [
            [ReturnEvent(0, KvOutput())],
            [CallEvent(1, 0, KvInput.get("x")), CallEvent(1, 0, KvInput.get("x"))],
            [CallEvent(1, 0, KvInput.get("x")), ReturnEvent(0, KvOutput()), ReturnEvent(0, KvOutput())],
        ],
        ids=["return-before-call", "called-twice", "returned-twice"],
    )
    def test_malformed_event_lists_are_refused(
        self, events: list[CallEvent[KvInput] | ReturnEvent[KvOutput]]
    ) -> None:
        with pytest.raises(ValueError):
            operations_from_events(events)

    def test_operation_returning_before_its_call_is_refused(self) -> None:
        with pytest.raises(ValueError):
            put(1, "x", 1, 5, 4)

    def test_unknown_outcome_returns_at_infinity(self) -> None:
        assert unknown_put(1, "x", 1, 3).return_time == math.inf


def test_public_api_is_exactly_what_all_lists() -> None:
    public = {
        name
        for name, value in vars(etcdpy.checker).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(etcdpy.checker.__all__)


# --- generated histories -------------------------------------------------------------------------

KEYS = ("a", "b", "c")


@st.composite
def sequential_register_histories(draw: st.DrawFn) -> list[KvOperation]:
    """A history recorded from a sequential KV store: op i takes effect at time i, within [call, return].

    Written values are unique, so a changed read is detectable.  Some operations
    lose their outcome; such a write takes effect or not, at random.
    """
    count = draw(st.integers(0, 24))
    store: dict[Hashable, Hashable] = {}
    history: list[KvOperation] = []
    for i in range(count):
        key = draw(st.sampled_from(KEYS))
        kind = draw(st.sampled_from([KvOp.GET, KvOp.PUT, KvOp.CAS, KvOp.DELETE]))
        call = i - draw(st.floats(0, 4))
        ret = i + draw(st.floats(0, 4))
        unknown = draw(st.integers(0, 9)) == 0
        takes_effect = not unknown or draw(st.booleans())
        current = store.get(key)
        output: KvOutput
        if kind is KvOp.GET:
            request, output = KvInput.get(key), KvOutput(current)
        elif kind is KvOp.PUT:
            request, output = KvInput.put(key, i), KvOutput()
        elif kind is KvOp.DELETE:
            request, output = KvInput.delete(key), KvOutput()
        else:
            written = [v for v in store.values()] + [None]
            expected = draw(st.sampled_from(written))
            request, output = KvInput.cas(key, expected, i), KvOutput(ok=expected == current)
        if takes_effect and kind is not KvOp.GET:
            _, state = KV_MODEL.step(tuple(store.items()), request, output)
            store = dict(state)
        history.append(Operation(i % 4, request, UNKNOWN if unknown else output, call, ret))
    return history


@settings(max_examples=150, deadline=None)
@given(sequential_register_histories())
def test_histories_of_a_sequential_register_are_accepted(history: list[KvOperation]) -> None:
    result = check_operations(KV_MODEL, history)
    assert result.ok, result.explain(KV_MODEL)


@settings(max_examples=100, deadline=None)
@given(sequential_register_histories(), st.data())
def test_a_read_of_a_value_never_written_is_rejected(history: list[KvOperation], data: st.DataObject) -> None:
    reads = [i for i, op in enumerate(history) if op.input.op is KvOp.GET and op.outcome_known]
    if not reads:
        history = [*history, get(9, "a", None, len(history), len(history))]
        reads = [len(history) - 1]
    victim = history[data.draw(st.sampled_from(reads))]
    forged = Operation(victim.client_id, victim.input, KvOutput(-1), victim.call_time, victim.return_time)
    mutated = [forged if op is victim else op for op in history]
    assert check_operations(KV_MODEL, mutated).outcome is Outcome.ILLEGAL


def test_long_concurrent_history_is_decided_within_its_timeout() -> None:
    """2,000 operations of 8 concurrent clients on 4 keys, 1% of unknown outcome, are decided OK."""
    rng = random.Random(7)
    store: dict[Hashable, Hashable] = {}
    free_at = dict.fromkeys(range(8), -1.0)  # client -> when its previous answer came
    fresh_clients = iter(range(8, 10_000))
    history: list[KvOperation] = []
    for i in range(2000):
        idle = [c for c, t in free_at.items() if t < i]
        if not idle:
            continue
        client = rng.choice(idle)
        key = rng.choice("abcd")
        call, ret = max(free_at[client], i - rng.uniform(0, 6)), i + rng.uniform(0, 6)
        if rng.random() < 0.5:
            request, output = KvInput.get(key), KvOutput(store.get(key))
        else:
            request, output = KvInput.put(key, i), KvOutput()
            store[key] = i
        if rng.random() < 0.01:
            # As in Jepsen, a client that lost an answer is replaced by a fresh one.
            history.append(Operation(client, request, UNKNOWN, call, ret))
            del free_at[client]
            free_at[next(fresh_clients)] = ret
        else:
            history.append(Operation(client, request, output, call, ret))
            free_at[client] = ret
    assert len(history) > 1500
    result = check_operations(KV_MODEL, history, timeout=60)
    assert result.outcome is Outcome.OK, result.explain(KV_MODEL)


def test_the_package_docstring_example_runs() -> None:
    doc = etcdpy.checker.__doc__
    assert doc is not None
    example = "\n".join(line[4:] for line in doc.splitlines() if line.startswith("    "))
    assert "check_operations" in example
    exec(example, dict(vars(etcdpy.checker)))
