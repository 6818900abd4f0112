"""Watch checker vocabulary: what a watcher recorded, the guarantees, the violations found.

A `WatcherRecord` is one watch as a client saw it: its create request and
every response it received, in order.  `check_watches` turns a history and
such records into a `WatchCheckResult` listing every `Violation`, each naming
the `Guarantee` it breaks.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.api.mvccpb import kv_pb2

WatcherId = int | str


class Guarantee(enum.Enum):
    """Guarantee is the promise a violation breaks (etcd's learning/api_guarantees.md, plus the protocol)."""

    ORDERED = "ordered"  # events by revision, within a revision in the store's order; revisions never go back
    UNIQUE = "unique"  # no event twice on a watch (or on a resumed chain of watches)
    RELIABLE = "reliable"  # no event of the watched range dropped within the watch's window
    ATOMIC = "atomic"  # a revision's events never split over responses
    BOOKMARKABLE = "bookmarkable"  # nothing at or below a progress notification's revision comes after it
    PREV_KV = "prev_kv"  # prev_kv is the key's previous version, and only when asked for
    FILTERS = "filters"  # NOPUT drops puts, NODELETE drops deletes
    SCOPE = "scope"  # only keys in the watched range, only revisions from the start revision
    HISTORY = "history"  # events are what the store did: key, value, revisions, version, lease
    PROTOCOL = "protocol"  # created first, compaction cancel fields, nothing after a cancel, fragments
    RESUMABLE = "resumable"  # a watch restarted after the last revision received skips nothing


@dataclass(frozen=True, slots=True)
class WatcherRecord:
    """WatcherRecord is one watch as its client saw it.

    `responses` are every response for this watch, in arrival order
    (progress notifications answering a WatchProgressRequest included).
    `ended_early` says the watch stopped before the end of the run (the
    client cancelled it or the connection broke).  `current_revision` is the
    revision up to which the watcher must have delivered every matching event
    (the harness waited for it); when None, a watcher that ran to the end
    must be current up to the history's last revision, and one that ended
    early or was cancelled only up to what it received.
    """

    watcher_id: WatcherId
    request: rpc_pb2.WatchCreateRequest
    responses: Sequence[rpc_pb2.WatchResponse]
    ended_early: bool = False
    current_revision: int | None = None


@dataclass(frozen=True, slots=True)
class WatchCheckOptions:
    """WatchCheckOptions relaxes checks where the reference etcd legitimately differs.

    `require_compaction_reason`: a compaction cancel must carry etcd's
    ErrCompacted text in `cancel_reason` (etcd 3.4 leaves it empty: pass False
    to check etcd itself).  `allow_compacted_tombstones`: a watch starting at
    exactly a compaction revision may miss the delete events of that revision
    (etcd's compaction removes a tombstone at the compaction revision).
    """

    require_compaction_reason: bool = True
    allow_compacted_tombstones: bool = False


@dataclass(frozen=True, slots=True)
class Violation:
    """Violation is one broken guarantee: which watcher, at which revision, and what happened."""

    guarantee: Guarantee
    watcher_id: WatcherId
    revision: int
    explanation: str
    key: bytes | None = None

    def __str__(self) -> str:
        key = f" key {self.key!r}" if self.key is not None else ""
        where = f"watcher {self.watcher_id!r} revision {self.revision}{key}"
        return f"[{self.guarantee.value}] {where}: {self.explanation}"


@dataclass(frozen=True)
class WatchCheckResult:
    """WatchCheckResult lists every violation found; `resolved` is the history as the checker completed it.

    `resolved[r]` are revision r's events: the history's where it knew them,
    otherwise those watchers saw (fields as the first watcher saw them).
    """

    violations: tuple[Violation, ...]
    resolved: Mapping[int, tuple[kv_pb2.Event, ...]]

    @property
    def ok(self) -> bool:
        """Ok tells whether no guarantee was broken."""
        return not self.violations

    def broken(self) -> set[Guarantee]:
        """Broken returns the guarantees at least one violation breaks."""
        return {violation.guarantee for violation in self.violations}

    def of(self, guarantee: Guarantee) -> list[Violation]:
        """Of lists the violations of one guarantee."""
        return [violation for violation in self.violations if violation.guarantee is guarantee]

    def explain(self, limit: int = 50) -> str:
        """Explain renders a summary and the first `limit` violations, one per line."""
        if self.ok:
            return "all watch guarantees hold"
        counts = Counter(violation.guarantee.value for violation in self.violations)
        summary = ", ".join(f"{name}: {count}" for name, count in sorted(counts.items()))
        lines = [f"{len(self.violations)} violations ({summary})"]
        lines.extend(str(violation) for violation in self.violations[:limit])
        if len(self.violations) > limit:
            lines.append(f"... and {len(self.violations) - limit} more")
        return "\n".join(lines)
