"""Run one seed: simulate, check every invariant as it goes, then check the clients' history."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from etcdpy.checker import KV_MODEL, Outcome, check_operations

from .cluster import Cluster
from .invariants import SafetyViolation
from .plan import DEFAULT_STEPS, RunPlan

CHECK_TIMEOUT = 30.0  # seconds for the linearizability check of one run's history
# Once faults stop and clients are done, the cluster must elect a leader and every member catch up
# within this many steps (10 election timeouts), plus one step per log entry: a member added late
# replays the whole log, a few entries per round trip when messages are small and snapshots off.
CONVERGENCE_STEPS = 100


def replay_command(seed: int, steps: int = DEFAULT_STEPS, app: str = "toy") -> str:
    """Replay_command is the one command line that replays a seed with a trace."""
    more = "" if steps == DEFAULT_STEPS else f" --steps {steps}"
    if app != "toy":
        more += f" --app {app}"
    return f"python -m tests.sim.replay {seed}{more}"


class SimulationFailure(AssertionError):
    """SimulationFailure: a seed broke a guarantee; the message says which, how, and how to replay."""

    def __init__(self, plan: RunPlan, reason: str, trace: list[str]) -> None:
        self.seed = plan.seed
        self.reason = reason
        self.trace = trace
        recent = "\n".join(trace[-40:])
        replay = replay_command(plan.seed, plan.steps, plan.app)
        super().__init__(f"seed {plan.seed}: {reason}\nreplay: {replay}\nlast events:\n{recent}")


@dataclass(frozen=True)
class RunResult:
    """RunResult summarises a seed that passed."""

    seed: int
    plan: RunPlan
    steps: int
    operations: int
    unknown_outcomes: int
    stats: Counter[str]


def run_seed(
    seed: int,
    steps: int | None = None,
    trace_limit: int | None = 300,
    trace_messages: bool = False,
    trace: list[str] | None = None,
    app: str = "toy",
) -> RunResult:
    """Run_seed simulates seed `seed` and raises SimulationFailure if any guarantee broke.

    `trace`, if given, receives the run's events (the last `trace_limit` of them); `app` is what
    the nodes apply entries to (see plan.APPS).
    """
    plan = RunPlan.from_seed(seed, DEFAULT_STEPS if steps is None else steps, app)
    return run_plan(plan, trace_limit, trace_messages, trace)


def run_plan(
    plan: RunPlan,
    trace_limit: int | None = 300,
    trace_messages: bool = False,
    trace: list[str] | None = None,
) -> RunResult:
    """Run_plan simulates a plan (a seed's, or one adjusted by a test) like run_seed."""
    cluster = Cluster(plan, trace_limit, trace_messages)
    try:
        return _run(cluster, trace)
    finally:
        cluster.close()


def _run(cluster: Cluster, trace: list[str] | None) -> RunResult:
    plan = cluster.plan
    try:
        _simulate(cluster)
        if cluster.converged():
            cluster.check_store_digests()
    except SafetyViolation as violation:
        raise SimulationFailure(plan, f"safety violation: {violation}", list(cluster.trace)) from violation
    except Exception as error:  # raft's own assertions (a corrupt log, ...) fail the seed the same way
        reason = f"{type(error).__name__} raised: {error}"
        raise SimulationFailure(plan, reason, list(cluster.trace)) from error
    if trace is not None:
        trace.extend(cluster.trace)
    if not cluster.converged():
        applied = {node.id: node.applied for node in cluster.live_nodes()}
        leader = cluster.leader()
        reason = (
            f"liveness: {CONVERGENCE_STEPS} steps (+1 per entry) after the faults stopped and the clients "
            "finished, "
            f"the leader is {leader.id if leader else None} and the members applied {applied}"
        )
        raise SimulationFailure(plan, reason, list(cluster.trace))
    history = cluster.workload.history
    result = check_operations(KV_MODEL, history, timeout=CHECK_TIMEOUT)
    if result.outcome is not Outcome.OK:
        reason = f"client history is {result.outcome.value}:\n{result.explain(KV_MODEL)}"
        raise SimulationFailure(plan, reason, list(cluster.trace))
    stats = cluster.stats
    stats["checks"] = cluster.monitor.checks
    return RunResult(
        seed=plan.seed,
        plan=plan,
        steps=cluster.now,
        operations=len(history),
        unknown_outcomes=sum(1 for op in history if not op.outcome_known),
        stats=stats,
    )


def _simulate(cluster: Cluster) -> None:
    """_simulate runs the faulty phase, the calm phase, lets clients finish, and waits to converge."""
    plan = cluster.plan
    for _ in range(plan.steps):
        cluster.step()
    cluster.calm()
    for _ in range(plan.settle_steps):
        cluster.step()
    cluster.workload.issuing = False
    while cluster.workload.outstanding:
        cluster.step()
    for _ in range(CONVERGENCE_STEPS + cluster.last_index()):
        if cluster.converged():
            return
        cluster.step()
