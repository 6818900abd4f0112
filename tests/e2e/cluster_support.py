"""Multi-member clusters of real server processes (etcdpy or the reference etcd) on loopback ports.

Times are short (heartbeat 20 ms, election 200 ms) so elections take a fraction
of a second and the tests stay fast.  `ProcCluster.stop` kills every process it
started; tests use it through a fixture or a ``with`` block.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from procs import ETCDCTL_BIN, ServerProcess

from etcdpy.chaos.cluster import wait_until

HEARTBEAT_MS = 20
ELECTION_MS = 200
TOKEN = "e2e-cluster"


class ProcCluster:
    """N members started from --initial-cluster; members keep their ports and data dirs across restarts."""

    def __init__(self, kind: str, root: Path, size: int, extra_args: list[str] | None = None) -> None:
        self.kind = kind
        self.root = root
        self.members = [
            ServerProcess(kind, root / f"m{i}.data", name=f"m{i}", extra_args=[]) for i in range(size)
        ]
        self.extra_args = extra_args or []
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            m.extra_args = self.member_args(initial, "new")

    def member_args(self, initial_cluster: str, state: str) -> list[str]:
        return [
            "--initial-cluster", initial_cluster,
            "--initial-cluster-state", state,
            "--initial-cluster-token", TOKEN,
            "--heartbeat-interval", str(HEARTBEAT_MS),
            "--election-timeout", str(ELECTION_MS),
            *self.extra_args,
        ]  # fmt: skip

    @property
    def endpoints(self) -> str:
        return ",".join(m.endpoint for m in self.members)

    def start(self) -> ProcCluster:
        for m in self.members:  # all at once: a member serves clients only once a quorum runs
            m.start(wait=False)
        for m in self.members:
            m.wait_ready()
        self.wait_leader()
        return self

    def stop(self) -> None:
        for m in self.members:
            m.stop()

    def alive(self) -> list[ServerProcess]:
        return [m for m in self.members if m.proc is not None and m.proc.poll() is None]

    def status(self, member: ServerProcess) -> dict[str, Any] | None:
        """`endpoint status -w json` of one member, or None if it does not answer."""
        return endpoint_status(member.endpoint)

    def wait_leader(self, timeout: float = 20.0) -> ServerProcess:
        """The member all live members agree leads (waits for agreement)."""
        found: list[ServerProcess] = []

        def agreed() -> bool:
            statuses = [self.status(m) for m in self.alive()]
            leaders = {s.get("leader", 0) for s in statuses if s is not None}
            if None in statuses or len(leaders) != 1 or 0 in leaders:
                return False
            (lead,) = leaders
            for m, s in zip(self.alive(), statuses, strict=True):
                if s is not None and s["header"]["member_id"] == lead:
                    found[:] = [m]
                    return True
            return False

        wait_until(agreed, timeout, "no leader agreed by every live member")
        return found[0]


def etcdctl(
    endpoints: str, *args: str, check: bool = True, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run the reference etcdctl (API v3) against `endpoints`."""
    assert ETCDCTL_BIN is not None, "the reference etcdctl is not installed"
    result = subprocess.run(
        [ETCDCTL_BIN, "--endpoints", endpoints, "--dial-timeout", "2s", "--command-timeout", "5s", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"etcdctl {' '.join(args)} failed: {result.stderr}")
    return result


def endpoint_status(endpoint: str) -> dict[str, Any] | None:
    """`etcdctl endpoint status -w json` of one endpoint (its "Status"), or None if it does not answer."""
    result = etcdctl(endpoint, "endpoint", "status", "-w", "json", check=False)
    if result.returncode != 0:
        return None
    statuses: list[dict[str, Any]] = json.loads(result.stdout)
    return statuses[0]["Status"] if statuses else None


def etcdctl_until_ok(endpoints: str, *args: str, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
    """Run etcdctl until it succeeds: membership changes are refused as "unhealthy" until every
    member has been connected for etcd's health interval (5 s)."""
    results: list[subprocess.CompletedProcess[str]] = []

    def ok() -> bool:
        results.append(etcdctl(endpoints, *args, check=False))
        return results[-1].returncode == 0

    try:
        wait_until(ok, timeout, f"etcdctl {' '.join(args)} kept failing")
    except TimeoutError:
        raise AssertionError(f"etcdctl {' '.join(args)} kept failing: {results[-1].stderr}") from None
    return results[-1]


def etcdpy_cli(endpoints: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run etcdpy's own CLI against `endpoints`."""
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "etcdpy", "--endpoints", endpoints, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"etcdpy {' '.join(args)} failed: {result.stderr}")
    return result


@contextmanager
def running_cluster(
    kind: str, root: Path, size: int, extra_args: list[str] | None = None
) -> Iterator[ProcCluster]:
    cluster = ProcCluster(kind, root, size, extra_args)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
