"""The simulated cluster: nodes, network, operator (faults and membership) and clients, step by step.

One `random.Random(seed)` drives everything, so a seed replays exactly.
A step: inject faults and operator actions, tick every node, deliver the
messages that arrive now, let clients act, run each node's Ready loop one
phase, then check the safety invariants.

With the server's applier (`plan.app == "server"`) every node keeps a LevelDB
in the run's temp dir: `close` removes it.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections import Counter, deque
from collections.abc import Hashable
from pathlib import Path

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft import MemoryStorage, ProposalDropped, SnapshotStatus, describe_message

from .application import Application, ToyApplication
from .disk import FakeDisk
from .invariants import SafetyMonitor, SafetyViolation
from .network import FakeNetwork, NetworkFaults, sender
from .node import SimNode, bootstrap_storage
from .operator import Operator
from .plan import RunPlan
from .serverapp import ServerApplication, compaction_request
from .statemachine import Command
from .workload import Workload

COMPACTION_LAG = 10  # a compaction keeps up to this many revisions below the current one


class Cluster:
    """Cluster runs one seeded simulation."""

    def __init__(self, plan: RunPlan, trace_limit: int | None = 300, trace_messages: bool = False) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.monitor = SafetyMonitor()
        self.network = FakeNetwork(self.rng, plan.network)
        self.nodes: dict[int, SimNode] = {}
        self.removed: set[int] = set()
        self.now = 0
        self.faults_on = True
        self.stats: Counter[str] = Counter()
        self.trace: deque[str] = deque(maxlen=trace_limit)
        self._trace_messages = trace_messages
        self._restart_at: dict[int, int] = {}
        self._heal_at: int | None = None
        self._leaders_seen: dict[int, int] = {}
        self._transfer_target: int | None = None
        self._data_dir = Path(tempfile.mkdtemp(prefix="etcdpy-sim-")) if plan.app == "server" else None
        self._apps: list[Application] = []  # every node's, removed ones too
        voters = list(range(1, plan.nodes + 1))
        for node_id in voters:
            storage = bootstrap_storage(voters)
            self._add_node(node_id, FakeDisk(storage))
        self.operator = Operator(self, first_new_id=plan.nodes + 1)
        # The server's applier applies a request each time it is committed (etcd does not deduplicate):
        # a write already proposed is never re-sent, its outcome stays unknown if no answer comes.
        self.workload = Workload(
            self.rng,
            plan.clients,
            retry_after=25,
            give_up_after=120,
            issue_probability=0.3,
            resend_writes=plan.app == "toy",
        )

    def _add_node(self, node_id: int, disk: FakeDisk) -> None:
        app: Application
        if self._data_dir is None:
            app = ToyApplication()
        else:
            # Its own random source for what a crash keeps and where an install loses power (at the
            # run's rate, see _install_power_loss): those draws leave the run's random source alone.
            app = ServerApplication(
                self._data_dir / str(node_id),
                random.Random(f"{self.plan.seed}/{node_id}"),
                self.stats,
                self._install_power_loss,
            )
        self._apps.append(app)
        node = SimNode(node_id, disk, app, self.plan.settings, self.rng, self.monitor, self.stats)
        self.nodes[node_id] = node
        node.start()

    def close(self) -> None:
        """Close releases every node's application and removes the run's data dir."""
        for app in self._apps:
            app.close()
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)

    def log(self, event: str) -> None:
        """Log keeps an event for the failure report."""
        self.trace.append(f"[{self.now}] {event}")

    # -- membership, as decided by applied configurations ------------------------------------------

    def start_member(self, node_id: int) -> None:
        """Start_member boots a node just added to the configuration, with an empty disk."""
        if node_id in self.nodes or node_id in self.removed:
            return
        storage = MemoryStorage()
        self._add_node(node_id, FakeDisk(storage))
        self.stats["members_added"] += 1
        self.log(f"node {node_id} starts (empty)")

    def stop_member(self, node_id: int) -> None:
        """Stop_member shuts down a node removed from the configuration, for good."""
        node = self.nodes.pop(node_id, None)
        if node is None:
            return
        node.stop()
        self.removed.add(node_id)
        self._restart_at.pop(node_id, None)
        self.stats["members_removed"] += 1
        self.log(f"node {node_id} stops (removed)")

    def _follow_configuration(self, node: SimNode) -> None:
        for before, after in node.conf_changes_applied:
            self.log(
                f"node {node.id} applied conf {sorted(after.voters)} out={sorted(after.voters_outgoing)} "
                f"learners={sorted(after.learners)}"
            )
            if after.voters_outgoing:
                self.stats["joint_configs_applied"] += 1
            old, new = _members(before), _members(after)
            for member in sorted(new - old):
                self.start_member(member)
            for gone in sorted(old - new):
                self.stop_member(gone)
        node.conf_changes_applied.clear()

    # -- the step --------------------------------------------------------------------------------------

    def live_nodes(self) -> list[SimNode]:
        """Live_nodes are the running nodes, in id order."""
        return [self.nodes[i] for i in sorted(self.nodes) if self.nodes[i].alive]

    def leader(self) -> SimNode | None:
        """Leader is the live node that leads the highest term, if any."""
        best: SimNode | None = None
        best_term = -1
        for node in self.live_nodes():
            term = node.leader_term()
            if term is not None and term > best_term:
                best, best_term = node, term
        return best

    def step(self) -> None:
        """Step advances the whole simulation by one step."""
        self.now += 1
        if self.faults_on:
            self._inject_faults()
            self.operator.maybe_act()
            if self.plan.compaction_rate and self.rng.random() < self.plan.compaction_rate:
                self._propose_compaction()
        self._restart_due()
        order = self.live_nodes()
        skip = self.plan.tick_skip
        for node in order:
            if not skip or self.rng.random() >= skip:
                node.tick()
        self._deliver()
        leader = self.leader()
        self.workload.step(self.now, [n.id for n in order], leader.id if leader else None, self._submit)
        self.rng.shuffle(order)
        for node in order:
            if not node.alive:
                continue  # stopped by a configuration applied earlier in this step
            node.process(self.now)
            if not node.alive:  # it lost power in the middle of a snapshot install
                self.schedule_restart(node)
            self._flush(node)
            self._follow_configuration(node)
        self._observe_leaders()

    def _submit(self, node_id: int, attempt: int, command: Command, via_log: bool) -> bool:
        node = self.nodes.get(node_id)
        if node is None or not node.alive:
            return False
        return node.submit(attempt, command, via_log)

    def _deliver(self) -> None:
        for message in self.network.due(self.now):
            node = self.nodes.get(message.to)
            if node is None or not node.alive:
                self.network.lose(message)
                continue
            if self._trace_messages:
                self.log(describe_message(message))
            node.receive(message)
            if message.type == pb.MsgSnap:
                self._report_snapshot(sender(message), message.to, SnapshotStatus.FINISH)
        for node in self.live_nodes():
            node.flush(self.now)
            if not node.alive:  # it lost power in the middle of a snapshot install
                self.schedule_restart(node)
        for message in self.network.take_lost_snapshots():
            self._report_snapshot(sender(message), message.to, SnapshotStatus.FAILURE)

    def _report_snapshot(self, frm: int, to: int, status: SnapshotStatus) -> None:
        node = self.nodes.get(frm)
        if node is not None and node.alive:
            node.report_snapshot(to, status is SnapshotStatus.FINISH)
            self.stats[f"snapshots_{status.value}"] += 1

    def _flush(self, node: SimNode) -> None:
        for message in node.outgoing:
            self.network.send(message, self.now)
        node.outgoing.clear()
        for answer in node.answers:
            if self.workload.deliver(node.id, answer.request_id, answer.attempt, answer.output):
                self.stats["answers"] += 1
                if answer.attempt is None:
                    self.monitor.acknowledged(answer.index, answer.term, answer.node_term)
        node.answers.clear()
        for event in node.events:
            self.log(event)
        node.events.clear()

    def _observe_leaders(self) -> None:
        for node in self.live_nodes():
            term = node.leader_term()
            if term is None:
                continue
            self.monitor.observe_leader(node.id, term, node.log_term_lookup())
            if self._leaders_seen.get(term) != node.id:
                self._leaders_seen[term] = node.id
                self.stats["elections"] += 1
                if node.id == self._transfer_target:
                    self.stats["transfers_completed"] += 1
                self._transfer_target = None
                self.log(f"node {node.id} leads term {term}")

    # -- faults --------------------------------------------------------------------------------------------

    def _inject_faults(self) -> None:
        plan, rng = self.plan, self.rng
        if plan.crash_rate and rng.random() < plan.crash_rate and len(self._restart_at) < plan.max_down:
            victims = self.live_nodes()
            if victims:
                victim = rng.choice(victims)
                victim.crash()
                self.log(f"node {victim.id} crashes")
                self.schedule_restart(victim)
        if self._heal_at is not None and self.now >= self._heal_at:
            self.network.heal()
            self._heal_at = None
            self.log("network heals")
        elif self._heal_at is None and plan.partition_rate and rng.random() < plan.partition_rate:
            self._partition()

    def _install_power_loss(self) -> float:
        """The plan's power loss rate per snapshot install batch, while faults are on and max_down allows."""
        if not self.faults_on or len(self._restart_at) >= self.plan.max_down:
            return 0.0
        return self.plan.install_power_loss

    def schedule_restart(self, node: SimNode) -> None:
        """Schedule_restart counts a node's crash and sets when it boots again."""
        self._restart_at[node.id] = self.now + self.rng.randint(*self.plan.restart_delay)
        self.stats["crashes"] += 1

    def _partition(self) -> None:
        rng = self.rng
        ids = sorted(self.nodes)
        kind = rng.choice(("isolate", "isolate-leader", "split", "one-way"))
        leader = self.leader()
        if kind == "isolate-leader" and leader is not None:
            lonely = leader.id
            self.network.partition({lonely}, set(ids) - {lonely})
            self.log(f"partition: leader {lonely} isolated")
        elif kind == "split":
            rng.shuffle(ids)
            cut = rng.randint(1, len(ids) - 1)
            self.network.partition(set(ids[:cut]), set(ids[cut:]))
            self.log(f"partition: {sorted(ids[:cut])} | {sorted(ids[cut:])}")
        elif kind == "one-way":
            frm, to = rng.sample(ids, 2)
            self.network.cut_one_way(frm, to)
            self.log(f"partition: link {frm}->{to} cut")
        else:
            lonely = rng.choice(ids)
            self.network.partition({lonely}, set(ids) - {lonely})
            self.log(f"partition: node {lonely} isolated")
        self.stats["partitions"] += 1
        self._heal_at = self.now + rng.randint(10, 80)

    def _restart_due(self) -> None:
        for node_id, when in sorted(self._restart_at.items()):
            if when <= self.now or not self.faults_on:
                del self._restart_at[node_id]
                node = self.nodes.get(node_id)
                if node is not None and not node.alive:
                    node.start()
                    self.stats["restarts"] += 1
                    self.log(f"node {node_id} restarts")

    def calm(self) -> None:
        """Calm ends the faults: the network heals and stops losing messages; crashed nodes restart."""
        self.faults_on = False
        self.network.heal()
        self.network.faults = NetworkFaults()
        self._heal_at = None
        self.log("calm: faults off")

    def converged(self) -> bool:
        """Converged tells whether a leader exists and every live member has applied all it committed."""
        leader = self.leader()
        if leader is None or leader.core is None:
            return False
        committed = leader.core.raw.raft.raft_log.committed
        return all(node.applied == committed for node in self.live_nodes())

    def last_index(self) -> int:
        """Last_index is the longest log among the live nodes."""
        cores = [n.core for n in self.live_nodes() if n.core is not None]
        return max((core.raw.raft.raft_log.last_index() for core in cores), default=0)

    def transfer_leadership(self, leader: SimNode, to: int) -> None:
        """Transfer_leadership asks the leader to hand over to `to`."""
        assert leader.core is not None
        leader.core.transfer_leader(to)
        self._transfer_target = to
        self.stats["transfers"] += 1
        self.log(f"leader {leader.id} transfers leadership to {to}")

    def _propose_compaction(self) -> None:
        leader = self.leader()
        if leader is None or leader.core is None or not isinstance(leader.app, ServerApplication):
            return
        revision = leader.app.applier.current_revision - self.rng.randint(0, COMPACTION_LAG)
        leader.core.propose(compaction_request(revision))
        self.stats["compactions_proposed"] += 1
        self.log(f"node {leader.id} proposes a compaction to revision {revision}")

    def check_store_digests(self) -> None:
        """Check_store_digests: members at the same applied index hold the same history (HashKV).

        Raises SafetyViolation naming the first revision whose digest differs.
        """
        seen: dict[int, tuple[int, dict[int, Hashable]]] = {}  # applied index -> (first node, its digests)
        for node in self.live_nodes():
            digests = node.app.history_digests()
            other_id, other = seen.setdefault(node.applied, (node.id, digests))
            if other_id == node.id:
                continue
            for revision in sorted(digests.keys() & other.keys()):
                if digests[revision] != other[revision]:
                    raise SafetyViolation(
                        f"store digests differ at applied index {node.applied}, revision {revision}: "
                        f"node {other_id} has {other[revision]}, node {node.id} has {digests[revision]}"
                    )
            self.stats["digest_checks"] += len(digests.keys() & other.keys())

    def propose_conf_change(
        self, leader: SimNode, change: pb.ConfChange | pb.ConfChangeV2, what: str
    ) -> None:
        """Propose_conf_change hands a membership change to the leader, or to a member that forwards it."""
        proposer = leader
        if self.rng.random() < 0.2:
            proposer = self.rng.choice(self.live_nodes())
        assert proposer.core is not None
        try:
            proposer.core.propose_conf_change(change)
        except ProposalDropped:
            return
        self.stats["conf_changes_proposed"] += 1
        self.log(f"node {proposer.id} proposes {what} (leader {leader.id})")


def _members(conf_state: pb.ConfState) -> set[int]:
    """_members are the ids a configuration names, in any role."""
    return {*conf_state.voters, *conf_state.learners, *conf_state.voters_outgoing, *conf_state.learners_next}
