"""Helpers for the raft unit tests: quiet in-process clusters built on the interaction driver."""

from __future__ import annotations

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft import MemoryStorage
from etcdpy.raft.config import RaftConfig
from etcdpy.raft.raft import Raft

from .interaction import LEVELS, Env


def cluster(n: int = 3, leader: int | None = 1, **options: object) -> Env:
    """Cluster boots n voters from a snapshot at index 1 and (optionally) elects a leader."""
    env = Env()
    env.logger.level = LEVELS["none"]
    env.add_nodes(n, list(range(1, n + 1)), None, 1, **options)
    if leader is not None:
        env.raw(leader).campaign()
        env.stabilize()
    return env


def lone_raft(
    nid: int = 1, peers: tuple[int, ...] = (1, 2, 3), entries: tuple[int, ...] = (), **kw: object
) -> Raft:
    """Lone_raft is one Raft whose log holds entries with the given terms (from index 2)."""
    s = MemoryStorage()
    meta = pb.SnapshotMetadata(index=1, term=1, conf_state=pb.ConfState(voters=peers))
    s.apply_snapshot(pb.Snapshot(metadata=meta))
    s.append([pb.Entry(index=i, term=t) for i, t in enumerate(entries, 2)])
    if entries:
        s.set_hard_state(pb.HardState(term=max(entries), commit=1))
    cfg = RaftConfig(id=nid, election_tick=10, heartbeat_tick=1, storage=s, applied=1)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return Raft(cfg)


def msg(t: pb.MessageType, frm: int, to: int, **fields: object) -> pb.Message:
    """Msg builds a message as a peer would send it."""
    return pb.Message(type=t, to=to, **{"from": frm}, **fields)  # type: ignore[arg-type]


def take(r: Raft) -> list[pb.Message]:
    """Take removes and returns every message raft queued (both kinds)."""
    out = r.msgs + r.msgs_after_append
    r.msgs, r.msgs_after_append = [], []
    return out
