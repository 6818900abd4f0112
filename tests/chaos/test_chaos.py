"""The chaos matrix: every scenario once with a fixed seed, under real faults, with every checker.

Each run starts a cluster of real `etcdpy server` processes whose peer links cross
proxies, runs recorded client traffic while a nemesis breaks and heals things, and
checks the history: linearizable registers, watch guarantees, revisions in
real-time order, no acknowledged write lost, HashKV equal, every member serving
again, plus each workload's own promises (bank totals, paginated lists, informer
cache, lease lifetimes, fenced lock).  A failing run leaves its folder (history,
verdict, data dirs, logs) and prints the command that reruns it with its seed.

``--long`` adds a run of every scenario in turn, seeds counting up, for
``--chaos-time`` seconds in all (10 minutes by default).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from etcdpy.chaos import NEMESES, SCENARIOS, WORKLOADS, run_scenario

CI_SECONDS = 5.0  # seconds of faults per CI run (every nemesis of the scenario gets a round anyway)
CI_SEEDS = {name: 100 + index for index, name in enumerate(SCENARIOS)}
LONG_SECONDS = 600.0
LONG_RUN_SECONDS = 20.0  # faults per run in the long run


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str, chaos_seed: int | None, chaos_time: float | None, chaos_dir: Path) -> None:
    seed = CI_SEEDS[name] if chaos_seed is None else chaos_seed
    seconds = chaos_time or CI_SECONDS
    test = f"tests/chaos/test_chaos.py::test_scenario[{name}]"
    rerun = f"pytest '{test}' --chaos-seed {seed} --chaos-time {seconds:g}"
    result = run_scenario(SCENARIOS[name], seed, seconds, chaos_dir / f"{name}-seed{seed}", rerun=rerun)
    assert result.passed, result.summary()
    assert result.operations > 50, f"too little load to prove anything:\n{result.summary()}"
    injected = {line.split()[1].rstrip(":") for line in result.nemesis_log if line.split()[1].endswith(":")}
    assert injected >= set(SCENARIOS[name].nemeses), result.nemesis_log


def test_the_matrix_runs_every_nemesis_and_every_workload() -> None:
    assert {n for s in SCENARIOS.values() for n in s.nemeses} == set(NEMESES)
    assert all(make().name == name for name, make in NEMESES.items())
    assert {w for s in SCENARIOS.values() for w in s.workloads} == set(WORKLOADS)
    assert {s.size for s in SCENARIOS.values()} == {1, 3, 5}


@pytest.mark.slow
@pytest.mark.timeout(0)  # bounded by --chaos-time, and every run by its own timeouts
def test_long_run(chaos_seed: int | None, chaos_time: float | None, chaos_dir: Path) -> None:
    """Every scenario in turn, seeds counting up, until the time is up; figures go to figures.json."""
    seed = chaos_seed or 1000
    end = time.monotonic() + (chaos_time or LONG_SECONDS)
    runs, operations, checked = 0, 0, 0
    failures: list[str] = []
    failed: list[dict[str, object]] = []
    while time.monotonic() < end:
        for name, scenario in SCENARIOS.items():
            if time.monotonic() >= end:
                break
            rerun = f"python -m etcdpy.chaos run {name} --seed {seed} --time {LONG_RUN_SECONDS:g}"
            result = run_scenario(
                scenario, seed, LONG_RUN_SECONDS, chaos_dir / f"long-{name}-seed{seed}", rerun=rerun
            )
            runs += 1
            operations += result.operations
            checked += result.checked_operations
            if not result.passed:
                failures.append(result.summary())
                failed.append(
                    {
                        "scenario": name,
                        "seed": seed,
                        "violated": [v.check for v in result.verdicts if not v.held],
                        "anomalies": [str(a) for a in result.anomalies],
                        "harness_errors": len(result.errors),
                        "folder": str(result.folder),
                    }
                )
        seed += 1
    figures = {
        "runs": runs,
        "operations": operations,
        "operations_checked": checked,
        "failed_runs": len(failures),
        "failures": failed,
    }
    chaos_dir.mkdir(parents=True, exist_ok=True)
    (chaos_dir / "figures.json").write_text(json.dumps(figures, indent=1) + "\n")
    assert not failures, "\n\n".join(failures)
