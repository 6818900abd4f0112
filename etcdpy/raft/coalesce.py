"""Coalesce: fewer, larger messages with the same effect, for a Ready's outgoing messages.

A busy leader steps many proposals and acknowledgements between two Readys, and
each may append to the followers: one Ready can hold several MsgApps to the same
follower, each continuing the one before (raft sends optimistically in replicate
state), some only carrying a new commit index.  A follower that stepped several
MsgApps answers each.  Sending them one by one costs the receiver a step and an
answer apiece; merged, the receiver does the same work once:

* consecutive MsgApps to one peer, where each starts at the previous one's last
  entry, become one MsgApp from the first one's start with all the entries and
  the newest commit index;
* consecutive accepting MsgAppResps to one peer keep only the highest index
  (an acknowledgement of index i says everything the lower ones say).

"Consecutive" is per peer: a message of another kind to the same peer between
two of them (a heartbeat, a rejection) stops the merge, so each peer still gets
its messages in raft's order.  Messages to different peers never merge.
"""

from __future__ import annotations

from collections.abc import Iterable

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft.messages import sender

__all__ = ["coalesce"]


def coalesce(messages: Iterable[pb.Message], max_bytes: int) -> list[pb.Message]:
    """Coalesce merges what can be merged in `messages` (order kept per peer).

    A merged MsgApp carries at most `max_bytes` of entry data (a single message
    larger than that is left as it is).
    """
    out: list[pb.Message] = []
    latest: dict[int, int] = {}  # peer -> position in `out` of the last message to it
    sizes: dict[int, int] = {}  # position in `out` of a merged MsgApp (a copy of ours) -> its entry bytes
    for m in messages:
        at = latest.get(m.to)
        if at is not None:
            merged = _merge(out[at], m, sizes, at, max_bytes)
            if merged is not None:
                out[at] = merged
                continue
        latest[m.to] = len(out)
        out.append(m)
    return out


def _merge(a: pb.Message, b: pb.Message, sizes: dict[int, int], at: int, max_bytes: int) -> pb.Message | None:
    if a.type != b.type or a.term != b.term or sender(a) != sender(b):
        return None
    if a.type == pb.MsgAppResp:
        if a.reject or b.reject:
            return None
        return b if b.index >= a.index else a
    if a.type != pb.MsgApp:
        return None
    last_index = a.index + len(a.entries)
    last_term = a.entries[-1].term if a.entries else a.log_term
    if b.index != last_index or b.log_term != last_term:
        return None
    added = sum(len(e.data) for e in b.entries)
    size = sizes.get(at)
    if size is None:  # a is raft's own message: merge into a copy
        size = sum(len(e.data) for e in a.entries)
        if size + added > max_bytes:
            return None
        merged = pb.Message()
        merged.CopyFrom(a)
        a = merged
    elif size + added > max_bytes:
        return None
    sizes[at] = size + added
    a.entries.extend(b.entries)
    a.commit = max(a.commit, b.commit)
    return a
