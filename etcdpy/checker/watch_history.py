"""Watch history: what the store did at each revision, as far as it is known.

A `StoreHistory` maps revisions to the events they produced (`mvccpb.Event`,
in the order the store applied them).  Revisions between 2 and
`last_revision` that are absent from the map are of unknown content: a write
was applied there but its writer never learned the outcome (timeout, leader
kill).  The watch checker fills those from what watchers saw.

`history_from_writes` builds a history from the writes clients know were
committed, replaying them on a small model of etcd's key space to produce the
events etcd would: one revision per write, a txn's events in op order, a put's
`create_revision` and `version` following the key's previous version, a
delete's event carrying only the key and `mod_revision`.

`KeyTracker` is that model: every key's latest version, where an earlier
revision of unknown content may have touched a key, that key is `UNCERTAIN`
until something tells what it became.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from etcdpy.api.mvccpb import kv_pb2

Event = kv_pb2.Event
KeyValue = kv_pb2.KeyValue

# etcd's store starts empty at revision 1; the first write gets revision 2.
FIRST_WRITE_REVISION: Final = 2


@dataclass(frozen=True, slots=True)
class KeyRange:
    """KeyRange is the set of keys a request names, with etcd's `range_end` conventions.

    An empty `range_end` names the single key; `range_end == b"\\0"` names
    every key >= `key`; otherwise the range is [key, range_end).  An empty
    `key` means `b"\\0"`, the smallest key, as etcd's watch server reads it.
    """

    key: bytes
    range_end: bytes = b""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", b"\0")

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, bytes):
            return False
        if not self.range_end:
            return key == self.key
        if self.range_end == b"\0":
            return key >= self.key
        return self.key <= key < self.range_end

    @property
    def is_everything(self) -> bool:
        """Is_everything tells whether the range holds every key."""
        return self.key == b"\0" and self.range_end == b"\0"

    def __str__(self) -> str:
        if not self.range_end:
            return repr(self.key)
        if self.range_end == b"\0":
            return f"[{self.key!r}, ∞)"
        return f"[{self.key!r}, {self.range_end!r})"


class Uncertain(enum.Enum):
    """Uncertain is the type of `UNCERTAIN`, the state of a key whose latest version is not known."""

    UNCERTAIN = "uncertain"

    def __repr__(self) -> str:
        return "UNCERTAIN"


UNCERTAIN: Final = Uncertain.UNCERTAIN

# A key's state after some revision: its latest version, None when it does not exist.
KeyState = KeyValue | None | Uncertain


def put_version(prior: KeyValue | None, key: bytes, value: bytes, lease: int, revision: int) -> KeyValue:
    """Put_version returns the version a put at `revision` creates over the key's `prior` version."""
    if prior is None:
        return KeyValue(
            key=key, value=value, lease=lease, create_revision=revision, mod_revision=revision, version=1
        )
    return KeyValue(
        key=key,
        value=value,
        lease=lease,
        create_revision=prior.create_revision,
        mod_revision=revision,
        version=prior.version + 1,
    )


def tombstone(key: bytes, revision: int) -> KeyValue:
    """Tombstone returns the kv etcd puts in a delete event: only the key and the revision are set."""
    return KeyValue(key=key, mod_revision=revision)


