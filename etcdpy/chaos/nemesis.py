"""Nemeses: the faults a chaos run injects, each undone by its own `heal`.

`inject` breaks something and says what; `heal` undoes it (restart what it killed,
resume what it paused, open what it cut).  The runner alternates the two, leaving
load running throughout, and waits for the cluster to accept writes again between
rounds so faults do not pile up into a permanent outage.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from etcdpy.chaos.cluster import ChaosCluster, MemberProcess, wait_until
from etcdpy.chaos.proxy import LinkFault

FAILPOINT_WAIT = 5.0  # seconds a member armed with a crash failpoint gets to reach it


class Nemesis:
    """Nemesis is one kind of fault; subclasses override `inject` and `heal`."""

    name = "none"

    def inject(self, cluster: ChaosCluster, rng: random.Random) -> str:
        raise NotImplementedError

    def heal(self, cluster: ChaosCluster) -> str:
        return "healed"


def pick(cluster: ChaosCluster, rng: random.Random, *, leader: bool) -> MemberProcess:
    """The leader (when asked and known), else a random running member."""
    if leader:
        found = cluster.leader()
        if found is not None:
            return found
    return rng.choice([m for m in cluster.members if m.running and not m.paused] or cluster.members)


def pick_follower(cluster: ChaosCluster, rng: random.Random) -> MemberProcess:
    leader = cluster.leader()
    return rng.choice([m for m in cluster.members if m is not leader and m.running] or cluster.members)


@dataclass
class Kill(Nemesis):
    """Kill -9 a member (or the leader); heal restarts it on the same data dir."""

    leader: bool = False
    victims: list[MemberProcess] = field(default_factory=list)

    @property
    def name(self) -> str:  # type: ignore[override]
        return "kill-leader" if self.leader else "kill"

    def inject(self, cluster: ChaosCluster, rng: random.Random) -> str:
        victim = pick(cluster, rng, leader=self.leader)
        cluster.kill(victim)
        self.victims.append(victim)
        return f"kill -9 {victim.name}"

    def heal(self, cluster: ChaosCluster) -> str:
        names = []
        while self.victims:
            victim = self.victims.pop()
            if not victim.running:
                cluster.launch(victim)
                names.append(victim.name)
        return f"restarted {', '.join(names) or 'nothing'}"


@dataclass
class Pause(Nemesis):
    """SIGSTOP a member (or the leader); heal sends SIGCONT."""

    leader: bool = False
    victims: list[MemberProcess] = field(default_factory=list)

    @property
    def name(self) -> str:  # type: ignore[override]
        return "pause-leader" if self.leader else "pause"

    def inject(self, cluster: ChaosCluster, rng: random.Random) -> str:
        victim = pick(cluster, rng, leader=self.leader)
        cluster.pause(victim)
        self.victims.append(victim)
        return f"SIGSTOP {victim.name}"

    def heal(self, cluster: ChaosCluster) -> str:
        names = [v.name for v in self.victims]
        for victim in self.victims:
            cluster.resume(victim)
        self.victims.clear()
        return f"SIGCONT {', '.join(names) or 'nothing'}"


@dataclass
class Partition(Nemesis):
    """Cut (or blackhole) every link of one member, the leader, or between a minority and the rest."""

    target: str = "member"  # "member", "leader" or "minority"
    blackhole: bool = False

    @property
    def name(self) -> str:  # type: ignore[override]
        kind = "blackhole" if self.blackhole else "partition"
        return f"{kind}-{self.target}"

    def inject(self, cluster: ChaosCluster, rng: random.Random) -> str:
        fault = LinkFault(blackhole=True) if self.blackhole else LinkFault(cut=True)
        if self.target == "minority":
            size = len(cluster.members)
            side = set(rng.sample(range(size), (size - 1) // 2 or 1))
            crossing = [(a, b) for (a, b) in cluster.links if (a in side) != (b in side)]
            cluster.set_links(crossing, fault)
            return f"{fault} between {sorted(cluster.members[i].name for i in side)} and the rest"
        victim = pick(cluster, rng, leader=self.target == "leader")
        cluster.isolate(victim, fault)
        return f"{fault} every link of {victim.name}"

    def heal(self, cluster: ChaosCluster) -> str:
        cluster.heal_links()
        return "links open"


@dataclass
class Links(Nemesis):
    """Delay (with jitter) or lose a fraction of the traffic on every link."""

    delay: float = 0.0
    loss: float = 0.0

    @property
    def name(self) -> str:  # type: ignore[override]
        return "delay" if self.delay else "loss"

    def inject(self, cluster: ChaosCluster, rng: random.Random) -> str:
        delay = rng.uniform(0.5, 1.0) * self.delay
        fault = LinkFault(delay=delay, jitter=delay / 2, loss=rng.uniform(0.5, 1.0) * self.loss)
        cluster.set_links(cluster.links, fault)
        return f"every link: {fault}"

    def heal(self, cluster: ChaosCluster) -> str:
        cluster.heal_links()
        return "links open"


@dataclass
class FailpointNemesis(Nemesis):
    """Restart a member (the leader half the time) with one failpoint armed; heal restarts it clean.

    With ``crash`` the member dies at the point (and `inject` waits a little for it);
    with ``pause(S)`` it stalls S seconds at every hit: a member with a slow disk.
    The points are taken in turn, so a run with enough rounds visits each of them.
    """

    points: tuple[str, ...] = ()
    label: str = "failpoint-crash"
    action: str = "crash"
    armed: list[MemberProcess] = field(default_factory=list)
    turn: int = 0

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.label

    def inject(self, cluster: ChaosCluster, rng: random.Random) -> str:
        if not self.turn:  # start the round-robin where the seed says: different seeds, different points
            self.turn = rng.randrange(len(self.points)) + 1
        point = self.points[self.turn % len(self.points)]
        self.turn += 1
        victim = pick(cluster, rng, leader=rng.random() < 0.5)
        cluster.kill(victim)
        cluster.launch(victim, failpoints=f"{point}={self.action}")
        self.armed.append(victim)
        armed = f"{victim.name} restarted with {point}={self.action}"
        if self.action != "crash":
            return armed
        assert victim.proc is not None
        proc = victim.proc
        try:
            wait_until(lambda: proc.poll() is not None, FAILPOINT_WAIT, "not reached", interval=0.05)
        except TimeoutError:
            return f"{armed} (not reached within {FAILPOINT_WAIT:.0f}s)"
        return f"{armed}: crashed (exit {proc.returncode})"

    def heal(self, cluster: ChaosCluster) -> str:
        names = []
        while self.armed:
            victim = self.armed.pop()
            cluster.kill(victim)
            cluster.launch(victim)
            names.append(victim.name)
        return f"restarted clean: {', '.join(names)}"


@dataclass
class SnapshotCatchUp(Nemesis):
    """Blackhole a follower until the leader has compacted its log past it, so it must take a snapshot.

    With `points`, the follower is restarted (while cut off) with a snapshot failpoint
    armed, so it crashes while receiving or installing the snapshot; heal restarts it clean.
    The cluster needs a small ``--snapshot-count`` for this to happen within seconds.
    """

    entries: int = 60  # raft entries the leader must commit while the follower is away
    points: tuple[str, ...] = ()
    victim: MemberProcess | None = None
    armed: str = ""
    turn: int = 0

    @property
    def name(self) -> str:  # type: ignore[override]
        return "snapshot-crash" if self.points else "snapshot-catchup"

    def inject(self, cluster: ChaosCluster, rng: random.Random) -> str:
        victim = pick_follower(cluster, rng)
        cluster.isolate(victim, LinkFault(blackhole=True))
        self.victim = victim
        self.armed = ""
        if self.points:
            self.armed = self.points[self.turn % len(self.points)]
            self.turn += 1
            cluster.kill(victim)
            cluster.launch(victim, failpoints=f"{self.armed}=crash")
        return f"blackholed {victim.name}" + (
            f" and restarted it with {self.armed}=crash" if self.armed else ""
        )

    def heal(self, cluster: ChaosCluster) -> str:
        victim = self.victim
        if victim is None:
            return "nothing"
        self.victim = None
        start = _raft_index(cluster)
        advanced = False
        if start is not None:
            try:
                wait_until(
                    lambda: (_raft_index(cluster) or 0) >= start + self.entries, 20.0, "", interval=0.2
                )
                advanced = True
            except TimeoutError:
                pass
        cluster.heal_links()
        crashed = ""
        if self.armed and victim.proc is not None:
            proc = victim.proc
            try:
                wait_until(lambda: proc.poll() is not None, FAILPOINT_WAIT, "", interval=0.05)
                crashed = f", crashed at {self.armed} (exit {proc.returncode})"
            except TimeoutError:
                crashed = f", {self.armed} not reached"
            cluster.kill(victim)
            cluster.launch(victim)
        note = "after the log moved on" if advanced else "(the log did not move on far enough)"
        return f"reconnected {victim.name} {note}{crashed}"


def _raft_index(cluster: ChaosCluster) -> int | None:
    """The highest raft index any answering member reports (the leader's, when it answers)."""
    indexes = []
    for member in cluster.members:
        if member.running and not member.paused:
            try:
                indexes.append(int(cluster.client().status(member.endpoint, timeout=1.0).raftIndex))
            except Exception:
                continue
    return max(indexes, default=None)


class ReplaceMember(Nemesis):
    """Remove a member, wipe its data, add it back as a new member and start it."""

    name = "replace"

    def inject(self, cluster: ChaosCluster, rng: random.Random) -> str:
        victim = pick_follower(cluster, rng)
        cluster.replace_member(victim)
        return f"replaced {victim.name} (removed, wiped, added back)"


class RestartAll(Nemesis):
    """Kill -9 every member at once and start them all again."""

    name = "restart-all"

    def inject(self, cluster: ChaosCluster, rng: random.Random) -> str:
        for member in cluster.members:
            cluster.signal(member, signal.SIGKILL)
        for member in cluster.members:
            cluster.kill(member)
        time.sleep(rng.uniform(0.0, 0.5))  # how long the whole cluster stays down
        for member in cluster.members:
            cluster.launch(member)
        return "kill -9 every member, then restart them all"


WORKER_MODULE = "etcdpy.server.workers.worker"
WORKER_WAIT = 10.0  # seconds a member gets to (re)start its client workers


def worker_pids(member_pid: int) -> list[int]:
    """The pids of a member process's client workers (its children running the worker module)."""
    found = subprocess.run(
        ["pgrep", "-P", str(member_pid), "-f", WORKER_MODULE], capture_output=True, text=True, check=False
    )
    return sorted(int(pid) for pid in found.stdout.split())


def client_workers(member: MemberProcess) -> list[int]:
    """The pids of the member's client worker processes; none while it is down."""
    if not member.running or member.proc is None:
        return []
    return worker_pids(member.proc.pid)


@dataclass
class KillWorker(Nemesis):
    """Kill -9 one client worker of a random member (``--experimental-client-workers``); its pool starts
    another.  Heal waits until the member runs as many workers as before, the killed one replaced."""

    victims: list[tuple[MemberProcess, int, int]] = field(default_factory=list)  # member, pid, count

    name = "kill-worker"

    def inject(self, cluster: ChaosCluster, rng: random.Random) -> str:
        member = pick(cluster, rng, leader=False)
        try:  # a member just restarted by another fault may not have started its workers yet
            wait_until(lambda: bool(client_workers(member)), WORKER_WAIT, "", interval=0.05)
        except TimeoutError:
            return f"{member.name} runs no client worker"
        pids = client_workers(member)
        victim = rng.choice(pids)
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
        self.victims.append((member, victim, len(pids)))
        return f"kill -9 client worker {victim} of {member.name} ({len(pids)} running)"

    def heal(self, cluster: ChaosCluster) -> str:
        notes = []
        while self.victims:
            member, victim, count = self.victims.pop()
            try:
                wait_until(
                    functools.partial(_replaced, member, victim, count), WORKER_WAIT, "", interval=0.05
                )
                notes.append(f"{member.name} runs {client_workers(member)}")
            except TimeoutError:
                notes.append(f"{member.name} did not replace worker {victim} within {WORKER_WAIT:.0f}s")
        return "; ".join(notes) or "nothing"


def _replaced(member: MemberProcess, victim: int, count: int) -> bool:
    """The member runs `count` workers again, `victim` not among them (or it is down: nothing to wait for)."""
    pids = client_workers(member)
    return not member.running or (len(pids) >= count and victim not in pids)


RAFT_POINTS = ("raftBeforeSave", "raftAfterSave", "beforeApply", "afterApply", "beforeSendWatchResponse")
COMPACTION_POINTS = ("compactBeforeCommitBatch", "compactAfterCommitBatch")
SNAPSHOT_POINTS = ("raftBeforeApplySnap", "raftAfterApplySnap", "snapshotDuringReceive")

NEMESES: dict[str, Callable[[], Nemesis]] = {
    "kill": lambda: Kill(),
    "kill-leader": lambda: Kill(leader=True),
    "pause": lambda: Pause(),
    "pause-leader": lambda: Pause(leader=True),
    "partition-member": lambda: Partition("member"),
    "partition-leader": lambda: Partition("leader"),
    "partition-minority": lambda: Partition("minority"),
    "blackhole-leader": lambda: Partition("leader", blackhole=True),
    "delay": lambda: Links(delay=0.15),
    "loss": lambda: Links(loss=0.05),
    "failpoint-crash": lambda: FailpointNemesis(RAFT_POINTS),
    "failpoint-crash-compaction": lambda: FailpointNemesis(COMPACTION_POINTS, "failpoint-crash-compaction"),
    "failpoint-pause": lambda: FailpointNemesis(RAFT_POINTS[:4], "failpoint-pause", "pause(0.3)"),
    "snapshot-catchup": lambda: SnapshotCatchUp(),
    "snapshot-crash": lambda: SnapshotCatchUp(points=SNAPSHOT_POINTS),
    "replace": lambda: ReplaceMember(),
    "restart-all": lambda: RestartAll(),
    "kill-worker": lambda: KillWorker(),
}
"""NEMESES names every nemesis a scenario can use."""
