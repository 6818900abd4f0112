"""RunPlan: everything a seed decides about a run, drawn up front from `random.Random(seed)`."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .network import NetworkFaults
from .node import NodeSettings

DEFAULT_STEPS = 300
APPS = ("toy", "server")  # what nodes apply entries to: see application.py and serverapp.py
SERVER_COMPACTION_RATE = 0.02  # with the server's applier: per step, probability of a compaction proposal
# With the server's applier and crashes on: per snapshot install batch, probability that power fails after it.
SERVER_INSTALL_POWER_LOSS = 0.1


@dataclass(frozen=True)
class RunPlan:
    """RunPlan is the shape of one simulated run: cluster size, faults and their rates, workload."""

    seed: int
    nodes: int
    steps: int  # steps with faults and clients
    settle_steps: int  # then: faults healed, crashed nodes restarted, clients finish
    settings: NodeSettings
    network: NetworkFaults
    crash_rate: float  # per step: probability a node crashes
    max_down: int  # crashed nodes at most at once
    restart_delay: tuple[int, int]  # a crashed node restarts after this many steps (inclusive range)
    partition_rate: float  # per step: probability a partition starts (if none is on)
    conf_change_rate: float  # per step: probability the operator changes membership
    transfer_rate: float  # per step: probability the operator moves leadership
    clients: int
    tick_skip: float  # per node and step: probability its clock misses the tick (clock skew)
    app: str = "toy"  # one of APPS
    compaction_rate: float = 0.0  # per step: probability the operator proposes a compaction (server app)
    install_power_loss: float = 0.0  # per snapshot install batch: probability power fails after it (server)

    @classmethod
    def from_seed(cls, seed: int, steps: int = DEFAULT_STEPS, app: str = "toy") -> RunPlan:
        """From_seed draws a plan; every run has faults, each run its own mix of them.

        The application does not change what is drawn: a seed has the same plan with either.
        """
        if app not in APPS:
            raise ValueError(f"unknown application {app!r}: one of {', '.join(APPS)}")
        rng = random.Random(seed)
        nodes = rng.choice((3, 3, 5))
        quorum = nodes // 2 + 1
        settings = NodeSettings(
            election_tick=10,
            heartbeat_tick=rng.choice((1, 2, 3)),
            pre_vote=rng.random() < 0.7,
            check_quorum=rng.random() < 0.7,
            max_size_per_msg=rng.choice((200, 1 << 20)),
            max_inflight_msgs=rng.choice((2, 256)),
            snapshot_every=rng.choice((0, 8, 20)),
            keep_entries=rng.choice((0, 3)),
            max_sync_delay=rng.choice((0, 1, 3)),
        )
        network = NetworkFaults(
            drop=rng.choice((0.0, 0.02, 0.1, 0.25)),
            duplicate=rng.choice((0.0, 0.05)),
            max_delay=rng.choice((0, 2, 6)),
        )
        crash_rate = rng.choice((0.0, 0.01, 0.03))
        return cls(
            seed=seed,
            nodes=nodes,
            steps=steps,
            settle_steps=150,
            settings=settings,
            network=network,
            crash_rate=crash_rate,
            # sometimes a majority may be down at once: safety must hold, progress need not
            max_down=nodes - quorum + (1 if rng.random() < 0.15 else 0),
            restart_delay=(5, 60),
            partition_rate=rng.choice((0.0, 0.01, 0.03)),
            conf_change_rate=rng.choice((0.0, 0.02, 0.05)),
            transfer_rate=rng.choice((0.0, 0.01)),
            clients=rng.choice((2, 4, 6)),
            tick_skip=rng.choice((0.0, 0.0, 0.1, 0.3)),
            app=app,
            compaction_rate=SERVER_COMPACTION_RATE if app == "server" else 0.0,
            install_power_loss=SERVER_INSTALL_POWER_LOSS if app == "server" and crash_rate else 0.0,
        )
