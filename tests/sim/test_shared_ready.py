"""The simulator runs the member's own Ready handling and snapshot path: every seed tests the code that ships.

Both drivers hold a `ReadyHandler` (etcdpy/server/consensus/ready.py): the server's
RaftNode and the simulator's SimNode.  Raft's Ready is taken in one place, the
handler's `begin`, and the paths that once existed only in the server (committed
entries applied before the Ready's fsync, forwarded proposals joining the leader's
batch, the idle flush) run in simulated seeds.

Snapshots received, installed and sent go through etcdpy/server/consensus/snapshots.py
in both: the member's Replication and the simulator's server application hold the
same `ReceivedSnapshots` and relabel what they send with the same `snapshot_to_send`;
every snapshot of the simulated seeds is counted through that code.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft import RawNode, Ready
from etcdpy.server.apply import Applier
from etcdpy.server.consensus import snapshots
from etcdpy.server.consensus.membership import Cluster, MembershipApplier, cluster_id
from etcdpy.server.consensus.node import RaftNode, RaftSettings
from etcdpy.server.consensus.ready import ReadyHandler
from etcdpy.server.consensus.replication import Replication
from etcdpy.server.consensus.snapshots import ReceivedSnapshots
from etcdpy.server.storage.backend import Backend
from etcdpy.server.storage.raftlog import PreparedWrite, RaftLogStorage

from .application import ToyApplication
from .disk import FakeDisk
from .invariants import SafetyMonitor
from .node import NodeSettings, SimNode, bootstrap_storage
from .runner import run_seed
from .serverapp import ServerApplication

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
            send=lambda messages: None,
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


def test_the_simulated_server_and_the_members_replication_hold_the_same_snapshot_keeper(
    tmp_path: Path,
) -> None:
    app = ServerApplication(tmp_path / "sim", random.Random(0), Counter())
    app.restart(FakeDisk(bootstrap_storage([1, 2, 3])))
    members = {1: rpc_pb2.Member(ID=1, peerURLs=["http://127.0.0.1:9"])}
    cluster = Cluster(cluster_id(members), 1, members)
    backend = Backend(tmp_path / "member")
    try:
        replication = Replication(
            backend=backend,
            applier=Applier(backend),
            cluster=cluster,
            raftlog=RaftLogStorage.open(backend),
            settings=RaftSettings(tick_seconds=0.01, election_tick=10),
            membership=MembershipApplier(backend, cluster),
            apply_entries=lambda entries: None,
        )
        assert type(app.received_snapshots) is ReceivedSnapshots
        assert type(replication.received_snapshots) is ReceivedSnapshots
    finally:
        app.close()
        backend.close()


def test_every_simulated_snapshot_goes_through_the_members_snapshot_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server application keeps, installs and relabels snapshots with consensus/snapshots.py only.

    Counted independently of that code: each MsgSnap a node receives is kept (or refused) by
    `ReceivedSnapshots.keep`; each install the node begins goes through `install`, and each one
    it completes through `installed`; each MsgSnap a node sends is relabelled by `relabel_snapshot`.
    """
    calls: Counter[str] = Counter()

    def counting(owner: object, name: str, count: Callable[..., str | None]) -> None:
        real = getattr(owner, name)

        def wrapper(*args: object, **kwargs: object) -> object:
            calls[name] += 1
            result = real(*args, **kwargs)
            counted = count(result, *args)
            if counted is not None:
                calls[counted] += 1
            return result

        monkeypatch.setattr(owner, name, wrapper)

    def snap_sent(result: pb.Message | None, app: object, message: pb.Message, *rest: object) -> str | None:
        return "MsgSnap sent" if message.type == pb.MsgSnap else None

    def snap_received(result: pb.Message, app: object, message: pb.Message) -> str | None:
        return "MsgSnap received" if message.type == pb.MsgSnap else None

    def relabelled(result: pb.Message | None, message: pb.Message, applied: int, *rest: object) -> str:
        if result is None:
            return "not sent"
        return "relabelled" if applied != message.snapshot.metadata.index else "sent as is"

    counting(ServerApplication, "sending", snap_sent)
    counting(ServerApplication, "receiving", snap_received)
    counting(ReceivedSnapshots, "keep", lambda kept, *args: "kept" if kept else None)
    counting(ReceivedSnapshots, "install", lambda *args: None)
    counting(ReceivedSnapshots, "installed", lambda *args: None)
    counting(snapshots, "relabel_snapshot", relabelled)
    stats: Counter[str] = Counter()
    for seed in SEEDS:
        stats.update(run_seed(seed, app="server").stats)
    assert calls["keep"] == calls["MsgSnap received"] > 0, calls
    assert calls["kept"] == stats["snapshots_spooled"] > 0, (calls, stats)
    assert calls["install"] == stats["snapshots_installed"] + stats["installs_interrupted"], (calls, stats)
    assert calls["installed"] == stats["snapshots_installed"] > 0, (calls, stats)
    assert calls["relabel_snapshot"] == calls["MsgSnap sent"] > 0, calls
    assert calls["relabelled"] == stats["snapshots_relabelled"] > 0, (calls, stats)
