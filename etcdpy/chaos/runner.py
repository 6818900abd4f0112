"""Scenarios and the run loop: a cluster, its workloads, a nemesis schedule, then every checker.

    result = run_scenario(SCENARIOS["kill-leader"], seed=7, seconds=8, folder=Path("/tmp/chaos"))
    assert result.passed, result.summary()

A run: start the cluster; start the workloads; until the time is up, inject one of
the scenario's faults, let it bite, heal it, and wait until the cluster takes
writes again; stop the load; heal everything; check that every member serves
again; let each workload finish (watches catch up, leases expire); then run the
checkers.  Every process is killed at the end, whatever happened.
"""

from __future__ import annotations

import random
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from etcdpy.chaos import checks
from etcdpy.chaos.checks import Verdict
from etcdpy.chaos.cluster import ChaosCluster, MemberProcess, wait_until
from etcdpy.chaos.history import HEALTH_PREFIX, RunHistory
from etcdpy.chaos.nemesis import NEMESES, Nemesis
from etcdpy.chaos.report import RunResult, discard_folder, write_folder
from etcdpy.chaos.watching import HttpWatchers, Watchers
from etcdpy.chaos.workload import Context, Workload
from etcdpy.chaos.workloads_k8s import Kubernetes
from etcdpy.chaos.workloads_kv import Bank, Compactor, Registers
from etcdpy.chaos.workloads_lease import FencedLock, Leases
from etcdpy.checker.watch import Put
from etcdpy.client import Client

SERVING_TIMEOUT = 60.0  # seconds every member gets to serve again once the faults are healed

WORKLOADS: dict[str, Callable[[], Workload]] = {
    "register": Registers,
    "bank": Bank,
    "kubernetes": Kubernetes,
    "watch": Watchers,
    "http-watch": HttpWatchers,
    "lock": FencedLock,
    "lease": Leases,
    "compact": Compactor,
}
"""WORKLOADS names every workload a scenario can run."""

ALL_WORKLOADS = ("register", "bank", "kubernetes", "watch", "lock", "lease")
SNAPSHOT_ARGS = ("--snapshot-count", "40", "--snapshot-catchup-entries", "10")


@dataclass(frozen=True)
class Scenario:
    """Scenario is a cluster size, the faults to inject (taken in turn) and the client traffic."""

    name: str
    size: int
    nemeses: tuple[str, ...]
    workloads: tuple[str, ...] = ALL_WORKLOADS
    extra_args: tuple[str, ...] = ()
    tls: bool = False  # TLS with client and peer certificates on every link


SCENARIOS = {
    s.name: s
    for s in [
        Scenario("single-kill", 1, ("kill", "restart-all"), ("register", "watch", "lease")),
        Scenario("kill-leader", 3, ("kill-leader", "kill")),
        Scenario(
            "pause",
            3,
            ("pause", "pause-leader", "failpoint-pause"),
            ("register", "kubernetes", "watch", "lease"),
        ),
        Scenario("partition", 3, ("partition-leader", "partition-member"), ("register", "bank", "watch")),
        Scenario("blackhole", 3, ("blackhole-leader",), ("register", "kubernetes", "lock")),
        Scenario("links", 3, ("delay", "loss"), ("register", "bank", "kubernetes", "watch")),
        Scenario(
            "failpoints",
            3,
            ("failpoint-crash", "failpoint-crash-compaction"),
            ("register", "bank", "watch", "compact"),
        ),
        Scenario(
            "snapshot",
            3,
            ("snapshot-catchup", "snapshot-crash"),
            ("register", "watch", "lease"),
            SNAPSHOT_ARGS,
        ),
        Scenario(
            "tls",
            3,
            ("kill-leader", "partition-leader", "snapshot-catchup"),
            ("register", "watch", "lease"),
            SNAPSHOT_ARGS,
            tls=True,
        ),
        Scenario("replace", 3, ("replace",), ("register", "kubernetes", "watch")),
        Scenario("restart-all", 3, ("restart-all",), ("register", "bank", "lock", "watch")),
        Scenario(
            "five", 5, ("partition-minority", "kill-leader", "pause"), ("register", "kubernetes", "watch")
        ),
        Scenario(
            "gateway-watch",
            3,
            ("kill-leader", "partition-leader"),
            ("register", "watch", "http-watch", "lease"),
        ),
        Scenario(
            "client-workers",
            3,
            ("kill-worker", "kill-leader"),
            ("register", "bank", "watch", "lease"),
            ("--experimental-client-workers", "2"),
        ),
    ]
}
"""SCENARIOS are the named scenarios the test matrix and ``python -m etcdpy.chaos`` run."""


@dataclass
class _Run:
    scenario: Scenario
    seed: int
    cluster: ChaosCluster
    history: RunHistory = field(default_factory=RunHistory)
    log: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.log.append(f"{self.history.clock():.3f} {text}")


