"""Seeded simulations of raft clusters: safety invariants at every step, linearizable client histories."""

from __future__ import annotations

from collections import Counter

import pytest

from .runner import SimulationFailure, run_seed


def test_sweep(seed_chunk: range, sim_steps: int) -> None:
    """Every seed keeps every safety invariant and yields a linearizable client history."""
    failures: list[SimulationFailure] = []
    for seed in seed_chunk:
        try:
            run_seed(seed, sim_steps)
        except SimulationFailure as failure:
            failures.append(failure)
    if failures:
        seeds = ", ".join(str(f.seed) for f in failures)
        pytest.fail(f"{len(failures)} failing seeds ({seeds}); the first:\n{failures[0]}", pytrace=False)


@pytest.mark.parametrize("seed", range(100_000, 100_006))
def test_long_run(seed: int) -> None:
    """A few runs five times longer: logs, membership churn and ids accumulate."""
    run_seed(seed, steps=1500)


def test_replay_is_deterministic(replay_seed: int) -> None:
    """A seed replays exactly: the same events, the same history (use --sim-seed to replay one)."""
    first: list[str] = []
    second: list[str] = []
    one = run_seed(replay_seed, trace_limit=None, trace_messages=True, trace=first)
    two = run_seed(replay_seed, trace_limit=None, trace_messages=True, trace=second)
    assert first == second
    assert (one.operations, one.stats) == (two.operations, two.stats)


def test_runs_exercise_every_fault_and_feature() -> None:
    """The default seeds really crash, partition, change membership, snapshot and transfer leadership."""
    totals: Counter[str] = Counter()
    unknown = 0
    for seed in range(40):
        result = run_seed(seed)
        totals.update(result.stats)
        unknown += result.unknown_outcomes
    for feature in (
        "crashes",
        "restarts",
        "partitions",
        "members_added",
        "members_removed",
        "joint_configs_applied",
        "snapshots_installed",
        "snapshots_failure",
        "transfers_completed",
        "answers",
    ):
        assert totals[feature] > 0, f"no {feature} in 40 seeds: {dict(totals)}"
    assert unknown > 0, "no operation of unknown outcome: clients never lost an answer"
