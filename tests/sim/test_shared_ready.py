"""The simulator runs the member's own Ready handling: every seed tests the code that ships.

Both drivers hold a `ReadyHandler` (etcdpy/server/consensus/ready.py): the server's
RaftNode and the simulator's SimNode.  Raft's Ready is taken in one place, the
handler's `begin`, and the paths that once existed only in the server (committed
entries applied before the Ready's fsync, forwarded proposals joining the leader's
batch, the idle flush) run in simulated seeds.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft import RawNode, Ready
from etcdpy.server.consensus.node import RaftNode, RaftSettings
from etcdpy.server.consensus.ready import ReadyHandler
from etcdpy.server.storage.backend import Backend
from etcdpy.server.storage.raftlog import PreparedWrite, RaftLogStorage

from .application import ToyApplication
from .disk import FakeDisk
from .invariants import SafetyMonitor
from .node import NodeSettings, SimNode, bootstrap_storage
from .runner import run_seed

SEEDS = range(8)


class _NoState:
    """A state machine that holds nothing (the test only builds the node)."""

    def applied_index(self) -> int:
        return 0

    def apply_entries(self, entries: list[pb.Entry]) -> None:
        raise AssertionError("nothing is applied here")

    def conf_change_applied(self, entry: pb.Entry, change: pb.ConfChangeV2, conf_state: pb.ConfState) -> None:
        raise AssertionError("nothing is applied here")

    def install_state(self, snapshot: pb.Snapshot, write: PreparedWrite) -> None:
        raise AssertionError("nothing is installed here")

    def state_installed(self, snapshot: pb.Snapshot) -> None:
        raise AssertionError("nothing is installed here")


def test_the_simulated_node_and_the_server_node_hold_the_same_handler_class(tmp_path: Path) -> None:
    sim = SimNode(
        1,
        FakeDisk(bootstrap_storage([1, 2, 3])),
        ToyApplication(),
        NodeSettings(),
        random.Random(0),
        SafetyMonitor(),
        Counter(),
    )
    sim.start()
    backend = Backend(tmp_path)
    try:
        server = RaftNode(
            node_id=1,
            storage=RaftLogStorage.open(backend),
            settings=RaftSettings(tick_seconds=0.01, election_tick=10),
            state=_NoState(),
        )
        assert type(sim.core) is ReadyHandler
        assert type(server.core) is ReadyHandler
        assert not hasattr(server, "raw")  # callers go through the node's own face
    finally:
        backend.close()


def _count_calls(
    monkeypatch: pytest.MonkeyPatch, counts: Counter[str], name: str, hit: Callable[..., bool]
) -> None:
    """Wrap ReadyHandler.<name>; count a call when `hit(result, *args)` says the path did something."""
    real = getattr(ReadyHandler, name)

    def counting(self: ReadyHandler[object], *args: object) -> object:
        result = real(self, *args)
        if hit(result, *args):
            counts[name] += 1
        return result

    monkeypatch.setattr(ReadyHandler, name, counting)


@pytest.mark.parametrize("app", ["toy", "server"])
def test_seeds_run_the_paths_that_were_only_the_servers(monkeypatch: pytest.MonkeyPatch, app: str) -> None:
    """Early apply, forwarded proposals taken into the batch and the idle flush all run in seeds."""
    counts: Counter[str] = Counter()
    begin_code = ReadyHandler.begin.__code__
    real_ready = RawNode.ready

    def ready_taken_by_begin(self: RawNode) -> Ready:
        caller = sys._getframe(1).f_code
        assert caller is begin_code, f"RawNode.ready called from {caller.co_name}, not ReadyHandler.begin"
        counts["readies"] += 1
        return real_ready(self)

    monkeypatch.setattr(RawNode, "ready", ready_taken_by_begin)
    _count_calls(
        monkeypatch,
        counts,
        "_apply_durable_prefix",
        lambda rest, rd: len(rest) < len(rd.committed_entries) and bool(rd.entries or rd.hard_state),
    )
    _count_calls(monkeypatch, counts, "_queue_forwarded", lambda result, message: True)
    _count_calls(monkeypatch, counts, "flush", lambda took: bool(took))
    for seed in SEEDS:
        run_seed(seed, app=app)
    for path in ("readies", "_apply_durable_prefix", "_queue_forwarded", "flush"):
        assert counts[path] > 0, f"no {path} in {len(SEEDS)} seeds: {dict(counts)}"
