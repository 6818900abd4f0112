"""Leases on a 3-member cluster: keep-alive and time-to-live via a follower, expiry across a leader change."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cluster_support import ELECTION_MS, running_cluster

from etcdpy.chaos.cluster import wait_until
from etcdpy.client import Client


def test_keep_alive_and_time_to_live_through_a_follower(tmp_path: Path) -> None:
    with running_cluster("etcdpy", tmp_path, 3) as cluster:
        leader = cluster.wait_leader()
        follower = next(m for m in cluster.members if m is not leader)
        with Client([leader.endpoint]) as on_leader, Client([follower.endpoint]) as on_follower:
            lease = on_leader.lease_grant(30)
            on_leader.put("fk", "v", lease=lease.ID)
            assert on_follower.lease_keep_alive_once(lease.ID).TTL == 30
            ttl = on_follower.lease_time_to_live(lease.ID, keys=True)
            assert 28 <= ttl.TTL <= 30 and list(ttl.keys) == [b"fk"]
            on_follower.lease_revoke(lease.ID)
            assert on_leader.lease_time_to_live(lease.ID).TTL == -1
            assert on_follower.get("fk").count == 0


@pytest.mark.slow
def test_a_leader_change_neither_resets_nor_extends_a_lease_much(tmp_path: Path) -> None:
    ttl = 20
    with running_cluster("etcdpy", tmp_path, 3) as cluster:
        leader = cluster.wait_leader()
        survivor = next(m for m in cluster.members if m is not leader)
        with Client([leader.endpoint]) as c:
            granted = time.monotonic()
            lease = c.lease_grant(ttl)
            c.put("lc", "v", lease=lease.ID)
        time.sleep(9)  # past a checkpoint (every 5 s): the new leader counts from what was left
        leader.kill()
        with Client([survivor.endpoint]) as c:

            def gone() -> bool:
                try:
                    return c.get("lc").count == 0
                except Exception:  # no leader yet
                    return False

            wait_until(gone, 30, "the lease never expired after the leader change")
            elapsed = time.monotonic() - granted
        # A checkpoint at most 5 s old: at most 5 s (plus an election) late.  A reset TTL would
        # expire near 9 + election + 20 s, past the bound.
        assert ttl - 0.1 <= elapsed <= ttl + 5 + 2 * ELECTION_MS / 1000 + 1.5, elapsed


def test_a_member_caught_up_by_snapshot_knows_the_leases_granted_meanwhile(tmp_path: Path) -> None:
    args = ["--snapshot-count", "40", "--snapshot-catchup-entries", "5"]
    with running_cluster("etcdpy", tmp_path, 3, extra_args=args) as cluster:
        leader = cluster.wait_leader()
        down = next(m for m in cluster.members if m is not leader)
        down.kill()
        with Client([leader.endpoint]) as c:
            lease = c.lease_grant(300)
            c.put("snap", "v", lease=lease.ID)
            for i in range(60):
                c.put(f"bulk{i % 10}", str(i))
        down.start()
        with Client([down.endpoint]) as c:

            def knows_lease() -> bool:
                return lease.ID in [s.ID for s in c.lease_leases().leases]

            wait_until(knows_lease, 20, "the restarted member never learned the lease")
        assert "installed snapshot" in down.read_log()
        with Client([leader.endpoint]) as c:
            c.lease_revoke(lease.ID)
        with Client([down.endpoint]) as c:
            wait_until(lambda: c.get("snap", serializable=True).count == 0, 10, "revoke not applied")
