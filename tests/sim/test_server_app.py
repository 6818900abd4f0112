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
from etcdpy.server.storage.raftlog import RaftLogStorage

from .plan import RunPlan
from .runner import SimulationFailure, run_plan, run_seed
from .serverapp import INSTALL_BATCH_BYTES

PLANTED_BUG_SEEDS = 60


def test_server_sweep(server_seed_chunk: range, sim_steps: int) -> None:
    """Every seed keeps the invariants, equal HashKV at equal applied indexes, and a linearizable history."""
    failures: list[SimulationFailure] = []
    for seed in server_seed_chunk:
        try:
            run_seed(seed, sim_steps, app="server")
        except SimulationFailure as failure:
            failures.append(failure)
    if failures:
        seeds = ", ".join(str(f.seed) for f in failures)
        pytest.fail(f"{len(failures)} failing seeds ({seeds}); the first:\n{failures[0]}", pytrace=False)


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
        "snapshots_spooled",  # a received state went to a file in the node's spool dir
        "install_batches",  # installs wrote the state in bounded batches (install_file)
        "snapshots_installed",
        "snapshots_relabelled",  # the sender's state was newer than its snapshot point: sent as the state's
        "txns_succeeded",
        "txns_failed",
        "digest_checks",  # HashKV compared between members after the run
    ):
        assert totals[feature] > 0, f"no {feature} in 10 seeds: {dict(totals)}"


def power_loss_plan(seed: int) -> RunPlan:
    """Power_loss_plan is the seed's plan with power failing after the first batch of every install.

    (While faults are on and no more than the plan's max_down nodes are down.)
    """
    return dataclasses.replace(RunPlan.from_seed(seed, app="server"), install_power_loss=1.0)


def _state(backend: Backend) -> dict[bytes, bytes]:
    return {key: value for key, value in backend.db.iterator() if snapshot._is_state(key)}


def test_a_power_loss_in_the_middle_of_an_install_is_finished_by_the_next_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An install cut short after its first batch is finished from its file at the node's start.

    The nodes install through the server's `install_file` in small batches; the restart calls
    `finish_interrupted_install`, which finds the marker and a store that is not yet the file's
    state, and leaves exactly that state; the runs then keep every invariant.
    """
    install_file, finish = snapshot.install_file, snapshot.finish_interrupted_install
    batch_sizes: list[int] = []
    finished: list[bool] = []  # per start that found a marker: did the store differ from the file's state?

    def spy_install(backend: Backend, spooled: snapshot.SpooledSnapshot, meta: Any, **kwargs: Any) -> int:
        batch_sizes.append(kwargs["batch_bytes"])
        return install_file(backend, spooled, meta, **kwargs)

    def spy_finish(backend: Backend, raftlog: RaftLogStorage) -> Any:
        marker = snapshot.read_marker(backend)
        if marker is None:
            return finish(backend, raftlog)
        records = dict(snapshot.file_records(snapshot.spool_dir(backend.data_dir) / marker.name))
        differed = _state(backend) != records
        meta = finish(backend, raftlog)
        assert meta == marker.meta and _state(backend) == records and snapshot.read_marker(backend) is None
        assert raftlog.snapshot_meta == marker.meta, "the snapshot point was not recorded on the node's disk"
        finished.append(differed)
        return meta

    monkeypatch.setattr(snapshot, "install_file", spy_install)
    monkeypatch.setattr(snapshot, "finish_interrupted_install", spy_finish)
    totals: Counter[str] = Counter()
    trace: list[str] = []
    for seed in range(2):
        totals.update(run_plan(power_loss_plan(seed), trace_limit=None, trace=trace).stats)
    assert batch_sizes and set(batch_sizes) == {INSTALL_BATCH_BYTES}
    assert totals["install_batches"] > totals["snapshots_installed"], "no install took several batches"
    assert len(finished) == totals["installs_finished_at_start"] > 0, totals
    assert totals["power_losses_in_install"] >= len(finished)
    assert any(finished), "no power loss left the store part old or part new"
    losses = [line for line in trace if "power fails" in line]
    assert losses and all("after batch 1 of" in line for line in losses), losses
    assert sum("finishes installing snapshot" in line for line in trace) == len(finished)


def test_a_run_with_power_losses_in_installs_replays_exactly() -> None:
    """Where an install loses power and what the crash keeps come from the seed: a run replays exactly."""
    first: list[str] = []
    second: list[str] = []
    one = run_plan(power_loss_plan(1), trace_limit=None, trace_messages=True, trace=first)
    two = run_plan(power_loss_plan(1), trace_limit=None, trace_messages=True, trace=second)
    assert one.stats["power_losses_in_install"] > 0
    assert first == second
    assert (one.operations, one.stats) == (two.operations, two.stats)


def test_a_start_that_records_an_interrupted_install_without_its_state_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A start that records the snapshot point but does not replay the state from the file is caught."""
    finish = snapshot.finish_interrupted_install

    def without_replay(backend: Backend, raftlog: RaftLogStorage) -> Any:
        with monkeypatch.context() as patch:
            patch.setattr(snapshot, "replace_state", lambda *args, **kwargs: 0)
            return finish(backend, raftlog)

    monkeypatch.setattr(snapshot, "finish_interrupted_install", without_replay)
    failure = first_server_failure(install_power_loss=1.0)
    assert "state machine safety" in failure.reason or "below the snapshot" in failure.reason, failure


def first_server_failure(
    crash_rate: float | None = None, install_power_loss: float | None = None
) -> SimulationFailure:
    """First_server_failure sweeps seeds with the server's applier; the planted bug must show.

    `crash_rate` and `install_power_loss`, if given, replace the plans' (for bugs only a crash reveals).
    """
    for seed in range(PLANTED_BUG_SEEDS):
        plan = RunPlan.from_seed(seed, app="server")
        if crash_rate is not None:
            plan = dataclasses.replace(plan, crash_rate=crash_rate)
        if install_power_loss is not None:
            plan = dataclasses.replace(plan, install_power_loss=install_power_loss)
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
    """A snapshot stream that leaves out the applied index is caught (the store would re-apply it all)."""
    open_state = snapshot.open_state
    applied_key = schema.META + schema.META_APPLIED_INDEX

    def without_applied_index(backend: Backend, chunk_bytes: int = snapshot.CHUNK_BYTES) -> Any:
        applied, chunks = open_state(backend, chunk_bytes)
        kept = [(key, value) for key, value in snapshot.decode_records(chunks) if key != applied_key]
        return applied, iter([b"".join(_record(key, value) for key, value in kept)])

    monkeypatch.setattr(snapshot, "open_state", without_applied_index)
    # The receiver's store comes up at applied index 0 under a snapshot label: caught at the install.
    assert "installed the state at applied index 0 as" in first_server_failure().reason


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
