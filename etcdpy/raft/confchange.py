"""Configuration changes: the Changer (simple and joint), ConfChange helpers and restore.

A simple change alters at most one voter and is applied directly. Anything more
(replacing a member, adding two voters) goes through joint consensus: enter a
joint configuration C_old,new where both halves must agree, then leave it to C_new.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft.errors import ConfChangeError
from etcdpy.raft.inflights import Inflights
from etcdpy.raft.progress import Progress
from etcdpy.raft.quorum import JointConfig
from etcdpy.raft.tracker import ProgressMap, ProgressTracker, TrackerConfig

AnyConfChange = pb.ConfChange | pb.ConfChangeV2


def as_v2(cc: AnyConfChange) -> pb.ConfChangeV2:
    """As_v2 converts a ConfChange to the equivalent ConfChangeV2."""
    if isinstance(cc, pb.ConfChangeV2):
        return cc
    return pb.ConfChangeV2(
        changes=[pb.ConfChangeSingle(type=cc.type, node_id=cc.node_id)], context=cc.context
    )


def enter_joint(cc: pb.ConfChangeV2) -> tuple[bool, bool]:
    """Enter_joint returns (auto_leave, uses_joint) for a change.

    Auto transition uses joint consensus only when more than one change is made,
    since a single change can be applied safely on its own.
    """
    if cc.transition != pb.ConfChangeTransitionAuto or len(cc.changes) > 1:
        auto_leave = cc.transition in (pb.ConfChangeTransitionAuto, pb.ConfChangeTransitionJointImplicit)
        return auto_leave, True
    return False, False


def leave_joint(cc: pb.ConfChangeV2) -> bool:
    """Leave_joint: cc has no changes, the automatic transition and no context (the leave-joint entry)."""
    return not cc.changes and cc.transition == pb.ConfChangeTransitionAuto and not cc.context


def conf_change_entry(cc: AnyConfChange) -> pb.Entry:
    """Conf_change_entry wraps a change in a log entry of the matching type."""
    kind = pb.EntryConfChange if isinstance(cc, pb.ConfChange) else pb.EntryConfChangeV2
    return pb.Entry(type=kind, data=cc.SerializeToString())


def decode_conf_change(entry: pb.Entry) -> pb.ConfChangeV2 | None:
    """Decode_conf_change returns the change an entry carries (as V2), or None for a normal entry."""
    if entry.type == pb.EntryConfChange:
        v1 = pb.ConfChange()
        v1.ParseFromString(entry.data)
        return as_v2(v1)
    if entry.type == pb.EntryConfChangeV2:
        v2 = pb.ConfChangeV2()
        v2.ParseFromString(entry.data)
        return v2
    return None


_TYPE_LETTERS = {
    pb.ConfChangeAddNode: "v",
    pb.ConfChangeAddLearnerNode: "l",
    pb.ConfChangeRemoveNode: "r",
    pb.ConfChangeUpdateNode: "u",
}
_LETTER_TYPES = {v: k for k, v in _TYPE_LETTERS.items()}


def conf_changes_to_string(ccs: Iterable[pb.ConfChangeSingle]) -> str:
    """Conf_changes_to_string formats changes as 'v1 l2 r3 u4' (voter, learner, remove, update)."""
    return " ".join(f"{_TYPE_LETTERS[c.type]}{c.node_id}" for c in ccs)


def conf_changes_from_string(s: str) -> list[pb.ConfChangeSingle]:
    """Conf_changes_from_string parses the format of conf_changes_to_string."""
    out = []
    for tok in s.split():
        if len(tok) < 2 or tok[0] not in _LETTER_TYPES or not tok[1:].isdigit():
            raise ValueError(f"unknown conf change token {tok!r}")
        out.append(pb.ConfChangeSingle(type=_LETTER_TYPES[tok[0]], node_id=int(tok[1:])))
    return out


class Changer:
    """Changer computes the configuration and progress map that result from a change.

    It never mutates the tracker it starts from: each method returns new copies,
    which the caller installs (raft's switch_to_config).
    """

    def __init__(self, tracker: ProgressTracker, last_index: int) -> None:
        self.tracker = tracker
        # last_index initialises the Progress of added peers (probe from the leader's end).
        self.last_index = last_index

    def enter_joint(
        self, auto_leave: bool, ccs: Sequence[pb.ConfChangeSingle]
    ) -> tuple[TrackerConfig, ProgressMap]:
        """Enter_joint moves to C_old,new: the old voters stay as the outgoing half."""
        cfg, prs = self._check_and_copy()
        if cfg.voters.is_joint():
            raise ConfChangeError("config is already joint")
        if not cfg.voters.incoming:
            raise ConfChangeError("can't make a zero-voter config joint")
        cfg.voters = JointConfig(cfg.voters.incoming, cfg.voters.incoming)
        incoming = self._apply(cfg, prs, ccs)
        cfg.voters = JointConfig(incoming, cfg.voters.outgoing)
        cfg.auto_leave = auto_leave
        _check_invariants(cfg, prs)
        return cfg, prs

    def leave_joint(self) -> tuple[TrackerConfig, ProgressMap]:
        """Leave_joint moves from C_old,new to C_new, dropping peers only in C_old."""
        cfg, prs = self._check_and_copy()
        if not cfg.voters.is_joint():
            raise ConfChangeError("can't leave a non-joint config")
        cfg.learners |= cfg.learners_next
        for i in cfg.learners_next:
            prs[i].is_learner = True
        cfg.learners_next = set()
        for i in cfg.voters.outgoing:
            if i not in cfg.voters.incoming and i not in cfg.learners:
                del prs[i]
        cfg.voters = JointConfig(cfg.voters.incoming)
        cfg.auto_leave = False
        _check_invariants(cfg, prs)
        return cfg, prs

    def simple(self, ccs: Sequence[pb.ConfChangeSingle]) -> tuple[TrackerConfig, ProgressMap]:
        """Simple applies changes that alter at most one voter, without joint consensus."""
        cfg, prs = self._check_and_copy()
        if cfg.voters.is_joint():
            raise ConfChangeError("can't apply simple config change in joint config")
        old = cfg.voters.incoming
        incoming = self._apply(cfg, prs, ccs)
        cfg.voters = JointConfig(incoming)
        if len(old ^ incoming) > 1:
            raise ConfChangeError("more than one voter changed without entering joint config")
        _check_invariants(cfg, prs)
        return cfg, prs

    def _apply(self, cfg: TrackerConfig, prs: ProgressMap, ccs: Sequence[pb.ConfChangeSingle]) -> set[int]:
        """_apply applies ccs to the incoming half; returns the new incoming voter set."""
        incoming = set(cfg.voters.incoming)
        for cc in ccs:
            if cc.node_id == 0:
                continue  # etcd replaces invalid changes with zero-ID no-ops; skip them
            if cc.type == pb.ConfChangeAddNode:
                self._make_voter(cfg, prs, incoming, cc.node_id)
            elif cc.type == pb.ConfChangeAddLearnerNode:
                self._make_learner(cfg, prs, incoming, cc.node_id)
            elif cc.type == pb.ConfChangeRemoveNode:
                _remove(cfg, prs, incoming, cc.node_id)
            elif cc.type == pb.ConfChangeUpdateNode:
                pass
            else:
                raise ConfChangeError(f"unexpected conf type {cc.type}")
        if not incoming:
            raise ConfChangeError("removed all voters")
        return incoming

    def _make_voter(self, cfg: TrackerConfig, prs: ProgressMap, incoming: set[int], i: int) -> None:
        pr = prs.get(i)
        if pr is None:
            self._init_progress(cfg, prs, incoming, i, is_learner=False)
            return
        pr.is_learner = False
        cfg.learners.discard(i)
        cfg.learners_next.discard(i)
        incoming.add(i)

    def _make_learner(self, cfg: TrackerConfig, prs: ProgressMap, incoming: set[int], i: int) -> None:
        pr = prs.get(i)
        if pr is None:
            self._init_progress(cfg, prs, incoming, i, is_learner=True)
            return
        if pr.is_learner:
            return
        # Demote: drop the voter role but keep the Progress (it is still replicated to).
        _remove(cfg, prs, incoming, i)
        prs[i] = pr
        if i in cfg.voters.outgoing:
            # Still a voter in the outgoing half: it becomes a learner when the joint config is left.
            cfg.learners_next.add(i)
        else:
            pr.is_learner = True
            cfg.learners.add(i)

    def _init_progress(
        self, cfg: TrackerConfig, prs: ProgressMap, incoming: set[int], i: int, *, is_learner: bool
    ) -> None:
        if is_learner:
            cfg.learners.add(i)
        else:
            incoming.add(i)
        t = self.tracker
        pr = Progress(
            max(self.last_index, 1),
            Inflights(t.max_inflight, t.max_inflight_bytes),
            is_learner=is_learner,
        )
        # A new peer counts as active so check-quorum does not depose the leader at once.
        pr.recent_active = True
        prs[i] = pr

    def _check_and_copy(self) -> tuple[TrackerConfig, ProgressMap]:
        cfg = self.tracker.config.clone()
        prs = {i: pr.clone() for i, pr in self.tracker.progress.items()}
        _check_invariants(cfg, prs)
        return cfg, prs


def _remove(cfg: TrackerConfig, prs: ProgressMap, incoming: set[int], i: int) -> None:
    if i not in prs:
        return
    incoming.discard(i)
    cfg.learners.discard(i)
    cfg.learners_next.discard(i)
    # A peer still voting in the outgoing half keeps its Progress until the joint config is left.
    if i not in cfg.voters.outgoing:
        del prs[i]


def _check_invariants(cfg: TrackerConfig, prs: ProgressMap) -> None:
    for ids in (cfg.voters.ids(), cfg.learners, cfg.learners_next):
        for i in ids:
            if i not in prs:
                raise ConfChangeError(f"no progress for {i}")
    for i in cfg.learners_next:
        if i not in cfg.voters.outgoing:
            raise ConfChangeError(f"{i} is in LearnersNext, but not Voters[1]")
        if prs[i].is_learner:
            raise ConfChangeError(f"{i} is in LearnersNext, but is already marked as learner")
    for i in cfg.learners:
        if i in cfg.voters.outgoing:
            raise ConfChangeError(f"{i} is in Learners and Voters[1]")
        if i in cfg.voters.incoming:
            raise ConfChangeError(f"{i} is in Learners and Voters[0]")
        if not prs[i].is_learner:
            raise ConfChangeError(f"{i} is in Learners, but is not marked as learner")
    if not cfg.voters.is_joint():
        if cfg.learners_next:
            raise ConfChangeError("cfg.LearnersNext must be empty when not joint")
        if cfg.auto_leave:
            raise ConfChangeError("AutoLeave must be false when not joint")


def restore(tracker: ProgressTracker, last_index: int, cs: pb.ConfState) -> None:
    """Restore installs into an empty tracker the configuration a ConfState describes.

    It replays the ConfState as changes the Changer accepts: the outgoing voters
    one at a time, then (if joint) one joint change to the incoming side.
    """
    outgoing = [pb.ConfChangeSingle(type=pb.ConfChangeAddNode, node_id=i) for i in cs.voters_outgoing]
    incoming = [pb.ConfChangeSingle(type=pb.ConfChangeRemoveNode, node_id=i) for i in cs.voters_outgoing]
    incoming += [pb.ConfChangeSingle(type=pb.ConfChangeAddNode, node_id=i) for i in cs.voters]
    incoming += [pb.ConfChangeSingle(type=pb.ConfChangeAddLearnerNode, node_id=i) for i in cs.learners]
    incoming += [pb.ConfChangeSingle(type=pb.ConfChangeAddLearnerNode, node_id=i) for i in cs.learners_next]
    changer = Changer(tracker, last_index)
    for cc in outgoing or incoming:
        tracker.config, tracker.progress = changer.simple([cc])
    if outgoing:
        tracker.config, tracker.progress = changer.enter_joint(cs.auto_leave, incoming)
