"""Human-readable one-line descriptions of entries, messages and snapshots (for logs and tests)."""

from __future__ import annotations

from collections.abc import Iterable

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft.confchange import conf_changes_to_string, decode_conf_change
from etcdpy.raft.messages import sender


def describe_entry(e: pb.Entry) -> str:
    """Describe_entry formats an entry as `term/index Type payload`."""
    cc = decode_conf_change(e)
    if cc is None:
        payload = repr(e.data.decode("utf-8", "backslashreplace")).replace("'", '"')
    else:
        payload = conf_changes_to_string(cc.changes)
        if cc.transition != pb.ConfChangeTransitionAuto:
            payload += f" {pb.ConfChangeTransition.Name(cc.transition)}"
    return f"{e.term}/{e.index} {pb.EntryType.Name(e.type)} {payload}".rstrip()


def describe_conf_state(cs: pb.ConfState) -> str:
    """Describe_conf_state formats a ConfState, leaving out empty parts."""
    parts = [f"Voters:{_ids(cs.voters)}"]
    for name, ids in (
        ("VotersOutgoing", cs.voters_outgoing),
        ("Learners", cs.learners),
        ("LearnersNext", cs.learners_next),
    ):
        if ids:
            parts.append(f"{name}:{_ids(ids)}")
    if cs.auto_leave:
        parts.append("AutoLeave")
    return " ".join(parts)


def _ids(ids: Iterable[int]) -> str:
    return "(" + " ".join(str(i) for i in ids) + ")"


def describe_snapshot(s: pb.Snapshot) -> str:
    """Describe_snapshot formats a snapshot's metadata."""
    m = s.metadata
    return f"Index:{m.index} Term:{m.term} ConfState:{describe_conf_state(m.conf_state)}"


def describe_message(m: pb.Message) -> str:
    """Describe_message formats a message as `from->to Type Term:t Log:logterm/index ...`."""
    s = f"{sender(m)}->{m.to} {pb.MessageType.Name(m.type)} Term:{m.term} Log:{m.log_term}/{m.index}"
    if m.reject:
        s += " Rejected"
        if m.type == pb.MsgAppResp:
            s += f" (Hint: {m.reject_hint})"
    if m.commit:
        s += f" Commit:{m.commit}"
    if m.context:
        s += f" Context:{m.context.decode('utf-8', 'backslashreplace')}"
    if m.entries:
        s += " Entries:[" + ", ".join(describe_entry(e) for e in m.entries) + "]"
    if m.HasField("snapshot") and m.snapshot.metadata.index:
        s += " Snapshot: " + describe_snapshot(m.snapshot)
    return s


def describe_hard_state(hs: pb.HardState) -> str:
    """Describe_hard_state formats a HardState."""
    return f"Term:{hs.term} Vote:{hs.vote} Commit:{hs.commit}"
