"""The harness sees what it must and leaves what a human needs when it does.

A serializable read is allowed to be stale, so reading one from a member cut off by a
partition and recording it as a linearizable read is an anomaly the checker must
report; the same read made linearizable is refused instead of answered stale.  A run
that fails keeps its folder: history, verdict, nemesis log, data dirs, logs, rerun command.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etcdpy.chaos import SCENARIOS, ChaosCluster, LinkFault, RunHistory, Verdict, checks, run_scenario
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
        with Client([cut_off.endpoint], command_timeout=1.0) as local:

            def follower_has_x() -> bool:  # the follower may still be publishing itself (not serving yet)
                try:
                    return bool(local.get(KEY, serializable=True).kvs)
                except EtcdError:
                    return False

            wait_until(follower_has_x, 20, "the follower never got x=1")
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


def test_a_failing_run_leaves_its_folder_and_the_command_that_reruns_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disagreeing_hashes(client: Client, endpoints: list[str], final_revision: int) -> Verdict:
        return Verdict("hashkv equal", False, len(endpoints), "planted: members disagree")

    monkeypatch.setattr(checks, "check_hashes_agree", disagreeing_hashes)
    folder = tmp_path / "run"
    result = run_scenario(SCENARIOS["single-kill"], 7, 1.0, folder, rerun="rerun me with seed 7")
    assert not result.passed
    assert "planted: members disagree" in result.summary()
    assert "rerun: rerun me with seed 7" in result.summary()
    assert str(folder) in result.summary()
    assert (folder / "rerun.txt").read_text() == "rerun me with seed 7\n"
    assert "hashkv equal: VIOLATED" in (folder / "verdict.txt").read_text()
    recorded = json.loads((folder / "history.json").read_text())
    assert recorded["seed"] == 7 and recorded["kv_operations"]
    assert (folder / "members" / "m0.log").read_text()
    assert (folder / "members" / "m0.data").is_dir()
    assert "kill -9 m0" in (folder / "nemesis.log").read_text()
