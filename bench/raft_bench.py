#!/usr/bin/env python3
"""Raft throughput: a 3-node in-memory cluster committing proposals as fast as possible.

Every node has a MemoryStorage; messages are delivered in-process (no
serialization). The leader proposes batches of --batch entries (one
propose_many() call each) and keeps up to --pipeline batches in flight; the
figure is entries committed and applied on every node, per second.

Usage: python bench/raft_bench.py [--seconds 5] [--batch 64] [--size 128] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path
from random import Random

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft import MemoryStorage, RaftConfig, RawNode


class Cluster:
    """Cluster is three raft nodes wired together in-process."""

    def __init__(self) -> None:
        self.nodes: dict[int, RawNode] = {}
        self.storages: dict[int, MemoryStorage] = {}
        self.applied: dict[int, int] = {}
        voters = [1, 2, 3]
        for i in voters:
            s = MemoryStorage()
            meta = pb.SnapshotMetadata(index=1, term=1, conf_state=pb.ConfState(voters=voters))
            s.apply_snapshot(pb.Snapshot(metadata=meta))
            cfg = RaftConfig(id=i, election_tick=10, heartbeat_tick=1, storage=s, applied=1, rand=Random(i))
            self.nodes[i] = RawNode(cfg)
            self.storages[i] = s
            self.applied[i] = 0
        self.inbox: list[pb.Message] = []

    def step_round(self) -> bool:
        """Step_round handles one Ready per node, then delivers every queued message."""
        busy = False
        for i, n in self.nodes.items():
            if not n.has_ready():
                continue
            busy = True
            rd = n.ready()
            s = self.storages[i]
            if rd.entries:
                s.append(rd.entries)
            if rd.hard_state is not None:
                s.set_hard_state(rd.hard_state)
            self.inbox.extend(rd.messages)
            self.inbox.extend(rd.persisted_messages)
            if rd.committed_entries:
                last = rd.committed_entries[-1].index
                self.applied[i] = last
                # Keep memory flat: compact what every node has applied, now and then.
                if last - s.first_index() > 20_000:
                    s.compact(last - 10_000)
            n.advance(rd)
        msgs, self.inbox = self.inbox, []
        for m in msgs:
            self.nodes[m.to].step(m)
        return busy or bool(msgs)

    def elect(self) -> None:
        self.nodes[1].campaign()
        while self.step_round():
            pass


def run(seconds: float, batch: int, size: int, pipeline: int) -> tuple[int, float]:
    c = Cluster()
    c.elect()
    leader = c.nodes[1]
    base = min(c.applied.values())  # the leader's empty entry of its term
    payloads = [b"x" * size] * batch
    proposed = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        # Keep a few batches in flight: pipelining as a busy server would.
        while proposed - (min(c.applied.values()) - base) < pipeline * batch:
            leader.propose_many(payloads)
            proposed += batch
        c.step_round()
    while c.step_round():
        pass
    elapsed = time.perf_counter() - start
    committed = min(c.applied.values()) - base
    assert committed == proposed, (committed, proposed)
    return committed, elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=128, help="payload bytes per entry")
    ap.add_argument("--pipeline", type=int, default=4, help="batches in flight")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
    committed, elapsed = run(args.seconds, args.batch, args.size, args.pipeline)
    if args.profile:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    print(
        f"raft 3-node in-memory: {committed} entries committed and applied on all nodes in {elapsed:.2f}s "
        f"= {committed / elapsed:,.0f} entries/s (batch {args.batch}, {args.size} B payloads)"
    )


if __name__ == "__main__":
    main()