def run_scenario(
    scenario: Scenario, seed: int, seconds: float, folder: Path, *, rerun: str = "", keep: bool = False
) -> RunResult:
    """Run `scenario` with `seed` for `seconds` of faults under load; the folder is kept if it fails."""
    if folder.exists():
        shutil.rmtree(folder)
    rerun = rerun or f"python -m etcdpy.chaos run {scenario.name} --seed {seed} --time {seconds:g}"
    started = time.monotonic()
    cluster = ChaosCluster(
        folder / "members", scenario.size, extra_args=scenario.extra_args, seed=seed, tls=scenario.tls
    )
    run = _Run(scenario, seed, cluster)
    ctx = Context(cluster.endpoints, run.history, seed, tls=cluster.client_tls)
    errors: list[str] = []
    poller = checks.RevisionPoller(cluster)
    try:
        cluster.start()
        run.note("cluster started")
        poller.start()
        workloads = [WORKLOADS[name]() for name in scenario.workloads]
        for workload in workloads:
            workload.start(ctx)
        _inject_faults(run, [NEMESES[name]() for name in scenario.nemeses], seconds)
        ctx.stop_load()
        run.note("load stopped")
        _heal_everything(run)
        client = cluster.client()
        for workload in workloads:
            workload.finish(ctx, client)
        run.verdicts.append(
            Verdict(
                f"workload checks ({', '.join(w.name for w in workloads)})",
                not run.history.anomalies,
                run.history.operations,
                "\n".join(str(a) for a in run.history.anomalies[:30]),
            )
        )
        _final_checks(run)
        run.verdicts.append(poller.verdict())
    except Exception as err:  # the harness itself failed: report it, never as a pass
        errors.append(f"{type(err).__name__}: {err}\n{traceback.format_exc()}")
    finally:
        poller.stop()
        ctx.close()
        cluster.stop()
    result = RunResult(
        scenario.name,
        seed,
        time.monotonic() - started,
        folder,
        rerun,
        verdicts=run.verdicts,
        anomalies=list(run.history.anomalies),
        errors=[*errors, *ctx.errors],
        nemesis_log=run.log,
        operations=run.history.operations,
        checked_operations=len(run.history.kv.operations()) + len(run.history.revisions),
    )
    write_folder(result, run.history)
    if result.passed and not keep:
        discard_folder(result)
    return result


def _inject_faults(run: _Run, nemeses: list[Nemesis], seconds: float) -> None:
    """Inject, wait, heal, wait for writes to succeed again, until `seconds` have passed
    and every nemesis has had its turn at least once."""
    rng = random.Random(f"{run.seed}/nemesis")
    deadline = time.monotonic() + seconds
    turn = 0
    time.sleep(rng.uniform(0.5, 1.0))  # some history before the first fault
    while time.monotonic() < deadline or turn < len(nemeses):
        nemesis = nemeses[turn % len(nemeses)]
        turn += 1
        run.note(f"{nemesis.name}: {nemesis.inject(run.cluster, rng)}")
        time.sleep(rng.uniform(1.0, 2.0))
        run.note(f"{nemesis.name}: {nemesis.heal(run.cluster)}")
        try:
            run.cluster.wait_writable(SERVING_TIMEOUT)
        except TimeoutError:
            run.history.anomaly(
                "availability", f"no write succeeded within {SERVING_TIMEOUT}s of healing {nemesis.name}"
            )
            return
        time.sleep(rng.uniform(0.3, 1.0))


def _heal_everything(run: _Run) -> None:
    """Open every link, resume and restart every member, then check each one serves again."""
    cluster = run.cluster
    cluster.heal_links()
    for member in cluster.members:
        if member.paused:
            cluster.resume(member)
        if not member.running:
            cluster.launch(member)
    run.note("everything healed")
    serving = [m for m in cluster.members if _serves(run, m)]
    detail = "\n".join(f"{m.name} does not serve" for m in cluster.members if m not in serving)
    run.verdicts.append(
        Verdict(
            "every member serves again", len(serving) == len(cluster.members), len(cluster.members), detail
        )
    )


def _serves(run: _Run, member: MemberProcess) -> bool:
    """A write and a linearizable read through the member's own endpoint succeed within the timeout."""
    key = HEALTH_PREFIX + member.name.encode()
    with Client([member.endpoint], command_timeout=3.0, tls=run.cluster.client_tls) as client:

        def answers() -> bool:
            try:
                put = client.put(key, b"serving")
                client.get(key)
            except Exception:
                return False
            run.history.committed(put.header.revision, Put(key, b"serving"))
            return True

        try:
            wait_until(answers, SERVING_TIMEOUT, "", interval=0.2)
        except TimeoutError:
            return False
    return True


def _final_checks(run: _Run) -> None:
    cluster = run.cluster
    client = cluster.client()
    final = client.get(b"\0", b"\0", count_only=True).header.revision

    def applied_everywhere() -> bool:
        try:
            return all(client.status(e, timeout=2.0).header.revision >= final for e in cluster.endpoints)
        except Exception:
            return False

    try:
        wait_until(applied_everywhere, 30.0, "")
    except TimeoutError:
        run.history.anomaly("convergence", f"not every member applied revision {final} within 30s")
    run.note(f"final revision {final}")
    run.verdicts += [
        checks.check_linearizable(run.history),
        checks.check_watch_guarantees(run.history, final),
        checks.check_revision_order(run.history),
        checks.check_no_acked_write_lost(run.history, cluster.endpoints, final, cluster.client_tls),
        checks.check_hashes_agree(client, cluster.endpoints, final),
    ]
