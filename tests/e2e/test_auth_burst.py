"""A burst of Authenticate calls never delays the leader's heartbeats: bcrypt runs off the event loop.

A 3-member etcdpy cluster (heartbeat 50 ms, election timeout 500 ms, the default bcrypt cost 10) with
auth enabled gets, from many threads at once, Authenticate calls to its leader: mostly the right
password, every fourth a wrong one.  The right ones never spend the failed-attempt budget, so nearly
every call runs a bcrypt check, and together they keep the leader's bcrypt threads busy for many
election timeouts (each check takes tens of milliseconds, two run at a time).  Were a check run on the
event loop, the leader would miss heartbeats for longer than an election timeout and a follower would
start an election.

The fact checked is raft's, not a clock: every member's term and leader, read from endpoint status
before and after the burst, are unchanged.  Each answer is a token, etcd's ``authentication failed``
error (wrong passwords only) or the rate limiter's ``too many requests``.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from cluster_support import ProcCluster, etcdctl

from etcdpy.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc

CALLS = 160  # at ~50-100 ms a check, two at a time on the leader: several seconds of bcrypt
THREADS = 16
PASSWORD = "alice-pw"

# (gRPC code name, details) of etcd's refusals: ErrAuthFailed, and the rate limiter's ErrTooManyRequests.
AUTH_FAILED = ("INVALID_ARGUMENT", "etcdserver: authentication failed, invalid user ID or password")
TOO_MANY = ("RESOURCE_EXHAUSTED", "etcdserver: too many requests")


class SlowElectionCluster(ProcCluster):
    """A `ProcCluster` with a 50 ms heartbeat and a 500 ms election timeout."""

    def member_args(self, initial_cluster: str, state: str) -> list[str]:
        args = super().member_args(initial_cluster, state)
        for flag, value in (("--heartbeat-interval", "50"), ("--election-timeout", "500")):
            args[args.index(flag) + 1] = value
        return args


def raft_view(cluster: ProcCluster) -> list[tuple[int, int]]:
    """(raft term, leader id) as each member reports it."""
    view = []
    for member in cluster.members:
        status = cluster.status(member)
        assert status is not None, f"{member.name} did not answer endpoint status"
        view.append((int(status["raftTerm"]), int(status["leader"])))
    return view


def authenticate(stub: Any, password: str) -> tuple[str, str]:
    """("token", "") for a token, else the refusal's (code name, details)."""
    try:
        response = stub.Authenticate(
            rpc_pb2.AuthenticateRequest(name="alice", password=password), timeout=120
        )
    except grpc.RpcError as error:
        return error.code().name, error.details() or ""
    assert response.token, "Authenticate answered without a token"
    return "token", ""


def test_a_burst_of_authenticate_calls_changes_no_term_and_no_leader(tmp_path: Path) -> None:
    cluster = SlowElectionCluster("etcdpy", tmp_path, 3)
    try:
        cluster.start()
        leader = cluster.wait_leader()
        argv = leader.command()
        assert argv[argv.index("--election-timeout") + 1] == "500", argv
        for args in (
            ("user", "add", "root:root-pw"),
            ("user", "grant-role", "root", "root"),
            ("user", "add", f"alice:{PASSWORD}"),
            ("auth", "enable"),
        ):
            etcdctl(cluster.endpoints, *args)
        before = raft_view(cluster)
        assert len(set(before)) == 1, before

        passwords = [PASSWORD if i % 4 else f"wrong-{i}" for i in range(CALLS)]
        with grpc.insecure_channel(leader.endpoint) as channel:
            stub = rpc_pb2_grpc.AuthStub(channel)
            with ThreadPoolExecutor(THREADS) as pool:
                answers = list(pool.map(lambda password: authenticate(stub, password), passwords))

        after = raft_view(cluster)
    finally:
        cluster.stop()

    assert after == before, f"term or leader changed during the burst: {before} -> {after}"
    pairs = list(zip(passwords, answers, strict=True))
    right = Counter(answer for password, answer in pairs if password == PASSWORD)
    wrong = Counter(answer for password, answer in pairs if password != PASSWORD)
    assert set(right) <= {("token", ""), TOO_MANY}, right
    assert set(wrong) <= {AUTH_FAILED, TOO_MANY}, wrong
    # The burst did run bcrypt: right passwords got tokens, wrong ones were checked and refused.
    assert right["token", ""] > CALLS // 2, right
    assert wrong[AUTH_FAILED] > 0, wrong
