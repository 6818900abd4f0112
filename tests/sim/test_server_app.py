"""Simulations whose nodes apply through the real server: Applier on LevelDB, the server's snapshot path.

The sweep runs `--sim-server-seeds` seeds (SIM_SERVER_SEEDS; default in
conftest.py); the other tests check that such runs replay exactly, exercise
what they claim to, and catch bugs planted in the server's apply, snapshot
and compaction code.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from etcdpy.server.apply import Applier, ApplyResult
from etcdpy.server.mvcc import compaction, layout
from etcdpy.server.storage import schema, snapshot
from etcdpy.server.storage.backend import Backend

from .plan import RunPlan
from .runner import SimulationFailure, run_plan, run_seed

PLANTED_BUG_SEEDS = 60


@dataclasses.dataclass(frozen=True)
class KnownBug:
    """KnownBug is an open server bug some seeds run into: how their failure reads, and where it is told."""

    signature: str  # a part of the failure's reason that names this bug
    reference: str


RESTART_REFUSED_AFTER_SNAPSHOT = KnownBug(
    signature="RestartRefused raised",
    reference="server bug: a member that crashes after installing a snapshot whose state (the sender's, "
    "applied past the snapshot's index) is ahead of its raft log is refused a restart by open_member "
    "(etcdpy/server/main.py); tests/chaos/test_regressions.py reproduces it with real processes",
)

# Seeds of the default server sweep that fail on an open server bug. The sweep and the planted-bug
# tests skip them; test_known_server_bugs expects each to fail with its bug (a strict xfail: a fix
# shows as XPASS, then delete the entry). Seed numbers are only stable for one version of tests/sim.
# A longer sweep meets the same bugs on other seeds (14 in the first 1,000): it counts a failure
# naming one of these bugs as that bug, not as a new one, while the bug has a seed here.
KNOWN_SERVER_BUGS: dict[int, KnownBug] = {
    66: RESTART_REFUSED_AFTER_SNAPSHOT,
    72: RESTART_REFUSED_AFTER_SNAPSHOT,
}


def test_server_sweep(server_seed_chunk: range, sim_steps: int) -> None:
    """Every seed keeps the invariants, equal HashKV at equal applied indexes, and a linearizable history."""
    failures: list[SimulationFailure] = []
    known = {bug.signature for bug in KNOWN_SERVER_BUGS.values()}
    for seed in server_seed_chunk:
        if seed in KNOWN_SERVER_BUGS:
            continue  # test_known_server_bugs runs it
        try:
            run_seed(seed, sim_steps, app="server")
        except SimulationFailure as failure:
            if not any(signature in failure.reason for signature in known):
                failures.append(failure)
    if failures:
        seeds = ", ".join(str(f.seed) for f in failures)
        pytest.fail(f"{len(failures)} failing seeds ({seeds}); the first:\n{failures[0]}", pytrace=False)


@pytest.mark.parametrize(
    "seed",
    [
        pytest.param(
            seed, marks=pytest.mark.xfail(strict=True, raises=SimulationFailure, reason=bug.reference)
        )
        for seed, bug in sorted(KNOWN_SERVER_BUGS.items())
    ],
)
def test_known_server_bugs(seed: int) -> None:
    """A seed that runs into an open server bug fails with that bug (and passes once it is fixed)."""
    try:
        run_seed(seed, app="server")
    except SimulationFailure as failure:
        # Another failure is not the known bug: an AssertionError that the xfail does not expect.
        assert KNOWN_SERVER_BUGS[seed].signature in failure.reason, failure.reason
        raise


@pytest.mark.parametrize("seed", range(100_000, 100_003))
def test_server_long_run(seed: int) -> None:
    """A few runs five times longer: the LevelDB history, compactions and snapshots accumulate."""
    run_seed(seed, steps=1500, app="server")


def test_server_replay_is_deterministic(replay_seed: int) -> None:
    """A seed with the server's applier replays exactly, LevelDB, crashes and snapshots included."""
    first: list[str] = []
    second: list[str] = []
    one = run_seed(replay_seed, trace_limit=None, trace_messages=True, trace=first, app="server")
    two = run_seed(replay_seed, trace_limit=None, trace_messages=True, trace=second, app="server")
    assert first == second
    assert (one.operations, one.stats) == (two.operations, two.stats)


