"""Benchmark the raft simulator (tests/sim): simulated steps per second and seeded runs per second.

Usage: python bench/sim_bench.py [--seeds 200] [--first-seed 0] [--steps N]

Each run is one seed of the default sweep: a 3- or 5-node cluster with faults,
clients, invariant checks every step and a linearizability check of the
history at the end.  Figures are per process (one core); the pytest sweep
spreads chunks of seeds over xdist workers.  CPU time is printed next to wall
time because it is steadier on a shared machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from etcdpy.checker import KV_MODEL, check_operations
from tests.sim.cluster import Cluster
from tests.sim.plan import RunPlan
from tests.sim.runner import SimulationFailure, run_seed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="faulty steps per run (default: the plan's)")
    args = parser.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.seeds)

    wall, cpu = time.perf_counter(), time.process_time()
    steps = operations = failures = 0
    for seed in seeds:
        try:
            result = run_seed(seed, args.steps)
        except SimulationFailure as failure:
            failures += 1
            print(f"seed {seed} fails: {failure.reason.splitlines()[0]}")
            continue
        steps += result.steps
        operations += result.operations
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{len(seeds)} runs, {steps} simulated steps, {operations} client operations, {failures} failing")
    print(f"runs/s   {len(seeds) / wall:8.1f} wall  {len(seeds) / cpu:8.1f} cpu")
    print(f"steps/s  {steps / wall:8.0f} wall  {steps / cpu:8.0f} cpu")

    # Where the time goes: simulation alone, then the history check alone, on the first 20 seeds.
    sample = seeds[:20]
    histories = []
    sim_cpu = time.process_time()
    for seed in sample:
        plan = RunPlan.from_seed(seed) if args.steps is None else RunPlan.from_seed(seed, args.steps)
        cluster = Cluster(plan)
        try:
            for _ in range(plan.steps + plan.settle_steps):
                cluster.step()
        except Exception:  # a failing seed was reported above
            continue
        histories.append(cluster.workload.history)
    sim_cpu = time.process_time() - sim_cpu
    check_cpu = time.process_time()
    for history in histories:
        check_operations(KV_MODEL, history)
    check_cpu = time.process_time() - check_cpu
    checked = sum(len(h) for h in histories)
    print(
        f"split on {len(sample)} seeds: simulation {sim_cpu:.2f} s cpu, "
        f"linearizability check {check_cpu:.3f} s cpu ({checked / max(check_cpu, 1e-9):.0f} ops/s)"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
