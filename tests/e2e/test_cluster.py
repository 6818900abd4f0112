"""A 3-member cluster of real processes: clients on any member, leader failure, restart and catch-up.

Each test runs against etcdpy; the ``etcd`` parameter runs the same test against
the reference etcd 3.4 to show the test asserts what etcd does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cluster_support import ProcCluster, etcdctl, etcdpy_cli, running_cluster

from etcdpy.chaos.cluster import wait_until

KINDS = ["etcdpy", pytest.param("etcd", marks=pytest.mark.interop)]


def hashes(cluster: ProcCluster) -> set[int]:
    out = etcdctl(cluster.endpoints, "endpoint", "hashkv", "-w", "json").stdout
    return {entry["HashKV"]["hash"] for entry in json.loads(out)}


@pytest.mark.parametrize("kind", KINDS)
def test_any_member_serves_writes_and_reads_of_every_client(tmp_path: Path, kind: str) -> None:
    with running_cluster(kind, tmp_path, 3) as cluster:
        for i, member in enumerate(cluster.members):
            etcdctl(member.endpoint, "put", f"k{i}", f"v{i}")
        for member in cluster.members:
            got = etcdctl(member.endpoint, "get", "k", "--prefix", "--print-value-only").stdout.split()
            assert got == ["v0", "v1", "v2"]
            got_py = etcdpy_cli(member.endpoint, "get", "k1", "--print-value-only").stdout.split()
            assert got_py == ["v1"]
        serializable = etcdctl(
            cluster.members[2].endpoint, "get", "k2", "--consistency=s", "--print-value-only"
        ).stdout.split()
        assert serializable == ["v2"]
        listed = json.loads(etcdctl(cluster.members[0].endpoint, "member", "list", "-w", "json").stdout)
        assert sorted(m["name"] for m in listed["members"]) == ["m0", "m1", "m2"]


@pytest.mark.parametrize("kind", KINDS)
def test_killing_the_leader_elects_another_and_the_restarted_member_catches_up(
    tmp_path: Path, kind: str
) -> None:
    with running_cluster(kind, tmp_path, 3) as cluster:
        leader = cluster.wait_leader()
        old_term = cluster.status(leader)["raftTerm"]  # type: ignore[index]
        etcdctl(cluster.endpoints, "put", "before", "1")
        leader.kill()
        new_leader = cluster.wait_leader(timeout=10)
        assert new_leader is not leader
        assert cluster.status(new_leader)["raftTerm"] > old_term  # type: ignore[index]
        others = ",".join(m.endpoint for m in cluster.alive())
        for i in range(20):
            etcdctl(others, "put", f"after{i}", str(i))
        leader.start()
        wait_until(lambda: len(hashes(cluster)) == 1, 20, "the restarted member did not catch up")
        got = etcdctl(leader.endpoint, "get", "after19", "--consistency=s", "--print-value-only").stdout
        assert got.split() == ["19"]


@pytest.mark.parametrize("kind", KINDS)
def test_hashkv_agrees_on_every_member_after_load(tmp_path: Path, kind: str) -> None:
    with running_cluster(kind, tmp_path, 3) as cluster:
        for i in range(30):
            member = cluster.members[i % 3]
            etcdctl(member.endpoint, "put", f"key{i % 7}", f"value{i}")
        etcdctl(cluster.members[1].endpoint, "del", "key3")
        wait_until(lambda: len(hashes(cluster)) == 1, 10, "members disagree on HashKV")


def test_a_member_down_past_the_snapshot_count_catches_up_by_snapshot(tmp_path: Path) -> None:
    # etcdpy only: etcd 3.4 keeps a fixed 5000-entry catch-up tail (no --snapshot-catchup-entries).
    args = ["--snapshot-count", "40", "--snapshot-catchup-entries", "5"]
    with running_cluster("etcdpy", tmp_path, 3, extra_args=args) as cluster:
        leader = cluster.wait_leader()
        down = next(m for m in cluster.members if m is not leader)
        down.kill()
        others = ",".join(m.endpoint for m in cluster.alive())
        for i in range(120):
            etcdctl(others, "put", f"bulk{i % 10}", str(i))
        down.start()
        wait_until(lambda: len(hashes(cluster)) == 1, 20, "the member never caught up")
        got = etcdctl(down.endpoint, "get", "bulk9", "--consistency=s", "--print-value-only").stdout
        assert got.split() == ["119"]
        assert "installed snapshot" in down.read_log()


def test_a_member_with_another_cluster_token_is_refused_by_its_peers(tmp_path: Path) -> None:
    cluster = ProcCluster("etcdpy", tmp_path, 3)
    stranger = cluster.members[2]
    stranger.extra_args = [*stranger.extra_args, "--initial-cluster-token", "another-cluster"]
    try:
        for m in cluster.members:
            m.start(wait=False)
        for m in cluster.members[:2]:
            m.wait_ready()
        etcdctl(cluster.members[0].endpoint, "put", "k", "v")  # the two matching members have a quorum
        wait_until(
            lambda: "cluster ID mismatch" in stranger.read_log(), 10, "the stranger was never told it is one"
        )
        assert "check --initial-cluster, --initial-cluster-token" in stranger.read_log()
    finally:
        cluster.stop()
