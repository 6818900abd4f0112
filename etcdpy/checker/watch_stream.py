"""Watch streams: one watcher's responses read on their own, without the store's history.

`scan_stream` walks a `WatcherRecord`'s responses once and checks what needs
no history: the protocol (created first, a compaction cancel's fields,
nothing after a cancel, fragments), scope (keys in range, revisions from the
start), filters, uniqueness, order by revision, atomicity across responses
and bookmarks.  It keeps the events worth checking further (a duplicate, an
out-of-scope or a filtered-out event is reported once and set aside) in a
`StreamView`, with the window of revisions the watcher must have delivered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from etcdpy.api.errors import ErrCompacted
from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.checker.watch_history import KeyRange
from etcdpy.checker.watch_report import Guarantee, Violation, WatchCheckOptions, WatcherId, WatcherRecord

Event = kv_pb2.Event
WatchCreateRequest = rpc_pb2.WatchCreateRequest

COMPACTED_REASON: Final = ErrCompacted.message

# Keys and values longer than this are cut in explanations: a violation should fit on a line.
_SHOWN_BYTES: Final = 40


def describe(event: Event) -> str:
    """Describe renders an event in one short phrase, for explanations."""
    kv = event.kv
    if event.type == Event.DELETE:
        return f"DELETE {shorten(kv.key)}@{kv.mod_revision}"
    return f"PUT {shorten(kv.key)}={shorten(kv.value)}@{kv.mod_revision}"


def shorten(data: bytes) -> str:
    """Shorten renders bytes as a literal, cut after a few dozen bytes."""
    if len(data) <= _SHOWN_BYTES:
        return repr(data)
    return f"{data[:_SHOWN_BYTES]!r}...({len(data)} bytes)"


@dataclass(frozen=True, slots=True)
class Delivered:
    """Delivered is one event a watcher received, with the index of the response that completed it."""

    event: Event
    response_index: int
    # Copied out of the event once, by `of` (the only constructor): they are read for every comparison.
    revision: int  # event.kv.mod_revision
    key: bytes  # event.kv.key

    @classmethod
    def of(cls, event: Event, response_index: int) -> Delivered:
        """Of records `event` as delivered by response `response_index`."""
        return cls(event, response_index, event.kv.mod_revision, event.kv.key)


@dataclass(slots=True)
class StreamView:
    """StreamView is what one watcher asked for and, in order, the events worth checking further."""

    record: WatcherRecord
    key_range: KeyRange
    wants_puts: bool
    wants_deletes: bool
    # The first revision the watch covers: the requested one, or the created header's + 1.
    # None while unknown (start_revision 0 and no created response).
    start_revision: int | None = None
    # In arrival order, each (revision, key) once: `_Scanner` reports a repeat instead of adding it.
    delivered: list[Delivered] = field(default_factory=list)
    last_progress: int = 0  # highest progress-notification revision, 0 for none
    canceled: bool = False
    compact_revision: int = 0  # the compaction that cancelled the watch, 0 when none did
    # The revision up to which every matching event must have been delivered (see `WatcherRecord`).
    reach: int = 0

    @property
    def watcher_id(self) -> WatcherId:
        """Watcher_id is the id of the recorded watcher."""
        return self.record.watcher_id

    @property
    def window_start(self) -> int | None:
        """Window_start is the first revision the watcher must deliver, None when nothing is known of it."""
        if self.start_revision is not None:
            return self.start_revision
        return self.delivered[0].revision if self.delivered else None

    @property
    def next_needed(self) -> int:
        """Next_needed is the revision a watch resuming this one must start at to skip nothing."""
        start = self.window_start or self.record.request.start_revision
        return max(start, self.reach + 1)

    def wants(self, event: Event) -> bool:
        """Wants tells whether the watch asked for `event`: its key in range, its type not filtered out."""
        wanted_type = self.wants_deletes if event.type == Event.DELETE else self.wants_puts
        return wanted_type and event.kv.key in self.key_range

    @property
    def unfiltered(self) -> bool:
        """Unfiltered tells whether the watch sees every event of its range."""
        return self.wants_puts and self.wants_deletes


def scan_stream(
    record: WatcherRecord, last_revision: int, options: WatchCheckOptions, violations: list[Violation]
) -> StreamView:
    """Scan_stream checks a watcher's responses on their own; it appends what it finds to `violations`."""
    request = record.request
    filters = set(request.filters)
    view = StreamView(
        record=record,
        key_range=KeyRange(request.key, request.range_end),
        wants_puts=WatchCreateRequest.NOPUT not in filters,
        wants_deletes=WatchCreateRequest.NODELETE not in filters,
        start_revision=request.start_revision or None,
    )
    _Scanner(view, options, violations).scan()
    received = max([view.last_progress, *(delivered.revision for delivered in view.delivered)])
    if record.current_revision is not None:
        view.reach = max(received, record.current_revision)
    elif view.canceled or record.ended_early:
        view.reach = received
    else:
        view.reach = max(received, last_revision)
    return view


