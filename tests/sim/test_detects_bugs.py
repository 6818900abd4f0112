"""The simulator is not blind: bugs planted in raft, the disk or the application are caught.

Each test plants one bug with monkeypatch and sweeps seeds until a run fails
for the reason that bug should cause.  If a refactoring made the simulator
stop checking something, the matching test here fails.
"""

from __future__ import annotations

import pytest

from etcdpy.checker import KvOutput
from etcdpy.raft import log as raft_log

from .application import ToyApplication
from .node import Answer, SimDisk, SimNode, SimWrite
from .plan import RunPlan
from .runner import SimulationFailure, run_plan
from .statemachine import Command, KvStateMachine

SEEDS_TO_TRY = 100


def first_failure() -> SimulationFailure:
    """First_failure sweeps seeds and returns the first failure; the planted bug must show."""
    for seed in range(SEEDS_TO_TRY):
        plan = RunPlan.from_seed(seed)
        try:
            run_plan(plan)
        except SimulationFailure as failure:
            return failure
    pytest.fail(f"the planted bug went unnoticed for {SEEDS_TO_TRY} seeds")


def test_stale_reads_break_linearizability(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads served from the local store without ReadIndex are caught by the linearizability check."""
    submit = SimNode.submit

    def read_locally(self: SimNode, attempt: int, command: Command, via_log: bool) -> bool:
        request = command.request
        if request.op.value != "get" or via_log:
            return submit(self, attempt, command, via_log)
        output = self.app.read(command)
        self.answers.append(Answer(command.request_id, attempt, output, 0, 0, 0))
        return True

    monkeypatch.setattr(SimNode, "submit", read_locally)
    assert "client history is illegal" in first_failure().reason


def test_votes_for_stale_logs_break_leader_completeness(monkeypatch: pytest.MonkeyPatch) -> None:
    """A raft that grants votes whatever the candidate's log lets a leader lack committed entries."""
    monkeypatch.setattr(raft_log.RaftLog, "is_up_to_date", lambda self, last_index, term: True)
    reason = first_failure().reason
    assert "leader completeness" in reason or "acknowledged write lost" in reason, reason


def test_diverging_store_breaks_state_machine_safety(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node whose store applies a command differently is caught comparing stores at one index."""
    apply = KvStateMachine.apply
    start = SimNode.start

    def start_marking_node_2(self: SimNode) -> None:
        start(self)
        assert isinstance(self.app, ToyApplication)
        self.app.store.data.setdefault("diverges", str(self.id == 2))

    def apply_wrongly_on_node_2(self: KvStateMachine, command: Command) -> KvOutput:
        output = apply(self, command)
        if self.data.get("diverges") == "True":
            self.data["k0"] = "wrong"
        return output

    monkeypatch.setattr(SimNode, "start", start_marking_node_2)
    monkeypatch.setattr(KvStateMachine, "apply", apply_wrongly_on_node_2)
    assert "state machine safety" in first_failure().reason


def test_acknowledging_before_persisting_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk whose fsync lags one Ready lets persisted_messages acknowledge writes a crash then loses."""
    write, written = SimDisk.write, SimDisk.written

    def write_after_syncing_the_last(self: SimDisk, prepared: SimWrite) -> None:
        written(self, prepared)  # the previous Ready's writes become durable only now
        write(self, prepared)

    monkeypatch.setattr(SimDisk, "write", write_after_syncing_the_last)
    monkeypatch.setattr(SimDisk, "written", lambda self, prepared: None)
    reason = first_failure().reason
    assert "safety violation" in reason or "out of range" in reason, reason
