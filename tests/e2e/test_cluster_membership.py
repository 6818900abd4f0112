"""Membership changes on a cluster of real processes: learners, removal, replacement, leadership moves.

Each test runs against etcdpy; the ``etcd`` parameter runs it against the reference
etcd 3.4 to show it asserts what etcd does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from cluster_support import ProcCluster, etcdctl, etcdctl_until_ok, etcdpy_cli, running_cluster
from procs import ServerProcess

from etcdpy.chaos.cluster import wait_until

KINDS = ["etcdpy", pytest.param("etcd", marks=pytest.mark.interop)]


def members(cluster: ProcCluster, endpoint: str | None = None) -> list[dict[str, Any]]:
    out = etcdctl(endpoint or cluster.alive()[0].endpoint, "member", "list", "-w", "json").stdout
    listed: list[dict[str, Any]] = json.loads(out)["members"]
    return listed


def member_id(cluster: ProcCluster, name: str) -> str:
    """The hex ID of the cluster's member called `name` (found by its peer URL: names come later)."""
    (proc,) = [m for m in cluster.members if m.name == name]
    (found,) = [m for m in members(cluster) if m["peerURLs"] == [proc.peer_url]]
    return f"{found['ID']:x}"


def join(cluster: ProcCluster, name: str, root: Path, *, learner: bool = False) -> ServerProcess:
    """Add a member with `member add`, then start it with --initial-cluster-state=existing."""
    root.mkdir(parents=True, exist_ok=True)
    new = ServerProcess(cluster.kind, root / f"{name}.data", name=name)
    args = ["member", "add", name, f"--peer-urls={new.peer_url}"]
    if learner:
        args.append("--learner")
    out = etcdctl_until_ok(cluster.endpoints, *args).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("ETCD_"))
    assert env["ETCD_NAME"] == f'"{name}"'
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == '"existing"'
    new.extra_args = cluster.member_args(env["ETCD_INITIAL_CLUSTER"].strip('"'), "existing")
    cluster.members.append(new)
    new.start()
    return new


@pytest.mark.parametrize("kind", KINDS)
def test_a_learner_joins_catches_up_and_is_promoted(tmp_path: Path, kind: str) -> None:
    with running_cluster(kind, tmp_path, 3) as cluster:
        for i in range(10):
            etcdctl(cluster.endpoints, "put", f"k{i}", "v")
        learner = join(cluster, "m3", tmp_path, learner=True)
        listed = {m["peerURLs"][0]: m for m in members(cluster)}
        assert listed[learner.peer_url].get("isLearner") is True
        # A learner serves serializable reads only.
        wait_until(
            lambda: etcdctl(learner.endpoint, "get", "k9", "--consistency=s", check=False).stdout != "",
            10,
            "the learner never caught up",
        )
        status = cluster.status(learner)
        assert status is not None and status.get("isLearner") is True
        refused = etcdctl(learner.endpoint, "get", "k9", check=False)
        assert "rpc not supported for learner" in refused.stderr
        lid = member_id(cluster, "m3")
        wait_until(
            lambda: etcdctl(cluster.endpoints, "member", "promote", lid, check=False).returncode == 0,
            10,
            "the learner was never promoted",
        )

        # The promote is answered once the leader applied it; the member answering member list may
        # apply it a moment later (member list is not linearizable in etcd 3.4).
        def promoted() -> bool:
            return {m["peerURLs"][0]: m for m in members(cluster)}[learner.peer_url].get("isLearner") is None

        wait_until(
            promoted,
            10,
            "member list never showed the promotion",
        )
        etcdctl(learner.endpoint, "put", "after", "promotion")


@pytest.mark.parametrize("kind", KINDS)
def test_promoting_a_voter_is_refused(tmp_path: Path, kind: str) -> None:
    with running_cluster(kind, tmp_path, 3) as cluster:
        refused = etcdctl(cluster.endpoints, "member", "promote", member_id(cluster, "m1"), check=False)
        assert refused.returncode != 0
        assert "can only promote a learner member" in refused.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_removing_a_follower_and_replacing_it_with_a_wiped_member(tmp_path: Path, kind: str) -> None:
    with running_cluster(kind, tmp_path, 3) as cluster:
        leader = cluster.wait_leader()
        victim = next(m for m in cluster.members if m is not leader)
        # Asked of the leader: were the victim itself to serve the request, it could stop before answering,
        # and the retry would then find the member gone.
        out = etcdctl_until_ok(leader.endpoint, "member", "remove", member_id(cluster, victim.name)).stdout
        assert "removed from cluster" in out
        assert victim.proc is not None
        victim.proc.wait(timeout=20)  # a removed member stops by itself
        cluster.members.remove(victim)
        assert sorted(m["name"] for m in members(cluster)) == sorted(m.name for m in cluster.members)
        etcdctl(cluster.endpoints, "put", "while", "two")
        shutil.rmtree(victim.data_dir)
        replacement = join(cluster, victim.name, tmp_path / "again")
        got = etcdctl(replacement.endpoint, "get", "while", "--print-value-only").stdout.split()
        assert got == ["two"]