class _Scanner:
    """_Scanner walks one watcher's responses, tracking what the guarantees compare against."""

    def __init__(self, view: StreamView, options: WatchCheckOptions, violations: list[Violation]) -> None:
        self.view = view
        self.options = options
        self.violations = violations
        self.created = False
        self.highest_revision = 0  # highest event revision delivered so far
        # (index, last event revision) of the last response that delivered events
        self.previous_response: tuple[int, int] | None = None
        self.last_header = 0
        self.first_seen: dict[tuple[int, bytes], int] = {}  # (revision, key) -> response index
        self.fragments: list[Event] = []

    def report(self, guarantee: Guarantee, revision: int, explanation: str, key: bytes | None = None) -> None:
        self.violations.append(Violation(guarantee, self.view.watcher_id, revision, explanation, key))

    def scan(self) -> None:
        record = self.view.record
        for index, response in enumerate(record.responses):
            revision = response.header.revision
            if self.view.canceled:
                self.report(
                    Guarantee.PROTOCOL, revision, f"response {index} arrives after the watch was cancelled"
                )
            elif response.created:
                self.on_created(index, response)
            else:
                if index == 0:
                    self.report(
                        Guarantee.PROTOCOL, revision, "the first response is not the created response"
                    )
                if response.canceled:
                    self.on_canceled(index, response)
                else:
                    self.on_update(index, response)
        if self.fragments and not (self.view.canceled or record.ended_early):
            self.report(Guarantee.PROTOCOL, self.last_header, "the last fragmented response never completed")

    def check_header(self, index: int, response: rpc_pb2.WatchResponse) -> None:
        revision = response.header.revision
        if revision < self.last_header:
            self.report(
                Guarantee.ORDERED,
                revision,
                f"response {index}'s header revision {revision} is below an earlier one, {self.last_header}",
            )
        self.last_header = max(self.last_header, revision)

    def on_created(self, index: int, response: rpc_pb2.WatchResponse) -> None:
        if self.created:
            self.report(
                Guarantee.PROTOCOL, response.header.revision, f"response {index} is a second created response"
            )
            return
        self.created = True
        self.check_header(index, response)
        if response.events:
            self.report(Guarantee.PROTOCOL, response.header.revision, "the created response carries events")
        if self.view.start_revision is None:
            self.view.start_revision = response.header.revision + 1
        if response.canceled:
            self.view.canceled = True

    def on_canceled(self, index: int, response: rpc_pb2.WatchResponse) -> None:
        view = self.view
        view.canceled = True
        compact = response.compact_revision
        reason = response.cancel_reason
        if response.events:
            self.report(Guarantee.PROTOCOL, compact, f"cancel response {index} carries events")
        if not compact:
            if reason == COMPACTED_REASON:
                self.report(
                    Guarantee.PROTOCOL, 0, f"response {index} cancels for compaction with no compact_revision"
                )
            return
        view.compact_revision = compact
        if reason != COMPACTED_REASON and (reason or self.options.require_compaction_reason):
            self.report(
                Guarantee.PROTOCOL,
                compact,
                f"compaction cancel reason is {reason!r}, expected {COMPACTED_REASON!r}",
            )
        needed = max(view.start_revision or 0, self.highest_revision + 1, view.last_progress + 1)
        if needed >= compact:
            self.report(
                Guarantee.PROTOCOL,
                compact,
                f"cancelled by a compaction at {compact} though it only needed revisions from {needed} on",
            )

    def on_update(self, index: int, response: rpc_pb2.WatchResponse) -> None:
        request = self.view.record.request
        revision = response.header.revision
        if response.compact_revision:
            self.report(
                Guarantee.PROTOCOL, revision, f"response {index} sets compact_revision but does not cancel"
            )
        if response.fragment:
            if not request.fragment:
                self.report(
                    Guarantee.PROTOCOL,
                    revision,
                    f"response {index} is a fragment; fragments were not asked for",
                )
            self.fragments.extend(response.events)
            return
        events = [*self.fragments, *response.events]
        self.fragments = []
        self.check_header(index, response)
        if not events:
            self.view.last_progress = max(self.view.last_progress, revision)
            return
        highest = max(event.kv.mod_revision for event in events)
        if revision < highest:
            self.report(
                Guarantee.PROTOCOL,
                revision,
                f"response {index}'s header revision is below its event at {highest}",
            )
        self.accept(index, events)

    def accept(self, index: int, events: list[Event]) -> None:
        view = self.view
        first = True
        for event in events:
            revision, key = event.kv.mod_revision, event.kv.key
            if key not in view.key_range:
                self.report(
                    Guarantee.SCOPE,
                    revision,
                    f"{describe(event)} is outside the watched range {view.key_range}",
                    key,
                )
                continue
            if view.start_revision is not None and revision < view.start_revision:
                self.report(
                    Guarantee.SCOPE,
                    revision,
                    f"{describe(event)} is before the start revision {view.start_revision}",
                    key,
                )
                continue
            if not view.wants(event):
                self.report(
                    Guarantee.FILTERS, revision, f"{describe(event)} should have been filtered out", key
                )
                continue
            earlier = self.first_seen.get((revision, key))
            if earlier is not None:
                self.report(
                    Guarantee.UNIQUE, revision, f"{describe(event)} again (first in response {earlier})", key
                )
                continue
            if event.HasField("prev_kv") and not view.record.request.prev_kv:
                self.report(
                    Guarantee.PREV_KV, revision, f"{describe(event)} carries a prev_kv nobody asked for", key
                )
            self.check_order(index, event, first)
            first = False
            self.first_seen[(revision, key)] = index
            view.delivered.append(Delivered.of(event, index))
            self.highest_revision = max(self.highest_revision, revision)
        if not first:
            self.previous_response = (index, view.delivered[-1].revision)

    def check_order(self, index: int, event: Event, first_in_response: bool) -> None:
        revision, key = event.kv.mod_revision, event.kv.key
        if revision < self.highest_revision:
            self.report(
                Guarantee.ORDERED,
                revision,
                f"{describe(event)} arrives after an event at revision {self.highest_revision}",
                key,
            )
        elif first_in_response and self.previous_response and self.previous_response[1] == revision:
            self.report(
                Guarantee.ATOMIC,
                revision,
                f"revision {revision} is split between responses {self.previous_response[0]} and {index}",
                key,
            )
        if revision <= self.view.last_progress:
            self.report(
                Guarantee.BOOKMARKABLE,
                revision,
                f"{describe(event)} arrives after a progress notification at {self.view.last_progress}",
                key,
            )
