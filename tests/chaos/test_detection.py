"""The harness sees what it must: a stale read from a cut-off member fails the linearizability check.

A serializable read is allowed to be stale, so reading one from a member cut off by a
partition and recording it as a linearizable read is an anomaly the checker must
report; the same read made linearizable is refused instead of answered stale.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from etcdpy.chaos import ChaosCluster, LinkFault, RunHistory
from etcdpy.chaos.checks import check_linearizable
from etcdpy.chaos.cluster import wait_until
from etcdpy.chaos.workload import Context, Process, recorded_put
from etcdpy.checker import KvInput, KvOutput
from etcdpy.client import Client, EtcdError

KEY = b"/chaos/reg/x"


def test_a_stale_read_from_a_partitioned_member_is_caught(tmp_path: Path) -> None:
    cluster = ChaosCluster(tmp_path, 3)
    run = RunHistory()
    ctx = Context(cluster.endpoints, run, seed=1)
    try:
        cluster.start()
        leader = cluster.wait_leader()
        cut_off = next(m for m in cluster.members if m is not leader)
        writer = ctx.client(leader.index, single=True)
        assert recorded_put(ctx, Process(1), writer, KEY, b"1") is not None
        with Client([cut_off.endpoint]) as local:
            wait_until(lambda: bool(local.get(KEY, serializable=True).kvs), 10, "the follower never got x=1")
            cluster.isolate(cut_off, LinkFault(cut=True))
            assert recorded_put(ctx, Process(2), writer, KEY, b"2") is not None
            handle = run.kv.call(3, KvInput.get(KEY.decode()))
            stale = local.get(KEY, serializable=True)
            run.kv.returned(handle, KvOutput(stale.kvs[0].value.decode()))
            assert stale.kvs[0].value == b"1"
            verdict = check_linearizable(run)
            assert verdict.held is False, verdict
            assert "get('/chaos/reg/x') = '1'" in verdict.detail
            with pytest.raises(EtcdError):
                local.get(KEY, timeout=1.5)  # linearizable: no quorum behind it, so no answer
    finally:
        ctx.close()
        cluster.stop()