def test_server_runs_exercise_the_apply_and_snapshot_path() -> None:
    """Runs lose apply batches to crashes, replay from the stored index, compact, and install newer states."""
    totals: Counter[str] = Counter()
    for seed in range(10):
        totals.update(run_seed(seed, app="server").stats)
    for feature in (
        "apply_batches_lost",  # a crash took back unsynced apply batches
        "restarts_replaying_from_stored_index",  # the stored applied index was past the snapshot
        "compactions_applied",
        "compaction_steps",  # physical compaction interleaved with applies
        "snapshots_installed",
        "snapshot_states_ahead",  # the sender's state was newer than its snapshot, as the server sends it
        "txns_succeeded",
        "txns_failed",
        "digest_checks",  # HashKV compared between members after the run
    ):
        assert totals[feature] > 0, f"no {feature} in 10 seeds: {dict(totals)}"


def first_server_failure(crash_rate: float | None = None) -> SimulationFailure:
    """First_server_failure sweeps seeds with the server's applier; the planted bug must show.

    `crash_rate`, if given, replaces the plans' (for bugs only a crash reveals).
    """
    for seed in range(PLANTED_BUG_SEEDS):
        if seed in KNOWN_SERVER_BUGS:
            continue
        plan = RunPlan.from_seed(seed, app="server")
        if crash_rate is not None:
            plan = dataclasses.replace(plan, crash_rate=crash_rate)
        try:
            run_plan(plan)
        except SimulationFailure as failure:
            return failure
    pytest.fail(f"the planted bug went unnoticed for {PLANTED_BUG_SEEDS} seeds")


def test_applied_index_written_ahead_of_its_data_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """An applier storing the applied index in an earlier batch than the data: a crash between loses data."""
    apply = Applier.apply

    def index_first(self: Applier, entries: Sequence[tuple[int, bytes]]) -> list[ApplyResult]:
        last = max(index for index, _ in entries)
        if last > self.applied_index:
            with self.backend.batch(sync=False) as wb:
                wb.put(schema.META + schema.META_APPLIED_INDEX, last.to_bytes(8, "big"))
        return apply(self, entries)

    monkeypatch.setattr(Applier, "apply", index_first)
    failure = first_server_failure(crash_rate=0.05)
    assert "state machine safety" in failure.reason or "client history is illegal" in failure.reason, failure


def test_snapshot_without_the_applied_index_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot stream that leaves out the applied index makes the receiver re-apply what it holds."""
    state_chunks = snapshot.state_chunks
    applied_key = schema.META + schema.META_APPLIED_INDEX

    def without_applied_index(backend: Backend, chunk_bytes: int = snapshot.CHUNK_BYTES) -> Any:
        kept = [
            (key, value)
            for key, value in snapshot.decode_records(state_chunks(backend, chunk_bytes))
            if key != applied_key
        ]
        return iter([b"".join(_record(key, value) for key, value in kept)])

    monkeypatch.setattr(snapshot, "state_chunks", without_applied_index)
    assert "safety violation" in first_server_failure().reason


def _record(key: bytes, value: bytes) -> bytes:
    return len(key).to_bytes(4, "big") + key + len(value).to_bytes(4, "big") + value


def test_compaction_deleting_a_visible_version_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Physical compaction that also deletes each key's newest version at the compact revision is caught."""

    def clean_everything(db: Any, wb: Any, key: bytes, compact_rev: int) -> None:
        group = layout.index_group(key)
        it = db.raw_iterator()
        try:
            it.seek(layout.index_seek(group, compact_rev))
            while it.valid() and it.key().startswith(group):
                wb.delete(it.key())
                wb.delete(layout.history_key(layout.split_index_key(it.key())[2]))
                it.next()
        finally:
            it.close()

    monkeypatch.setattr(compaction, "_clean_group", clean_everything)
    failure = first_server_failure()
    assert "state machine safety" in failure.reason or "store digests differ" in failure.reason, failure