class KeyTracker:
    """KeyTracker follows every key's latest version through increasing revisions.

    Revisions are fed in increasing order.  A *gap* is a revision whose events
    are not all known; `covered` lists the key ranges for which they are (a
    watcher saw that revision for those keys).  A key outside every covered
    range of a gap that lies after the key's last recorded change is
    `UNCERTAIN`: the gap may have changed it.
    """

    def __init__(self) -> None:
        # key -> (state, revision of that state); a key not here has not existed since revision 1.
        self._latest: dict[bytes, tuple[KeyState, int]] = {}
        # Strictly increasing (add_gap refuses any other), parallel to _gap_covered.
        self._gap_revisions: list[int] = []
        self._gap_covered: list[tuple[KeyRange, ...]] = []

    def add_gap(self, revision: int, covered: Sequence[KeyRange] = ()) -> None:
        """Add_gap records that `revision` may have changed keys outside `covered` unseen."""
        if self._gap_revisions and revision <= self._gap_revisions[-1]:
            raise ValueError(f"gap at revision {revision} is not after the last gap")
        if any(key_range.is_everything for key_range in covered):
            return  # every change at this revision was seen: it is no gap at all
        self._gap_revisions.append(revision)
        self._gap_covered.append(tuple(covered))

    def before(self, key: bytes, revision: int) -> KeyState:
        """Before returns the key's state just before `revision`."""
        state, as_of = self._latest.get(key, (None, 1))
        index = bisect.bisect_right(self._gap_revisions, as_of)
        while index < len(self._gap_revisions) and self._gap_revisions[index] < revision:
            if not any(key in covered for covered in self._gap_covered[index]):
                return UNCERTAIN
            index += 1
        return state

    def record(self, key: bytes, revision: int, state: KeyState) -> None:
        """Record sets the key's state as of `revision` (its change at that revision)."""
        self._latest[key] = (state, revision)

    def has_gap_before(self, revision: int) -> bool:
        """Has_gap_before tells whether any gap lies before `revision`."""
        return bool(self._gap_revisions) and self._gap_revisions[0] < revision

    def keys_in(self, key_range: KeyRange) -> list[bytes]:
        """Keys_in lists the keys ever recorded that fall in `key_range`, sorted."""
        return sorted(key for key in self._latest if key in key_range)


