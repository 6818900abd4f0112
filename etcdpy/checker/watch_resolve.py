"""Watch resolution: the events of every revision, from the history and from what watchers saw.

Where the history knows a revision, each watcher's events at that revision
must be among its events and in its order.  Where it does not, the watchers'
events fill it: the first watcher to show a key's event at that revision
gives its content (the others are compared with it later, in the replay),
and the revision's order is the one every watcher's order agrees with; a
watcher that contradicts the others is reported.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise

from etcdpy.api.mvccpb import kv_pb2
from etcdpy.checker.watch_history import FIRST_WRITE_REVISION, StoreHistory
from etcdpy.checker.watch_report import Guarantee, Violation
from etcdpy.checker.watch_stream import Delivered, StreamView, describe

Event = kv_pb2.Event

# revision -> the watchers that saw events at that revision, each with its events there in arrival order.
Observations = Mapping[int, Sequence[tuple[StreamView, Sequence[Delivered]]]]


def observations(views: Iterable[StreamView]) -> dict[int, list[tuple[StreamView, list[Delivered]]]]:
    """Observations groups every delivered event by revision, then by watcher, keeping arrival order."""
    grouped: dict[int, dict[int, tuple[StreamView, list[Delivered]]]] = defaultdict(dict)
    for view in views:
        for delivered in view.delivered:
            per_watcher = grouped[delivered.revision]
            per_watcher.setdefault(id(view), (view, []))[1].append(delivered)
    return {revision: list(per_watcher.values()) for revision, per_watcher in grouped.items()}


def resolve_revisions(
    history: StoreHistory, observed: Observations, violations: list[Violation]
) -> dict[int, tuple[Event, ...]]:
    """Resolve_revisions returns every revision's events: the history's, or else what watchers saw."""
    resolved = dict(history.events)
    for revision in sorted(observed):
        seen = observed[revision]
        if not FIRST_WRITE_REVISION <= revision <= history.last_revision:
            for view, events in seen:
                for delivered in events:
                    violations.append(
                        Violation(
                            Guarantee.HISTORY,
                            view.watcher_id,
                            revision,
                            f"{describe(delivered.event)} is outside the history's revisions "
                            f"[{FIRST_WRITE_REVISION}, {history.last_revision}]",
                            delivered.key,
                        )
                    )
        elif revision in history.events:
            _check_known_revision(revision, history.events[revision], seen, violations)
        else:
            resolved[revision] = _merge_unknown_revision(revision, seen, violations)
    return resolved


def _check_known_revision(
    revision: int,
    events: Sequence[Event],
    seen: Sequence[tuple[StreamView, Sequence[Delivered]]],
    violations: list[Violation],
) -> None:
    position = {event.kv.key: index for index, event in enumerate(events)}
    changed = [event.kv.key for event in events]
    for view, delivered_events in seen:
        highest = -1
        for delivered in delivered_events:
            index = position.get(delivered.key)
            if index is None:
                explanation = (
                    f"{describe(delivered.event)}: the store changed only {changed} at this revision"
                )
                violations.append(
                    Violation(Guarantee.HISTORY, view.watcher_id, revision, explanation, delivered.key)
                )
            elif index < highest:
                explanation = (
                    f"{describe(delivered.event)} arrives after {describe(events[highest])}, "
                    "which the store applied later in the same revision"
                )
                violations.append(
                    Violation(Guarantee.ORDERED, view.watcher_id, revision, explanation, delivered.key)
                )
            else:
                highest = index


def _merge_unknown_revision(
    revision: int, seen: Sequence[tuple[StreamView, Sequence[Delivered]]], violations: list[Violation]
) -> tuple[Event, ...]:
    first: dict[bytes, Event] = {}
    # Every watcher saw the revision's events as a subsequence of the store's order: consecutive
    # pairs are "before" edges; the store's order is any topological order of their union.
    after: dict[bytes, set[bytes]] = defaultdict(set)
    for view, delivered_events in seen:
        keys = [delivered.key for delivered in delivered_events]
        for delivered in delivered_events:
            first.setdefault(delivered.key, delivered.event)
        added = [(a, b) for a, b in pairwise(keys) if b not in after[a]]
        for a, b in added:
            after[a].add(b)
        if _topological_order(list(first), after) is None:
            for a, b in added:
                after[a].discard(b)
            violations.append(
                Violation(
                    Guarantee.ORDERED,
                    view.watcher_id,
                    revision,
                    f"its order of the revision's events {keys} contradicts the order other watchers saw",
                )
            )
    order = _topological_order(list(first), after)
    assert order is not None, "edges that close a cycle are never kept"
    return tuple(first[key] for key in order)


def _topological_order(nodes: list[bytes], after: Mapping[bytes, set[bytes]]) -> list[bytes] | None:
    """_topological_order sorts `nodes`, each before those `after` it, ties by position; None on a cycle."""
    rank = {node: index for index, node in enumerate(nodes)}
    incoming = dict.fromkeys(nodes, 0)
    for node in nodes:
        for successor in after.get(node, ()):
            incoming[successor] += 1
    ready = [rank[node] for node in nodes if incoming[node] == 0]
    heapq.heapify(ready)
    order: list[bytes] = []
    while ready:
        node = nodes[heapq.heappop(ready)]
        order.append(node)
        for successor in after.get(node, ()):
            incoming[successor] -= 1
            if incoming[successor] == 0:
                heapq.heappush(ready, rank[successor])
    return order if len(order) == len(nodes) else None
