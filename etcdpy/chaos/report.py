"""RunResult and the run folder: what a chaos run leaves behind for a human to read.

A run's folder holds ``members/`` (every member's data dir and log), ``nemesis.log``
(what was broken and healed, when), ``history.json`` (every recorded operation,
write and watch stream), ``verdict.txt`` (each checker's finding, every anomaly)
and ``rerun.txt`` (the command that replays the scenario with the same seed).
A passing run's folder is deleted unless asked to keep it.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from etcdpy.chaos.checks import Verdict
from etcdpy.chaos.history import Anomaly, RunHistory


@dataclass
class RunResult:
    """RunResult is the outcome of one chaos run."""

    scenario: str
    seed: int
    seconds: float
    folder: Path
    rerun: str
    verdicts: list[Verdict] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # harness failures: the run proves nothing
    nemesis_log: list[str] = field(default_factory=list)
    operations: int = 0
    checked_operations: int = 0

    @property
    def passed(self) -> bool:
        return not self.errors and not self.anomalies and all(v.held for v in self.verdicts)

    def summary(self) -> str:
        state = "passed" if self.passed else "FAILED"
        lines = [
            f"chaos scenario {self.scenario} seed {self.seed}: {state} "
            f"({self.operations} operations in {self.seconds:.1f}s, {self.checked_operations} checked)",
            *(f"  {v}".replace("\n", "\n    ") for v in self.verdicts),
            *(f"  anomaly {a}" for a in self.anomalies[:30]),
            *(f"  harness error: {e}" for e in self.errors),
        ]
        if not self.passed:
            lines += [f"  history, verdict, data dirs and logs: {self.folder}", f"  rerun: {self.rerun}"]
        return "\n".join(lines)


def _operation(op: Any) -> dict[str, Any]:
    output = op.output if op.outcome_known else None
    return {
        "client": op.client_id,
        "op": op.input.op.value,
        "key": op.input.key,
        "value": op.input.value,
        "expected": op.input.expected,
        "output": None if output is None else {"value": output.value, "ok": output.ok},
        "call": op.call_time,
        "return": None if math.isinf(op.return_time) else op.return_time,
    }


def write_folder(result: RunResult, history: RunHistory) -> None:
    """Write the history, the verdict and the rerun command into the run's folder."""
    folder = result.folder
    folder.mkdir(parents=True, exist_ok=True)
    dump = {
        "scenario": result.scenario,
        "seed": result.seed,
        "kv_operations": [_operation(op) for op in history.kv.operations()],
        "writes": [
            {"revision": w.revision, "ops": [repr(op) for op in w.ops]}
            for w in sorted(history.writes, key=lambda w: w.revision)
        ],
        "revisions": [vars(t) for t in history.revisions],
        "watchers": [
            {
                "id": w.watcher_id,
                "request": json_format.MessageToDict(w.request),
                "ended_early": w.ended_early,
                "current_revision": w.current_revision,
                "responses": [json_format.MessageToDict(r) for r in w.responses],
            }
            for w in history.watchers
        ],
        "chains": history.chains,
        "counts": history.counts,
    }
    (folder / "history.json").write_text(json.dumps(dump, indent=1, default=repr))
    (folder / "verdict.txt").write_text(
        result.summary() + "\n\n" + "\n\n".join(str(v) for v in result.verdicts)
    )
    (folder / "nemesis.log").write_text("\n".join(result.nemesis_log) + "\n")
    (folder / "rerun.txt").write_text(result.rerun + "\n")


def discard_folder(result: RunResult) -> None:
    shutil.rmtree(result.folder, ignore_errors=True)
