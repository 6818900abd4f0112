"""Table tests for configuration changes: simple, joint, invalid changes refused, restore."""

from __future__ import annotations

import pytest

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft.confchange import Changer, conf_changes_from_string, enter_joint, leave_joint, restore
from etcdpy.raft.errors import ConfChangeError
from etcdpy.raft.tracker import ProgressTracker


def tracker_with(cs: pb.ConfState) -> ProgressTracker:
    t = ProgressTracker(max_inflight=10)
    restore(t, 10, cs)
    return t


def describe(t: ProgressTracker) -> str:
    return f"{t.config} progress={sorted(t.progress)}"


def apply(t: ProgressTracker, kind: str, changes: str = "", auto_leave: bool = False) -> None:
    """Apply runs one Changer operation on t and installs the result (like raft's switch_to_config)."""
    ch = Changer(t, 10)
    ccs = conf_changes_from_string(changes)
    if kind == "simple":
        t.config, t.progress = ch.simple(ccs)
    elif kind == "enter":
        t.config, t.progress = ch.enter_joint(auto_leave, ccs)
    else:
        t.config, t.progress = ch.leave_joint()


@pytest.mark.parametrize(
    ("steps", "want"),
    [
        ([("simple", "v1")], "voters=(1) progress=[1]"),
        ([("simple", "v1"), ("simple", "v2")], "voters=(1 2) progress=[1, 2]"),
        ([("simple", "v1"), ("simple", "l2")], "voters=(1) learners=(2) progress=[1, 2]"),
        # Promoting a learner, demoting a voter, removing, and no-op updates.
        ([("simple", "v1 l2"), ("simple", "v2")], "voters=(1 2) progress=[1, 2]"),
        ([("simple", "v1"), ("simple", "v2"), ("simple", "l2")], "voters=(1) learners=(2) progress=[1, 2]"),
        ([("simple", "v1"), ("simple", "v2"), ("simple", "r2")], "voters=(1) progress=[1]"),
        ([("simple", "v1"), ("simple", "u1")], "voters=(1) progress=[1]"),
        # Several learner changes at once are fine: only voters are limited.
        ([("simple", "v1"), ("simple", "l2 l3 l4")], "voters=(1) learners=(2 3 4) progress=[1, 2, 3, 4]"),
        # Removing an unknown node is a no-op.
        ([("simple", "v1"), ("simple", "r9")], "voters=(1) progress=[1]"),
    ],
)
def test_simple_changes(steps: list[tuple[str, str]], want: str) -> None:
    t = ProgressTracker(max_inflight=10)
    for kind, changes in steps:
        apply(t, kind, changes)
    assert describe(t) == want


JOINT_BASE = pb.ConfState(voters=[1, 2, 3])


@pytest.mark.parametrize(
    ("changes", "auto_leave", "joint", "after_leave"),
    [
        # Replace 3 by 4: 3 keeps its Progress while it votes in the outgoing half.
        (
            "r3 v4",
            True,
            "voters=(1 2 4)&&(1 2 3) autoleave progress=[1, 2, 3, 4]",
            "voters=(1 2 4) progress=[1, 2, 4]",
        ),
        # Demote a voter: it becomes a learner only when the joint config is left.
        (
            "l3",
            False,
            "voters=(1 2)&&(1 2 3) learners_next=(3) progress=[1, 2, 3]",
            "voters=(1 2) learners=(3) progress=[1, 2, 3]",
        ),
        # Add two voters at once.
        (
            "v4 v5",
            False,
            "voters=(1 2 3 4 5)&&(1 2 3) progress=[1, 2, 3, 4, 5]",
            "voters=(1 2 3 4 5) progress=[1, 2, 3, 4, 5]",
        ),
        # Swap everything.
        (
            "r1 r2 r3 v4 v5 v6",
            True,
            "voters=(4 5 6)&&(1 2 3) autoleave progress=[1, 2, 3, 4, 5, 6]",
            "voters=(4 5 6) progress=[4, 5, 6]",
        ),
    ],
)
def test_joint_changes(changes: str, auto_leave: bool, joint: str, after_leave: str) -> None:
    t = tracker_with(JOINT_BASE)
    apply(t, "enter", changes, auto_leave)
    assert describe(t) == joint
    assert t.config.voters.is_joint()
    apply(t, "leave")
    assert describe(t) == after_leave
    assert not t.config.voters.is_joint()


CS = pb.ConfState
MORE_THAN_ONE = "more than one voter changed without entering joint config"
JOINED = pb.ConfChangeTransitionJointImplicit
EXPLICIT = pb.ConfChangeTransitionJointExplicit


@pytest.mark.parametrize(
    ("start", "kind", "changes", "error"),
    [
        (CS(voters=[1]), "simple", "v2 v3", MORE_THAN_ONE),
        (CS(voters=[1, 2]), "simple", "r1 r2", "removed all voters"),
        (CS(voters=[1, 2, 3]), "simple", "r1 v4", MORE_THAN_ONE),
        (CS(voters=[1]), "simple", "r1", "removed all voters"),
        (
            CS(voters=[1, 2], voters_outgoing=[1]),
            "simple",
            "v3",
            "can't apply simple config change in joint config",
        ),
        (CS(voters=[1, 2], voters_outgoing=[1]), "enter", "v3", "config is already joint"),
        (CS(voters=[1, 2]), "leave", "", "can't leave a non-joint config"),
        (CS(), "enter", "v1", "can't make a zero-voter config joint"),
        (CS(voters=[1, 2, 3]), "enter", "r1 r2 r3", "removed all voters"),
    ],
)
def test_invalid_changes_are_refused(start: pb.ConfState, kind: str, changes: str, error: str) -> None:
    t = tracker_with(start)
    before = describe(t)
    with pytest.raises(ConfChangeError, match=error):
        apply(t, kind, changes)
    # A refused change leaves the configuration untouched.
    assert describe(t) == before


@pytest.mark.parametrize(
    "cs",
    [
        pb.ConfState(voters=[1]),
        pb.ConfState(voters=[1, 2, 3], learners=[4, 5]),
        pb.ConfState(voters=[1, 2, 4], voters_outgoing=[1, 2, 3], auto_leave=True),
        pb.ConfState(voters=[1, 2], voters_outgoing=[1, 2, 3], learners_next=[3], learners=[4]),
    ],
)
def test_restore_round_trips(cs: pb.ConfState) -> None:
    assert tracker_with(cs).conf_state() == cs


def v2(
    changes: list[pb.ConfChangeSingle], transition: pb.ConfChangeTransition = pb.ConfChangeTransitionAuto
) -> pb.ConfChangeV2:
    return pb.ConfChangeV2(changes=changes, transition=transition)


_c = conf_changes_from_string


@pytest.mark.parametrize(
    ("cc", "auto_leave", "joint"),
    [
        (v2(_c("v2")), False, False),
        (v2(_c("v2 v3")), True, True),
        (v2(_c("v2"), transition=JOINED), True, True),
        (v2(_c("v2"), transition=EXPLICIT), False, True),
    ],
)
def test_transition_decides_joint_and_auto_leave(cc: pb.ConfChangeV2, auto_leave: bool, joint: bool) -> None:
    assert enter_joint(cc) == (auto_leave, joint)
    assert not leave_joint(cc)


def test_empty_change_leaves_joint() -> None:
    assert leave_joint(pb.ConfChangeV2())
