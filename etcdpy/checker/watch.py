"""Watch guarantee checking of recorded watch streams against the store's history.

etcd promises that a watch is ordered, unique, reliable, atomic, resumable
and bookmarkable (learning/api_guarantees.md); `check_watches` checks those
promises, plus prev_kv, filters, scope, the events' fields and the protocol
around creation and cancellation, over a history recorded from a cluster:

    history = history_from_writes([
        CommittedWrite(2, (Put(b"a", b"1"),)),
        CommittedWrite(3, (Put(b"b", b"2"), Delete(b"a"))),   # a txn: one revision
    ])
    watcher = WatcherRecord(1, WatchCreateRequest(key=b"a", range_end=b"c", start_revision=2), responses)
    result = check_watches(history, [watcher])
    assert result.ok, result.explain()

The history may miss revisions whose writer never learned the outcome; what
watchers saw fills them, and two watchers must agree on them.  Every
violation is reported (`WatchCheckResult.violations`), each naming its
`Guarantee`, the watcher and the revision.  A watch resumed after a break is
checked as one stream with the watch it resumes: `check_resumed_chain`, or
`chains=` for several.

What each `Guarantee` covers (a defect is reported under one name: a
repeated, out-of-range or filtered-out event is set aside once reported):

    ORDERED       an event below a revision already delivered; a revision's events out of
                  the store's order; a header revision going back
    UNIQUE        a (revision, key) delivered twice, on a watch or across a resumed chain
    RELIABLE      a wanted event never delivered between the start revision and the
                  watcher's reach: the highest of its last event, its last progress
                  notification and `current_revision` (the history's last revision for a
                  watcher that ran to the end); after a compaction cancel, nothing more
    ATOMIC        a revision's events split over responses (a fragment sequence is one)
    BOOKMARKABLE  an event at or below the revision of an earlier progress notification
    PREV_KV       prev_kv absent (unless compacted away), wrong, or not asked for
    FILTERS       a put on a NOPUT watch, a delete on a NODELETE watch
    SCOPE         a key outside the range, a revision before the start
    HISTORY       an event the store did not do, or with other fields; watchers
                  disagreeing on a revision the history does not know
    PROTOCOL      no created response first, a second one, a compaction cancel without
                  compact_revision or etcd's text, or that was not needed; anything
                  after a cancel; fragments not asked for or never finished
    RESUMABLE     a resumed link that starts past where the previous one stopped

The checks run in passes, one module each: `watch_stream` reads each
watcher's responses alone; `watch_resolve` completes the history from what
watchers saw; `watch_replay` compares every event's fields with the store's
state; this module checks that nothing was dropped, within a watch and
between the links of a resumed chain.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise

from etcdpy.api.mvccpb import kv_pb2
from etcdpy.checker.watch_history import (
    CommittedWrite,
    Delete,
    KeyRange,
    Put,
    StoreHistory,
    history_from_writes,
)
from etcdpy.checker.watch_replay import replay_revisions
from etcdpy.checker.watch_report import (
    Guarantee,
    Violation,
    WatchCheckOptions,
    WatchCheckResult,
    WatcherId,
    WatcherRecord,
)
from etcdpy.checker.watch_resolve import observations, resolve_revisions
from etcdpy.checker.watch_stream import COMPACTED_REASON, StreamView, describe, scan_stream

__all__ = [
    "COMPACTED_REASON",
    "CommittedWrite",
    "Delete",
    "Guarantee",
    "KeyRange",
    "Put",
    "StoreHistory",
    "Violation",
    "WatchCheckOptions",
    "WatchCheckResult",
    "WatcherId",
    "WatcherRecord",
    "check_resumed_chain",
    "check_watches",
    "history_from_writes",
]

Event = kv_pb2.Event


def check_watches(
    history: StoreHistory,
    watchers: Iterable[WatcherRecord],
    *,
    chains: Iterable[Sequence[WatcherId]] = (),
    options: WatchCheckOptions | None = None,
) -> WatchCheckResult:
    """Check_watches checks every watcher's responses against the history and returns all violations.

    Each of `chains` lists watcher ids in order, each link a watch restarted
    where the previous one stopped; the chain must read as one stream.
    """
    options = options or WatchCheckOptions()
    records = list(watchers)
    by_id = {record.watcher_id: record for record in records}
    if len(by_id) != len(records):
        raise ValueError("two watchers share an id")
    violations: list[Violation] = []
    views = [scan_stream(record, history.last_revision, options, violations) for record in records]
    resolved = resolve_revisions(history, observations(views), violations)
    replay_revisions(history, resolved, views, violations)
    revisions = sorted(resolved)
    for view in views:
        _check_reliable(view, history, resolved, revisions, options, violations)
    view_of = {view.watcher_id: view for view in views}
    for chain in chains:
        unknown = [watcher_id for watcher_id in chain if watcher_id not in view_of]
        if unknown:
            raise ValueError(f"chain names unknown watchers {unknown}")
        _check_chain([view_of[watcher_id] for watcher_id in chain], resolved, revisions, violations)
    violations.sort(key=lambda violation: (violation.revision, str(violation.watcher_id)))
    return WatchCheckResult(tuple(violations), resolved)


def check_resumed_chain(
    history: StoreHistory, links: Sequence[WatcherRecord], *, options: WatchCheckOptions | None = None
) -> WatchCheckResult:
    """Check_resumed_chain checks watchers that each resumed the previous one as one logical stream."""
    return check_watches(history, links, chains=[[link.watcher_id for link in links]], options=options)


def _events_between(
    resolved: Mapping[int, Sequence[Event]], revisions: Sequence[int], low: int, high: int
) -> Iterable[Event]:
    """_events_between yields the resolved events with revisions in [low, high], in order."""
    for revision in revisions[bisect.bisect_left(revisions, low) : bisect.bisect_right(revisions, high)]:
        yield from resolved[revision]


def _check_reliable(
    view: StreamView,
    history: StoreHistory,
    resolved: Mapping[int, Sequence[Event]],
    revisions: Sequence[int],
    options: WatchCheckOptions,
    violations: list[Violation],
) -> None:
    """_check_reliable reports every wanted event in the watcher's window that it never delivered."""
    start = view.window_start
    if start is None:
        return
    delivered = {(item.revision, item.key) for item in view.delivered}
    for event in _events_between(resolved, revisions, start, view.reach):
        revision = event.kv.mod_revision
        if not view.wants(event) or (revision, event.kv.key) in delivered:
            continue
        if (
            options.allow_compacted_tombstones
            and event.type == Event.DELETE
            and revision in history.compactions
        ):
            continue
        violations.append(
            Violation(
                Guarantee.RELIABLE,
                view.watcher_id,
                revision,
                f"{describe(event)} was never delivered; the watch had to deliver [{start}, {view.reach}]",
                event.kv.key,
            )
        )


