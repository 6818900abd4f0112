"""Reconfiguration: applying committed conf changes and vetting proposed ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft.confchange import (
    Changer,
    conf_changes_to_string,
    decode_conf_change,
    enter_joint,
    leave_joint,
)
from etcdpy.raft.messages import NONE
from etcdpy.raft.status import StateType
from etcdpy.raft.tracker import ProgressMap, TrackerConfig

if TYPE_CHECKING:
    from etcdpy.raft.raft import Raft


def apply_conf_change(r: Raft, cc: pb.ConfChangeV2) -> pb.ConfState:
    """Apply_conf_change switches to the configuration after a committed change.

    Raises ConfChangeError if the change is invalid for the current
    configuration (every member reaches the same verdict, as all apply the same log).
    """
    changer = Changer(r.trk, r.raft_log.last_index())
    if leave_joint(cc):
        cfg, prs = changer.leave_joint()
    else:
        auto_leave, joint = enter_joint(cc)
        cfg, prs = changer.enter_joint(auto_leave, cc.changes) if joint else changer.simple(cc.changes)
    return switch_to_config(r, cfg, prs)


def switch_to_config(r: Raft, cfg: TrackerConfig, prs: ProgressMap) -> pb.ConfState:
    """Switch_to_config installs a configuration and reacts to it (commit, step down)."""
    r.trk.config = cfg
    r.trk.progress = prs
    r.logger.info("%d switched to configuration %s", r.id, cfg)
    cs = r.trk.conf_state()
    pr = prs.get(r.id)
    r.is_learner = pr is not None and pr.is_learner
    if r.role is not StateType.LEADER or not cs.voters:
        return cs
    if pr is None or pr.is_learner:
        # The leader was removed (or demoted). Tell the others what is
        # committed, then step down: the remaining voters elect a new leader
        # among themselves once their election timeouts expire.
        r.bcast_append()
        r.logger.info("%d stepping down: removed from the configuration", r.id)
        r.become_follower(r.term, NONE)
        return cs
    # The quorum changed: the commit index may move (e.g. a removed voter held it back).
    if r.maybe_commit():
        r.bcast_append()
    else:
        for i in r.trk.sorted_ids():
            if i != r.id:
                r.maybe_send_append(i, False)
    if r.lead_transferee != NONE and r.lead_transferee not in cfg.voters.ids():
        r.abort_leader_transfer()
    return cs


def check_conf_change_proposal(r: Raft, m: pb.Message) -> None:
    """Check_conf_change_proposal blanks conf changes in a proposal that must be refused.

    Only one change may be pending (proposed but not applied) at a time; a
    joint configuration must be left before another change. A refused change
    becomes an empty normal entry, so the proposal's other entries still go in.
    """
    for i, e in enumerate(m.entries):
        if e.type == pb.EntryNormal:
            continue
        cc = decode_conf_change(e)
        if cc is None:
            continue
        already_pending = r.pending_conf_index > r.raft_log.applied
        already_joint = r.trk.config.voters.is_joint()
        wants_leave_joint = not cc.changes
        refused = ""
        if already_pending:
            refused = (
                f"possible unapplied conf change at index {r.pending_conf_index} "
                f"(applied to {r.raft_log.applied})"
            )
        elif already_joint and not wants_leave_joint:
            refused = "must transition out of joint config first"
        elif not already_joint and wants_leave_joint:
            refused = "not in joint state; refusing empty conf change"
        if refused:
            r.logger.info(
                "%d ignoring conf change [%s] at config %s: %s",
                r.id,
                conf_changes_to_string(cc.changes),
                r.trk.config,
                refused,
            )
            m.entries[i].CopyFrom(pb.Entry(type=pb.EntryNormal))
        else:
            r.pending_conf_index = r.raft_log.last_index() + i + 1
