"""The safety monitor flags each broken guarantee (fed by hand, without a cluster)."""

from __future__ import annotations

import pytest

from etcdpy.api.raftpb import raft_pb2 as pb

from .invariants import SafetyMonitor, SafetyViolation


def entry(index: int, term: int, data: bytes = b"x") -> pb.Entry:
    return pb.Entry(index=index, term=term, data=data)


def log_of(*terms: int) -> dict[int, int]:
    """A log as index -> term, with the bootstrap entry at index 1 of term 1."""
    return {1: 1} | {i: t for i, t in enumerate(terms, start=2)}


def monitor_with_applied(node: int, *entries: pb.Entry, node_term: int = 1) -> SafetyMonitor:
    monitor = SafetyMonitor()
    monitor.observe_restart(node, 1, 1)
    for e in entries:
        monitor.observe_apply(node, e, node_term, ("digest", e.index))
    return monitor


def test_two_leaders_in_one_term() -> None:
    monitor = SafetyMonitor()
    monitor.observe_leader(1, 2, log_of().get)
    monitor.observe_leader(1, 2, log_of().get)
    monitor.observe_leader(2, 3, log_of().get)
    with pytest.raises(SafetyViolation, match="election safety"):
        monitor.observe_leader(3, 2, log_of().get)


def test_same_index_and_term_with_different_commands() -> None:
    monitor = SafetyMonitor()
    monitor.observe_append(1, [entry(2, 1, b"a")], log_of(1).get)
    monitor.observe_append(2, [entry(2, 1, b"a")], log_of(1).get)
    with pytest.raises(SafetyViolation, match="log matching"):
        monitor.observe_append(3, [entry(2, 1, b"b")], log_of(1).get)


def test_same_index_and_term_after_different_prefixes() -> None:
    monitor = SafetyMonitor()
    monitor.observe_append(1, [entry(3, 2)], log_of(1, 2).get)
    with pytest.raises(SafetyViolation, match="log matching"):
        monitor.observe_append(2, [entry(3, 2)], log_of(2, 2).get)


def test_leader_of_a_later_term_lacking_a_committed_entry() -> None:
    monitor = monitor_with_applied(1, entry(2, 2), node_term=2)
    monitor.observe_leader(2, 2, log_of().get)  # a leader of the same term may be stale
    monitor.observe_leader(3, 3, log_of(2).get)  # holds it
    with pytest.raises(SafetyViolation, match="leader completeness"):
        monitor.observe_leader(4, 4, log_of(3).get)


def test_leader_of_a_later_term_lacking_an_acknowledged_write() -> None:
    monitor = SafetyMonitor()
    monitor.acknowledged(2, 2, seen_in_term=2)
    monitor.observe_leader(1, 3, log_of(2).get)
    with pytest.raises(SafetyViolation, match="acknowledged write lost"):
        monitor.observe_leader(2, 4, log_of().get)


def test_two_nodes_applying_different_entries_at_one_index() -> None:
    monitor = monitor_with_applied(1, entry(2, 1, b"a"))
    monitor.observe_restart(2, 1, 1)
    with pytest.raises(SafetyViolation, match="state machine safety"):
        monitor.observe_apply(2, entry(2, 1, b"b"), 1, ("digest", 2))


def test_two_stores_differing_at_one_index() -> None:
    monitor = monitor_with_applied(1, entry(2, 1))
    monitor.observe_restart(2, 1, 1)
    with pytest.raises(SafetyViolation, match="store at index 2"):
        monitor.observe_apply(2, entry(2, 1), 1, ("another digest", 2))


def test_snapshot_disagreeing_with_the_applied_store() -> None:
    monitor = monitor_with_applied(1, entry(2, 1))
    monitor.observe_restart(2, 0, 0)
    with pytest.raises(SafetyViolation, match="store at index 2"):
        monitor.observe_snapshot_restore(2, 2, 1, ("another digest", 2))


def test_applying_with_a_gap() -> None:
    monitor = monitor_with_applied(1, entry(2, 1))
    with pytest.raises(SafetyViolation, match="applies entry 4 right after 2"):
        monitor.observe_apply(1, entry(4, 1), 1, ("digest", 4))


def test_commit_index_going_back() -> None:
    monitor = SafetyMonitor()
    monitor.observe_commit(1, 5)
    with pytest.raises(SafetyViolation, match="went back from 5 to 4"):
        monitor.observe_commit(1, 4)


def test_restart_below_what_was_durably_applied() -> None:
    monitor = monitor_with_applied(1, entry(2, 1), entry(3, 1))
    monitor.observe_durable(1, 3)
    monitor.observe_restart(1, 3, 3)
    with pytest.raises(SafetyViolation, match="below its durable 3"):
        monitor.observe_restart(1, 2, 3)
