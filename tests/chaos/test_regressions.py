"""Anomalies the chaos suite found in etcdpy, each pinned by a direct reproduction.

A test here is a strict xfail while its bug is open: once fixed it fails as XPASS, and
the marker comes off.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from etcdpy.chaos import ChaosCluster
from etcdpy.chaos.checks import check_hashes_agree
from etcdpy.chaos.cluster import serves, wait_until
from etcdpy.client import Client

SNAPSHOT_ARGS = ["--snapshot-count", "40", "--snapshot-catchup-entries", "10"]


@pytest.mark.parametrize(
    "point",
    [
        "raftBeforeApplySnap",
        "snapshotDuringReceive",
        "raftAfterApplySnap",  # was a bug: the stream was labelled with the older raft snapshot index
    ],
)
def test_a_member_that_crashes_while_taking_a_snapshot_serves_again_after_a_restart(
    tmp_path: Path, point: str
) -> None:
    cluster = ChaosCluster(tmp_path, 3, extra_args=SNAPSHOT_ARGS)
    try:
        cluster.start()
        leader = cluster.wait_leader()
        behind = next(m for m in cluster.members if m is not leader)
        cluster.kill(behind)
        # Past --snapshot-count and the catch-up entries: the leader's log no longer reaches back.  (A
        # client of the leader alone: the cluster's client may hold a dead connection to `behind`.)
        with Client([leader.endpoint], command_timeout=10.0) as client:
            for i in range(80):
                client.put(f"/k{i % 9}".encode(), f"v{i}".encode())
        cluster.launch(behind, failpoints=f"{point}=crash")
        assert behind.proc is not None
        assert behind.proc.wait(timeout=60) == 97, "the failpoint was not reached"
        spooled = behind.data_dir / "member" / "snap"
        left = {p.suffix for p in spooled.iterdir()}
        # What the crash left in the spool: the stream's partial file, the received one not yet installed,
        # or nothing (an installed file is deleted before raftAfterApplySnap).  The restart clears it.
        expected = {"snapshotDuringReceive": {".incoming"}, "raftBeforeApplySnap": {".snap"}}
        assert left == expected.get(point, set()), left
        cluster.launch(behind)
        wait_until(lambda: serves(behind, b"/k1"), 30, f"{behind.name} does not serve again")
        with Client([leader.endpoint], command_timeout=10.0) as client:
            revision = client.get(b"/k1").header.revision
            endpoints = [m.endpoint for m in cluster.members]
            verdict = check_hashes_agree(client, endpoints, revision)
            assert verdict.held, verdict.detail
        assert not list(spooled.iterdir()), "a received snapshot file outlived its install"
    finally:
        cluster.stop()


def test_a_leader_that_crashes_while_sending_a_snapshot_loses_nothing(tmp_path: Path) -> None:
    """The sender's side of a snapshot (snapshotDuringSend): its crash loses no acknowledged write."""
    cluster = ChaosCluster(tmp_path, 3, extra_args=SNAPSHOT_ARGS)
    try:
        cluster.start()
        behind, *senders = cluster.members
        cluster.kill(behind)
        for member in senders:  # whichever of the two leads will send the snapshot, and die there
            cluster.kill(member)
            cluster.launch(member, failpoints="snapshotDuringSend=crash")
        leader = cluster.wait_leader()
        acked: dict[bytes, bytes] = {}
        with Client([leader.endpoint], command_timeout=10.0) as client:  # no connection to the dead ones
            for i in range(80):
                key, value = f"/k{i % 9}".encode(), f"v{i}".encode()
                client.put(key, value)
                acked[key] = value
        cluster.launch(behind)
        wait_until(
            lambda: any(m.proc is not None and m.proc.poll() == 97 for m in senders),
            60,
            "no sender reached snapshotDuringSend",
        )
        for member in senders:
            cluster.kill(member)
            cluster.launch(member)
        for member in cluster.members:
            wait_until(lambda m=member: serves(m, b"/k1"), 30, f"{member.name} does not serve again")
            with Client([member.endpoint], command_timeout=5.0) as reader:
                assert {key: reader.get(key).kvs[0].value for key in acked} == acked
    finally:
        cluster.stop()
