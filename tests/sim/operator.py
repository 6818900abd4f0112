"""The operator: membership changes and leadership transfers made during a run.

Changes go through the leader one at a time (raft refuses a second pending
one), chosen from what the leader has applied: add a learner, promote it,
add or remove a voter, replace a voter through joint consensus (left
automatically or by an explicit empty change), remove a learner.  Voters
never drop below three, nor rise above five.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from etcdpy.api.raftpb import raft_pb2 as pb

if TYPE_CHECKING:
    from .cluster import Cluster
    from .node import SimNode

MIN_VOTERS = 3
MAX_VOTERS = 5
MAX_LEARNERS = 2


class Operator:
    """Operator makes membership changes and leadership transfers on a cluster."""

    def __init__(self, cluster: Cluster, first_new_id: int) -> None:
        self._cluster = cluster
        self._next_id = first_new_id

    def maybe_act(self) -> None:
        """Maybe_act may make one change this step, at the rates of the run's plan."""
        cluster = self._cluster
        plan, rng = cluster.plan, cluster.rng
        leader = cluster.leader()
        if leader is None:
            return
        if plan.transfer_rate and rng.random() < plan.transfer_rate:
            # Mostly to a voter; sometimes to a learner, which raft must refuse.
            cs = leader.conf_state
            targets = sorted(v for v in (*cs.voters, *cs.learners) if v != leader.id and v in cluster.nodes)
            if targets:
                cluster.transfer_leadership(leader, rng.choice(targets))
        if plan.conf_change_rate and rng.random() < plan.conf_change_rate:
            self._change_membership(leader)

    def _new_id(self) -> int:
        node_id = self._next_id
        self._next_id += 1
        return node_id

    def _change_membership(self, leader: SimNode) -> None:
        cluster, rng = self._cluster, self._cluster.rng
        cs = leader.conf_state
        if cs.voters_outgoing:
            if not cs.auto_leave:
                cluster.propose_conf_change(leader, pb.ConfChangeV2(), "leave joint")
            return
        voters, learners = sorted(cs.voters), sorted(cs.learners)
        choices = ["replace", "replace-explicit"]
        if len(learners) < MAX_LEARNERS:
            choices.append("add-learner")
        if learners and len(voters) < MAX_VOTERS:
            choices.append("promote")
        if learners:
            choices.append("remove-learner")
        if len(voters) < MAX_VOTERS:
            choices.append("add-voter")
        if len(voters) > MIN_VOTERS:
            choices.append("remove-voter")
        choice = rng.choice(choices)
        if choice == "add-learner":
            new = self._new_id()
            change = _single(pb.ConfChangeAddLearnerNode, new)
            cluster.propose_conf_change(leader, change, f"add learner {new}")
        elif choice == "promote":
            learner = rng.choice(learners)
            cluster.propose_conf_change(leader, _single(pb.ConfChangeAddNode, learner), f"promote {learner}")
        elif choice == "remove-learner":
            learner = rng.choice(learners)
            change = _single(pb.ConfChangeRemoveNode, learner)
            cluster.propose_conf_change(leader, change, f"remove learner {learner}")
        elif choice == "add-voter":
            new = self._new_id()
            cluster.propose_conf_change(leader, _single(pb.ConfChangeAddNode, new), f"add voter {new}")
        elif choice == "remove-voter":
            voter = rng.choice(voters)
            change = _single(pb.ConfChangeRemoveNode, voter)
            cluster.propose_conf_change(leader, change, f"remove voter {voter}")
        else:
            old, new = rng.choice(voters), self._new_id()
            explicit = choice == "replace-explicit"
            joint = pb.ConfChangeV2(
                transition=(
                    pb.ConfChangeTransitionJointExplicit if explicit else pb.ConfChangeTransitionAuto
                ),
                changes=[
                    pb.ConfChangeSingle(type=pb.ConfChangeAddNode, node_id=new),
                    pb.ConfChangeSingle(type=pb.ConfChangeRemoveNode, node_id=old),
                ],
            )
            how = "explicitly" if explicit else "automatically"
            cluster.propose_conf_change(leader, joint, f"replace {old} by {new} (joint, left {how})")


def _single(change_type: pb.ConfChangeType, node_id: int) -> pb.ConfChange:
    return pb.ConfChange(type=change_type, node_id=node_id)