def _check_chain(
    links: Sequence[StreamView],
    resolved: Mapping[int, Sequence[Event]],
    revisions: Sequence[int],
    violations: list[Violation],
) -> None:
    """_check_chain checks that resumed watches skip nothing between links and repeat nothing across them."""
    for previous, link in pairwise(links):
        if (link.key_range, link.wants_puts, link.wants_deletes) != (
            previous.key_range,
            previous.wants_puts,
            previous.wants_deletes,
        ):
            violations.append(
                Violation(
                    Guarantee.RESUMABLE,
                    link.watcher_id,
                    link.record.request.start_revision,
                    f"resumes watcher {previous.watcher_id!r} with another key range or filters",
                )
            )
        _check_link_gap(previous, link, resolved, revisions, violations)
    delivered_by: dict[tuple[int, bytes], WatcherId] = {}
    highest = 0  # highest revision the links before the current one delivered
    for link in links:
        went_back = False
        for item in link.delivered:
            earlier = delivered_by.get((item.revision, item.key))
            if earlier is not None:
                violations.append(
                    Violation(
                        Guarantee.UNIQUE,
                        link.watcher_id,
                        item.revision,
                        f"{describe(item.event)} was delivered before, by watcher {earlier!r}",
                        item.key,
                    )
                )
            elif item.revision < highest and not went_back:
                went_back = True
                violations.append(
                    Violation(
                        Guarantee.ORDERED,
                        link.watcher_id,
                        item.revision,
                        f"{describe(item.event)} follows revision {highest} of the watch it resumes",
                        item.key,
                    )
                )
        for item in link.delivered:
            delivered_by.setdefault((item.revision, item.key), link.watcher_id)
        highest = max([highest, *(item.revision for item in link.delivered)])


def _check_link_gap(
    previous: StreamView,
    link: StreamView,
    resolved: Mapping[int, Sequence[Event]],
    revisions: Sequence[int],
    violations: list[Violation],
) -> None:
    """_check_link_gap reports events no link delivered because `link` started after `previous` stopped."""
    needed = previous.next_needed
    start = link.window_start
    if start is None or start <= needed:
        return
    if previous.compact_revision and start <= previous.compact_revision:
        return  # what lies between was compacted away: the cancel told the client so
    for event in _events_between(resolved, revisions, needed, start - 1):
        if link.wants(event):
            violations.append(
                Violation(
                    Guarantee.RESUMABLE,
                    link.watcher_id,
                    event.kv.mod_revision,
                    f"{describe(event)} is skipped: watcher {previous.watcher_id!r} was current up to "
                    f"{needed - 1} and this watch resumed at {start}",
                    event.kv.key,
                )
            )