@pytest.mark.parametrize("kind", KINDS)
def test_removing_the_leader_elects_a_new_one(tmp_path: Path, kind: str) -> None:
    with running_cluster(kind, tmp_path, 3) as cluster:
        leader = cluster.wait_leader()
        follower = next(m for m in cluster.members if m is not leader)  # not the member being removed
        etcdctl_until_ok(follower.endpoint, "member", "remove", member_id(cluster, leader.name))
        assert leader.proc is not None
        leader.proc.wait(timeout=20)
        cluster.members.remove(leader)
        new_leader = cluster.wait_leader()
        assert new_leader is not leader
        etcdctl(cluster.endpoints, "put", "after", "removal")


@pytest.mark.parametrize("kind", KINDS)
def test_move_leader_hands_leadership_to_the_target(tmp_path: Path, kind: str) -> None:
    with running_cluster(kind, tmp_path, 3) as cluster:
        leader = cluster.wait_leader()
        target = next(m for m in cluster.members if m is not leader)
        out = etcdctl(leader.endpoint, "move-leader", member_id(cluster, target.name)).stdout
        assert "Leadership transferred from" in out
        assert cluster.wait_leader() is target
        refused = etcdctl(leader.endpoint, "move-leader", member_id(cluster, leader.name), check=False)
        assert "etcdserver: not leader" in refused.stderr or refused.returncode != 0


@pytest.mark.parametrize("kind", KINDS)
def test_the_strict_check_refuses_a_change_that_would_lose_quorum(tmp_path: Path, kind: str) -> None:
    with running_cluster(kind, tmp_path, 3) as cluster:
        leader = cluster.wait_leader()
        down = [m for m in cluster.members if m is not leader]
        down[0].kill()
        # With one of three down, adding a fourth voter would need 3 of 4 started: 2 are.
        refused = etcdctl(
            leader.endpoint, "member", "add", "m9", "--peer-urls=http://127.0.0.1:9", check=False
        )
        assert refused.returncode != 0
        assert "unhealthy cluster" in refused.stderr or "not enough started members" in refused.stderr
        # Removing the last healthy follower would leave the leader alone: refused.
        refused = etcdctl(leader.endpoint, "member", "remove", member_id(cluster, down[1].name), check=False)
        assert refused.returncode != 0
        assert "unhealthy cluster" in refused.stderr or "not enough started members" in refused.stderr


def test_an_auto_promote_learner_promotes_itself_once_caught_up(tmp_path: Path) -> None:
    # Beyond etcd: `member add --learner --auto-promote` prints ETCD_AUTO_PROMOTE, the new member obeys it.
    with running_cluster("etcdpy", tmp_path, 3) as cluster:
        for i in range(20):
            etcdctl(cluster.endpoints, "put", f"k{i}", "v")
        new = ServerProcess("etcdpy", tmp_path / "m3.data", name="m3")
        added: list[str] = []

        def add() -> bool:
            result = etcdpy_cli(
                cluster.endpoints,
                "member",
                "add",
                "m3",
                "--learner",
                "--auto-promote",
                f"--peer-urls={new.peer_url}",
                check=False,
            )
            added.append(result.stdout)
            return result.returncode == 0

        wait_until(add, 15, "member add kept failing")
        env = dict(line.split("=", 1) for line in added[-1].splitlines() if line.startswith("ETCD_"))
        assert env["ETCD_AUTO_PROMOTE"] == '"true"'
        new.extra_args = [
            *cluster.member_args(env["ETCD_INITIAL_CLUSTER"].strip('"'), "existing"),
            "--auto-promote",
        ]
        cluster.members.append(new)
        new.start()
        wait_until(
            lambda: {m["peerURLs"][0]: m for m in members(cluster)}[new.peer_url].get("isLearner") is None,
            15,
            "the learner never promoted itself",
        )
        etcdctl(new.endpoint, "put", "from", "promoted")
