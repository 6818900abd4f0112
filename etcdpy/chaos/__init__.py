"""Chaos testing of etcdpy: real member processes, faults on processes and links, checked histories.

    from etcdpy.chaos import SCENARIOS, run_scenario
    result = run_scenario(SCENARIOS["kill-leader"], seed=7, seconds=8, folder=Path("/tmp/chaos-run"))
    print(result.summary())

Pieces, usable on their own: `ProxyHub`/`LinkProxy`/`LinkFault` (a TCP proxy per
peer link: cut, blackhole, delay with jitter, loss), `ChaosCluster` (etcdpy members
whose links cross those proxies; kill, pause, restart with failpoints, replace),
`NEMESES` (the faults), `WORKLOADS` (recorded client traffic), the checkers in
`etcdpy.chaos.checks`, and `RunResult` (the verdict and the folder a failure leaves).
``python -m etcdpy.chaos run SCENARIO --seed N --time SECONDS`` reruns a scenario.
"""

from etcdpy.chaos.checks import Verdict
from etcdpy.chaos.cluster import ChaosCluster, MemberProcess
from etcdpy.chaos.history import Anomaly, RunHistory
from etcdpy.chaos.nemesis import NEMESES, Nemesis
from etcdpy.chaos.proxy import OPEN, LinkFault, LinkProxy, ProxyHub
from etcdpy.chaos.report import RunResult
from etcdpy.chaos.runner import SCENARIOS, WORKLOADS, Scenario, run_scenario

__all__ = [
    "NEMESES",
    "OPEN",
    "SCENARIOS",
    "WORKLOADS",
    "Anomaly",
    "ChaosCluster",
    "LinkFault",
    "LinkProxy",
    "MemberProcess",
    "Nemesis",
    "ProxyHub",
    "RunHistory",
    "RunResult",
    "Scenario",
    "Verdict",
    "run_scenario",
]
