"""Follower-side handling of the leader's messages: appends, heartbeats and snapshots.

Candidates use these too, after stepping down for the leader of their term.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft.confchange import restore
from etcdpy.raft.messages import NONE, sender
from etcdpy.raft.reconfig import switch_to_config
from etcdpy.raft.status import StateType
from etcdpy.raft.tracker import ProgressTracker

if TYPE_CHECKING:
    from etcdpy.raft.raft import Raft


def handle_append_entries(r: Raft, m: pb.Message) -> None:
    """Handle_append_entries appends the leader's entries if our logs match at m.index."""
    frm = sender(m)
    log = r.raft_log
    if m.index < log.committed:
        r.send(pb.Message(type=pb.MsgAppResp, to=frm, index=log.committed))
        return
    last_new = log.maybe_append(m.index, m.log_term, m.commit, list(m.entries))
    if last_new is not None:
        r.send(pb.Message(type=pb.MsgAppResp, to=frm, index=last_new))
        return
    # Our log diverges at m.index. Hint the leader at the last index that may
    # match: the largest index <= m.index whose term is <= m.log_term, so the
    # leader skips a whole diverging term per round trip, not one entry.
    hint_index = min(m.index, log.last_index())
    hint_index, hint_term = log.find_conflict_by_term(hint_index, m.log_term)
    r.logger.debug(
        "%d [logterm: %d, index: %d] rejected MsgApp [logterm: %d, index: %d] from %d",
        r.id,
        log.term_or_zero(m.index),
        m.index,
        m.log_term,
        m.index,
        frm,
    )
    r.send(
        pb.Message(
            type=pb.MsgAppResp,
            to=frm,
            index=m.index,
            reject=True,
            reject_hint=hint_index,
            log_term=hint_term,
        )
    )


def handle_heartbeat(r: Raft, m: pb.Message) -> None:
    """Handle_heartbeat learns the commit index and answers, echoing the read context."""
    r.raft_log.commit_to(m.commit)
    r.send(pb.Message(type=pb.MsgHeartbeatResp, to=sender(m), context=m.context))


def handle_snapshot(r: Raft, m: pb.Message) -> None:
    """Handle_snapshot installs a snapshot from the leader if it is newer than our commit."""
    frm = sender(m)
    meta = m.snapshot.metadata
    if restore_snapshot(r, m.snapshot):
        r.logger.info(
            "%d [commit: %d] restored snapshot [index: %d, term: %d]",
            r.id,
            r.raft_log.committed,
            meta.index,
            meta.term,
        )
        r.send(pb.Message(type=pb.MsgAppResp, to=frm, index=r.raft_log.last_index()))
    else:
        r.logger.info(
            "%d [commit: %d] ignored snapshot [index: %d, term: %d]",
            r.id,
            r.raft_log.committed,
            meta.index,
            meta.term,
        )
        r.send(pb.Message(type=pb.MsgAppResp, to=frm, index=r.raft_log.committed))


def restore_snapshot(r: Raft, s: pb.Snapshot) -> bool:
    """Restore_snapshot resets the log and configuration to snapshot s; False if it is not needed."""
    meta = s.metadata
    if meta.index <= r.raft_log.committed:
        return False
    if r.role is not StateType.FOLLOWER:
        # Only a follower receives snapshots; step down to be safe.
        r.logger.warning("%d attempted to restore snapshot as leader; should never happen", r.id)
        r.become_follower(r.term + 1, NONE)
        return False
    cs = meta.conf_state
    if r.id not in (*cs.voters, *cs.learners, *cs.voters_outgoing):
        # A snapshot from a configuration we are not part of: ignore it
        # rather than install a state in which we would be removed.
        r.logger.warning(
            "%d attempted to restore snapshot but it is not in the ConfState %s; should never happen",
            r.id,
            cs,
        )
        return False
    if r.raft_log.match_term(meta.index, meta.term):
        # We already have the snapshot's last entry: just fast-forward the commit.
        r.logger.info(
            "%d [commit: %d, lastindex: %d, lastterm: %d] fast-forwarded commit to snapshot "
            "[index: %d, term: %d]",
            r.id,
            r.raft_log.committed,
            r.raft_log.last_index(),
            r.raft_log.last_term(),
            meta.index,
            meta.term,
        )
        r.raft_log.commit_to(meta.index)
        return False
    if r.raft_log.is_applying():
        # The application is applying committed entries raft handed out (a Ready
        # not yet advanced), conf changes among them. Restoring now would reset the
        # configuration under those changes, and their apply_conf_change would then
        # fail or diverge. Refuse, as for a stale snapshot: the leader retries later.
        r.logger.info(
            "%d [commit: %d, applied: %d, applying: %d] cannot restore snapshot [index: %d, term: %d] "
            "while committed entries are being applied",
            r.id,
            r.raft_log.committed,
            r.raft_log.applied,
            r.raft_log.applying,
            meta.index,
            meta.term,
        )
        return False
    r.raft_log.restore(s)
    r.trk = ProgressTracker(r.trk.max_inflight, r.trk.max_inflight_bytes)
    restore(r.trk, r.raft_log.last_index(), cs)
    switch_to_config(r, r.trk.config, r.trk.progress)
    pr = r.trk.progress[r.id]
    pr.maybe_update(pr.next - 1)
    return True
