"""Crash safety: kill -9 an applying process at random moments; data and applied index always agree.

Entry i (raft index i) is a txn writing ``e<i>`` = i and rewriting ``count``,
so after any crash the store must hold e1..eN exactly for N = applied index,
``count`` at version N, revision N + 1, and nothing beyond N.  The child
restarts from its stored applied index, re-offering entries it already
applied, which must be skipped.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.server.apply import Applier
from etcdpy.server.storage.backend import Backend

TOTAL = 100_000

CHILD = """
import random, sys
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2 as pb
from etcdpy.server.apply import Applier
from etcdpy.server.storage.backend import Backend

def entry(i):
    ops = [pb.RequestOp(request_put=pb.PutRequest(key=b"e%06d" % i, value=b"%d" % i)),
           pb.RequestOp(request_put=pb.PutRequest(key=b"count", value=b"%d" % i))]
    req = raft_internal_pb2.InternalRaftRequest(txn=pb.TxnRequest(success=ops))
    req.header.ID = i
    return req.SerializeToString()

applier = Applier(Backend(sys.argv[1]))
rng = random.Random(int(sys.argv[2]))
i = max(1, applier.applied_index - rng.randrange(3))  # re-offer a few applied entries, as a restart does
print("ready", flush=True)
while i <= int(sys.argv[3]):
    n = rng.randrange(1, 6)
    applier.apply([(j, entry(j)) for j in range(i, i + n)])
    i += n
"""


def _check(data_dir: Path) -> int:
    backend = Backend(data_dir)
    applier = Applier(backend)
    n = applier.applied_index
    assert applier.current_revision == n + 1
    kvs = applier.range(pb.RangeRequest(key=b"e", range_end=b"f")).kvs
    assert [kv.key for kv in kvs] == [b"e%06d" % i for i in range(1, n + 1)]
    assert all(kv.value == b"%d" % int(kv.key[1:]) and kv.version == 1 for kv in kvs)
    if n:
        count = applier.range(pb.RangeRequest(key=b"count")).kvs[0]
        assert (count.value, count.version, count.mod_revision) == (b"%d" % n, n, n + 1)
    backend.close()
    return n


def _crash_rounds(data_dir: Path, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    progress = [0]
    for round_no in range(rounds):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(data_dir), str(round_no), str(TOTAL)],
            stdout=subprocess.PIPE,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.05, 0.4))  # the crash moment is the random variable under test
        child.kill()
        child.wait()
        child.stdout.close()
        progress.append(_check(data_dir))
    assert progress == sorted(progress) and progress[-1] > 0


def test_kill_minus_nine_mid_apply_loses_nothing_applied_and_applies_nothing_twice(tmp_path: Path) -> None:
    _crash_rounds(tmp_path, rounds=4, seed=20261129)


@pytest.mark.slow
def test_many_kills(tmp_path: Path) -> None:
    _crash_rounds(tmp_path, rounds=40, seed=7)
