"""etcdpy's `member add/update/promote/remove` and `move-leader` print what etcdctl prints.

Run against both a 3-member etcdpy cluster and a 3-member etcd 3.4 (the latter
shows the expected text is etcd's).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cluster_support import ProcCluster, etcdctl, etcdpy_cli, running_cluster

from etcdpy.chaos.cluster import wait_until

KINDS = ["etcdpy", pytest.param("etcd", marks=pytest.mark.interop)]


def ids(cluster: ProcCluster) -> dict[str, int]:
    """Member IDs by first peer URL."""
    out = etcdctl(cluster.members[0].endpoint, "member", "list", "-w", "json").stdout
    return {m["peerURLs"][0]: m["ID"] for m in json.loads(out)["members"]}


@pytest.mark.parametrize("kind", KINDS)
def test_member_add_update_promote_remove_print_etcdctls_lines(tmp_path: Path, kind: str) -> None:
    with running_cluster(kind, tmp_path, 3) as cluster:
        ep = cluster.members[0].endpoint
        url = "http://127.0.0.1:1"
        added: list[str] = []

        def add() -> bool:  # refused as "unhealthy" until the members have been connected for 5 s
            result = etcdpy_cli(ep, "member", "add", "newbie", "--learner", f"--peer-urls={url}", check=False)
            added.append(result.stdout)
            return result.returncode == 0

        wait_until(add, 15, "member add kept failing")
        new_id = ids(cluster)[url]
        cluster_id = json.loads(etcdctl(ep, "member", "list", "-w", "json").stdout)["header"]["cluster_id"]
        lines = added[-1].split("\n")
        assert lines[0] == f"Member {new_id:16x} added to cluster {cluster_id:16x}"
        assert lines[1] == ""
        assert lines[2] == 'ETCD_NAME="newbie"'
        initial = re.fullmatch(r'ETCD_INITIAL_CLUSTER="(.*)"', lines[3])
        assert initial is not None
        expected = {f"{m.name}={m.peer_url}" for m in cluster.members} | {f"newbie={url}"}
        assert set(initial.group(1).split(",")) == expected
        assert lines[4:] == [
            f'ETCD_INITIAL_ADVERTISE_PEER_URLS="{url}"',
            'ETCD_INITIAL_CLUSTER_STATE="existing"',
            "",
        ]

        out = etcdpy_cli(ep, "member", "update", f"{new_id:x}", f"--peer-urls={url}2").stdout
        assert out == f"Member {new_id:16x} updated in cluster {cluster_id:16x}\n"
        refused = etcdpy_cli(ep, "member", "promote", f"{new_id:x}", check=False)
        assert refused.returncode == 1
        assert (
            "Error: etcdserver: can only promote a learner member which is in sync with leader"
            in refused.stderr
        )
        out = etcdpy_cli(ep, "member", "remove", f"{new_id:x}").stdout
        assert out == f"Member {new_id:16x} removed from cluster {cluster_id:16x}\n"
        assert url + "2" not in ids(cluster)


@pytest.mark.parametrize("kind", KINDS)
def test_move_leader_finds_the_leader_among_the_endpoints(tmp_path: Path, kind: str) -> None:
    with running_cluster(kind, tmp_path, 3) as cluster:
        leader = cluster.wait_leader()
        target = next(m for m in cluster.members if m is not leader)
        by_url = ids(cluster)
        out = etcdpy_cli(cluster.endpoints, "move-leader", f"{by_url[target.peer_url]:x}").stdout
        assert (
            out == f"Leadership transferred from {by_url[leader.peer_url]:x} to {by_url[target.peer_url]:x}\n"
        )
        assert cluster.wait_leader() is target
        followers = ",".join(m.endpoint for m in cluster.members if m is not target)
        refused = etcdpy_cli(followers, "move-leader", "1", check=False)
        assert refused.returncode == 128
        assert refused.stderr == f"Error: no leader endpoint given at [{followers.replace(',', ' ')}]\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["member", "add"], "member name not provided"),
        (["member", "add", "x"], "member peer urls not provided"),
        (["member", "remove"], "member ID is not provided"),
        (
            ["member", "remove", "zz"],
            'bad member ID arg (strconv.ParseUint: parsing "zz": invalid syntax), expecting ID in Hex',
        ),
        (["member", "update", "12"], "member peer urls not provided"),
        (["member", "promote"], "member ID is not provided"),
        (["move-leader"], "move-leader command needs 1 argument"),
        (["move-leader", "zz"], 'strconv.ParseUint: parsing "zz": invalid syntax'),
    ],
)
def test_bad_arguments_exit_128_with_etcdctls_message(args: list[str], message: str) -> None:
    ours = etcdpy_cli("127.0.0.1:1", *args, check=False)
    theirs = etcdctl("127.0.0.1:1", *args, check=False)
    assert (ours.returncode, ours.stderr) == (128, f"Error: {message}\n")
    assert theirs.returncode == 128 and f"Error: {message}" in theirs.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_member_add_with_a_bad_peer_url_is_refused(tmp_path: Path, kind: str) -> None:
    with running_cluster(kind, tmp_path, 1) as cluster:
        for bad in ("foo", "http://127.0.0.1", "ftp://127.0.0.1:1"):
            refused = etcdpy_cli(cluster.endpoints, "member", "add", "x", f"--peer-urls={bad}", check=False)
            assert refused.returncode == 1
            assert refused.stderr.endswith("Error: etcdserver: given member URLs are invalid\n"), bad
