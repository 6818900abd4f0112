"""Watch replay: every delivered event compared, field by field, with what the store held.

The resolved revisions are replayed in order on a `KeyTracker`.  For each
event, the key's previous version gives the expected `create_revision` and
`version` of a put and the expected `prev_kv`; content (type, value, lease)
comes from the resolved revision.  Where the previous version is uncertain
(a revision nobody saw may have changed the key), the first watcher to show
it is believed and every other watcher must agree with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from etcdpy.api.mvccpb import kv_pb2
from etcdpy.checker.watch_history import (
    FIRST_WRITE_REVISION,
    UNCERTAIN,
    KeyRange,
    KeyState,
    KeyTracker,
    StoreHistory,
    put_version,
    tombstone,
)
from etcdpy.checker.watch_report import Guarantee, Violation
from etcdpy.checker.watch_stream import Delivered, StreamView, describe, shorten

Event = kv_pb2.Event
KeyValue = kv_pb2.KeyValue

_KV_FIELDS = ("key", "value", "create_revision", "mod_revision", "version", "lease")


def replay_revisions(
    history: StoreHistory,
    resolved: Mapping[int, Sequence[Event]],
    views: Sequence[StreamView],
    violations: list[Violation],
) -> None:
    """Replay_revisions checks each delivered event's kv and prev_kv against the store's state."""
    # (revision, key) -> every watcher's delivery of that event
    reports: dict[tuple[int, bytes], list[tuple[StreamView, Delivered]]] = {}
    for view in views:
        for delivered in view.delivered:
            reports.setdefault((delivered.revision, delivered.key), []).append((view, delivered))
    tracker = KeyTracker()
    for revision in range(FIRST_WRITE_REVISION, history.last_revision + 1):
        for event in resolved.get(revision, ()):
            key = event.kv.key
            _EventReplay(
                history, tracker, revision, event, reports.get((revision, key), ()), violations
            ).run()
        if revision not in history.events:
            tracker.add_gap(revision, covering_ranges(views, revision))


class _EventReplay:
    """_EventReplay checks every watcher's copy of one event of the resolved history."""

    def __init__(
        self,
        history: StoreHistory,
        tracker: KeyTracker,
        revision: int,
        event: Event,
        reports: Iterable[tuple[StreamView, Delivered]],
        violations: list[Violation],
    ) -> None:
        self.history = history
        self.tracker = tracker
        self.revision = revision
        self.event = event
        self.reports = list(reports)
        self.violations = violations

    def report(self, guarantee: Guarantee, view: StreamView, explanation: str) -> None:
        self.violations.append(
            Violation(guarantee, view.watcher_id, self.revision, explanation, self.event.kv.key)
        )

    def run(self) -> None:
        key = self.event.kv.key
        prior = self.tracker.before(key, self.revision)
        if prior is UNCERTAIN:
            prior = self.learned_prior()
        expected = self.expected_kv(prior)
        for view, delivered in self.reports:
            self.check_kv(view, delivered.event, expected)
            if view.record.request.prev_kv:
                self.check_prev_kv(view, delivered.event, prior)
        state: KeyState = expected if expected is not None else UNCERTAIN
        if self.event.type == Event.DELETE:
            state = None
        self.tracker.record(key, self.revision, state)

    def learned_prior(self) -> KeyState:
        """Learned_prior is the previous version the first watcher asking for prev_kv shows, or UNCERTAIN."""
        for view, delivered in self.reports:
            if view.record.request.prev_kv and delivered.event.HasField("prev_kv"):
                return delivered.event.prev_kv
        return UNCERTAIN

    def expected_kv(self, prior: KeyState) -> KeyValue | None:
        """Expected_kv is the kv the event must carry; None when the key's history is unknown and unseen."""
        kv = self.event.kv
        if self.event.type == Event.DELETE:
            return tombstone(kv.key, self.revision)
        if prior is not UNCERTAIN:
            return put_version(prior, kv.key, kv.value, kv.lease, self.revision)
        if not self.reports:
            return None
        # Version and create revision cannot be derived: believe the first watcher, check the rest against it.
        shown = self.reports[0][1].event.kv
        expected = KeyValue()
        expected.CopyFrom(kv)
        expected.create_revision, expected.version = shown.create_revision, shown.version
        return expected

    def check_kv(self, view: StreamView, shown: Event, expected: KeyValue | None) -> None:
        if shown.type != self.event.type:
            self.report(
                Guarantee.HISTORY, view, f"{describe(shown)}, but the store did {describe(self.event)}"
            )
        elif expected is not None:
            differences = _differences(shown.kv, expected)
            if differences:
                self.report(
                    Guarantee.HISTORY, view, f"{describe(shown)} differs from the store: {differences}"
                )

    def check_prev_kv(self, view: StreamView, shown: Event, prior: KeyState) -> None:
        if prior is UNCERTAIN:
            return
        has_prev = shown.HasField("prev_kv")
        if prior is None:
            if has_prev:
                self.report(
                    Guarantee.PREV_KV,
                    view,
                    f"{describe(shown)} has a prev_kv but the key did not exist before",
                )
        elif has_prev:
            differences = _differences(shown.prev_kv, prior)
            if differences:
                self.report(
                    Guarantee.PREV_KV,
                    view,
                    f"{describe(shown)}'s prev_kv is not the previous version: {differences}",
                )
        elif self.revision > self.history.last_compaction:
            # etcd reads prev_kv at revision - 1, which a compaction at or above `revision` has removed.
            self.report(Guarantee.PREV_KV, view, f"{describe(shown)} lacks the prev_kv it asked for")


def _differences(shown: KeyValue, expected: KeyValue) -> str:
    """_differences lists the fields where `shown` is not `expected`, empty when they agree."""
    return ", ".join(
        f"{name} {_show(getattr(shown, name))} (expected {_show(getattr(expected, name))})"
        for name in _KV_FIELDS
        if getattr(shown, name) != getattr(expected, name)
    )


def _show(field: object) -> str:
    return shorten(field) if isinstance(field, bytes) else repr(field)


def covering_ranges(views: Iterable[StreamView], revision: int) -> list[KeyRange]:
    """Covering_ranges lists the key ranges whose every event at `revision` some watcher had to show."""
    return [
        view.key_range
        for view in views
        if view.unfiltered and view.window_start is not None and view.window_start <= revision <= view.reach
    ]