@dataclass(frozen=True, slots=True)
class Put:
    """Put is a put of `value` (under `lease`, 0 for none) at `key`."""

    key: bytes
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete deletes `key`, or the keys in [key, range_end) with etcd's conventions (see `KeyRange`).

    A single-key Delete in a `CommittedWrite` states that the key existed and
    was deleted (etcd's `deleted` count told the writer so): leave out deletes
    that deleted nothing.  A range Delete deletes whichever keys existed.
    """

    key: bytes
    range_end: bytes = b""


WriteOp = Put | Delete


@dataclass(frozen=True, slots=True)
class CommittedWrite:
    """CommittedWrite is a write that created `revision`: a put, a delete, or a txn's writes in order.

    Only writes that created a revision belong here: a delete that deleted
    nothing (etcd answers with the current revision) or a txn with no
    effective write does not.  Within a txn, list only the deletes that
    deleted something (see `Delete`).
    """

    revision: int
    ops: tuple[WriteOp, ...]


@dataclass(frozen=True)
class StoreHistory:
    """StoreHistory is what the store did at each revision, as far as it is known.

    `events[r]` are the events revision r produced, in the order the store
    applied them; they are authoritative for type, key, value, lease and
    `mod_revision` (== r).  `create_revision`, `version` and `prev_kv` follow
    from earlier revisions and the checker derives them itself.  Revisions in
    [2, last_revision] absent from `events` are of unknown content.
    `compactions` are the revisions the store was compacted at during the run
    (they excuse what etcd legitimately cannot deliver any more).
    """

    events: Mapping[int, tuple[Event, ...]]
    last_revision: int
    compactions: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for revision, events in self.events.items():
            if not FIRST_WRITE_REVISION <= revision <= self.last_revision:
                raise ValueError(f"revision {revision} is outside [2, {self.last_revision}]")
            if not events:
                raise ValueError(f"revision {revision} has no events: every revision changes a key")
            keys = [event.kv.key for event in events]
            if len(set(keys)) != len(keys):
                raise ValueError(f"revision {revision} changes a key twice: {keys}")
            for event in events:
                if event.kv.mod_revision != revision:
                    raise ValueError(
                        f"event for {event.kv.key!r} at revision {revision} has another mod_revision"
                    )

    @property
    def unknown_revisions(self) -> list[int]:
        """Unknown_revisions lists the revisions whose content is not known."""
        return [r for r in range(FIRST_WRITE_REVISION, self.last_revision + 1) if r not in self.events]

    @property
    def last_compaction(self) -> int:
        """Last_compaction is the highest compaction revision, 0 when the store was never compacted."""
        return max(self.compactions, default=0)


def history_from_writes(
    writes: Iterable[CommittedWrite], *, last_revision: int | None = None, compactions: Iterable[int] = ()
) -> StoreHistory:
    """History_from_writes replays committed writes into the events each revision produced.

    Revisions no write claims are of unknown content (a write whose outcome
    its client never learned).  A range delete after such a revision is of
    unknown content too (the keys it deleted depend on what the unknown
    revision did); a put over a key such a revision may have touched is known
    but its `create_revision` and `version` are left 0.  `last_revision`
    defaults to the highest write's: pass the revision of a final read when
    writes of unknown outcome (or lease expiries) may come last.  Raises ValueError on writes that
    contradict each other (a revision claimed twice, a key changed twice in
    one write, a delete of a key that does not exist).
    """
    ordered = sorted(writes, key=lambda write: write.revision)
    revisions = [write.revision for write in ordered]
    if len(set(revisions)) != len(revisions):
        raise ValueError("two writes claim the same revision")
    if ordered and ordered[0].revision < FIRST_WRITE_REVISION:
        raise ValueError(f"revision {ordered[0].revision} is before the first write revision 2")
    last = last_revision if last_revision is not None else (revisions[-1] if revisions else 1)
    if revisions and revisions[-1] > last:
        raise ValueError(f"a write at revision {revisions[-1]} is after last_revision {last}")
    tracker = KeyTracker()
    events: dict[int, tuple[Event, ...]] = {}
    previous = 1
    for write in ordered:
        for gap in range(previous + 1, write.revision):
            tracker.add_gap(gap)
        produced = _replay_write(tracker, write)
        if produced is not None:
            events[write.revision] = produced
        previous = write.revision
    return StoreHistory(events, last, frozenset(compactions))


def _replay_write(tracker: KeyTracker, write: CommittedWrite) -> tuple[Event, ...] | None:
    """_replay_write applies one write to `tracker`; its events, or None when they cannot be known."""
    revision = write.revision
    produced: list[Event] = []
    known = True
    touched: set[bytes] = set()
    for op in write.ops:
        if isinstance(op, Delete) and op.range_end:
            if tracker.has_gap_before(revision):
                known = False  # keys never recorded may have been created in a gap and deleted here
            keys = tracker.keys_in(KeyRange(op.key, op.range_end))
        else:
            keys = [op.key]
        for key in keys:
            if key in touched:
                raise ValueError(f"the write at revision {revision} changes {key!r} twice")
            prior = tracker.before(key, revision)
            if isinstance(op, Put):
                touched.add(key)
                if prior is UNCERTAIN:
                    kv = KeyValue(key=key, value=op.value, lease=op.lease, mod_revision=revision)
                    tracker.record(key, revision, UNCERTAIN)
                else:
                    kv = put_version(prior, key, op.value, op.lease, revision)
                    tracker.record(key, revision, kv)
                produced.append(Event(type=Event.PUT, kv=kv))
            elif prior is None and not op.range_end:
                raise ValueError(f"the write at revision {revision} deletes {key!r}, which does not exist")
            elif prior is UNCERTAIN and op.range_end:
                known = False  # the range deleted the key only if it existed
            elif prior is not None:
                touched.add(key)
                tracker.record(key, revision, None)
                produced.append(Event(type=Event.DELETE, kv=tombstone(key, revision)))
    if known and not produced:
        raise ValueError(f"the write at revision {revision} changed nothing, so it created no revision")
    return tuple(produced) if known else None
