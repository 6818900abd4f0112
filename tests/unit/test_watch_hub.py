"""WatchHub and WatchStream: created first, live and past events, slow consumers, compaction, progress."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from lease_support import Member

from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.checker.watch import (
    COMPACTED_REASON,
    CommittedWrite,
    Delete,
    Put,
    WatchCheckOptions,
    WatcherRecord,
    check_watches,
    history_from_writes,
)
from etcdpy.server.watch import Watcher, WatchHub, WatchStream, fragment
from etcdpy.server.watch.intervals import RangeIndex
from etcdpy.server.watch.stream import EncodedEvents

pb = rpc_pb2
Create = pb.WatchCreateRequest
PUT, DELETE = kv_pb2.Event.PUT, kv_pb2.Event.DELETE


class Setup:
    def __init__(self, tmp_path: Path, **hub_options: int) -> None:
        self.member = Member(tmp_path)
        self.hub = WatchHub(self.member.applier.store, **hub_options)  # type: ignore[arg-type]
        self.member.applier.on_events = self.hub.on_events

    def put(self, key: bytes, value: bytes = b"v") -> int:
        return self.member.put(key, value).header.revision

    def delete(self, key: bytes, range_end: bytes = b"") -> int:
        resp = self.member.apply(delete_range=pb.DeleteRangeRequest(key=key, range_end=range_end))
        return int(resp.header.revision)

    def stream(
        self,
        max_pending_events: int = 1000,
        max_response_bytes: int = 1 << 20,
        max_pending_bytes: int = 1 << 22,
    ) -> WatchStream:
        return self.hub.new_stream(
            max_pending_events=max_pending_events,
            max_pending_bytes=max_pending_bytes,
            max_response_bytes=max_response_bytes,
        )


def run(tmp_path: Path, body: Callable[[Setup], Awaitable[None]], **hub_options: int) -> None:
    async def main() -> None:
        setup = Setup(tmp_path, **hub_options)
        task = asyncio.get_running_loop().create_task(setup.hub.run())
        try:
            await body(setup)
        finally:
            task.cancel()
            await asyncio.wait([task])
            setup.member.close()

    asyncio.run(main())


async def drain(stream: WatchStream, timeout: float = 2.0) -> list[pb.WatchResponse]:
    """Every response the stream has now or produces until it is quiet for a moment."""
    out: list[pb.WatchResponse] = []
    while True:
        try:
            response = await asyncio.wait_for(stream.next(), 0.2 if out else timeout)
        except TimeoutError:
            return out
        assert response is not None
        out.append(response)


def events_of(responses: list[pb.WatchResponse], watch_id: int = 0) -> list[tuple[int, int, bytes]]:
    return [
        (e.type, e.kv.mod_revision, bytes(e.kv.key))
        for r in responses
        if r.watch_id == watch_id
        for e in r.events
    ]


def test_created_comes_first_then_live_events_of_the_key_only(tmp_path: Path) -> None:
    async def body(s: Setup) -> None:
        stream = s.stream()
        stream.create(Create(key=b"a"))
        r1 = s.put(b"a")
        s.put(b"b")
        r3 = s.delete(b"a")
        responses = await drain(stream)
        assert responses[0].created and responses[0].header.revision == r1 - 1
        assert events_of(responses) == [(PUT, r1, b"a"), (DELETE, r3, b"a")]

    run(tmp_path, body)


def test_ranges_prefix_from_key_and_all(tmp_path: Path) -> None:
    async def body(s: Setup) -> None:
        stream = s.stream()
        stream.create(Create(key=b"b", range_end=b"c"))  # prefix b
        stream.create(Create(key=b"b", range_end=b"\x00"))  # from b on
        stream.create(Create(key=b"\x00", range_end=b"\x00"))  # everything
        for key in (b"a", b"b1", b"c"):
            s.put(key)
        responses = await drain(stream)
        assert [k for _, _, k in events_of(responses, 0)] == [b"b1"]
        assert [k for _, _, k in events_of(responses, 1)] == [b"b1", b"c"]
        assert [k for _, _, k in events_of(responses, 2)] == [b"a", b"b1", b"c"]

    run(tmp_path, body)


def test_prev_kv_only_when_asked_and_filters(tmp_path: Path) -> None:
    async def body(s: Setup) -> None:
        stream = s.stream()
        stream.create(Create(key=b"a", prev_kv=True))
        stream.create(Create(key=b"a"))
        stream.create(Create(key=b"a", filters=[Create.NOPUT]))
        stream.create(Create(key=b"a", filters=[Create.NODELETE]))
        s.put(b"a", b"1")
        s.put(b"a", b"2")
        s.delete(b"a")
        responses = await drain(stream)
        with_prev = [e for r in responses if r.watch_id == 0 for e in r.events]
        assert [e.prev_kv.value for e in with_prev] == [b"", b"1", b"2"]
        assert not with_prev[0].HasField("prev_kv")
        assert not any(e.HasField("prev_kv") for r in responses if r.watch_id == 1 for e in r.events)
        assert [t for t, _, _ in events_of(responses, 2)] == [DELETE]
        assert [t for t, _, _ in events_of(responses, 3)] == [PUT, PUT]

    run(tmp_path, body)


def test_history_then_live_with_nothing_missed_or_repeated(tmp_path: Path) -> None:
    async def body(s: Setup) -> None:
        revs = [s.put(b"k", str(i).encode()) for i in range(10)]
        stream = s.stream()
        stream.create(Create(key=b"k", start_revision=revs[2], prev_kv=True))
        revs += [s.put(b"k", b"live")]
        responses = await drain(stream)
        assert [r for _, r, _ in events_of(responses)] == revs[2:]
        first = next(e for r in responses for e in r.events)
        assert first.prev_kv.value == b"1"

    run(tmp_path, body, chunk_revisions=3)


def test_a_compacted_start_revision_cancels_with_the_compact_revision(tmp_path: Path) -> None:
    async def body(s: Setup) -> None:
        for i in range(5):
            s.put(b"k", str(i).encode())
        s.member.apply(compaction=pb.CompactionRequest(revision=4))
        stream = s.stream()
        stream.create(Create(key=b"k", start_revision=2))
        stream.create(Create(key=b"k", start_revision=4))
        responses = await drain(stream)
        cancel = next(r for r in responses if r.canceled)
        assert (cancel.watch_id, cancel.compact_revision, cancel.cancel_reason) == (0, 4, COMPACTED_REASON)
        assert [r for _, r, _ in events_of(responses, 1)] == [4, 5, 6]
        assert 0 not in stream.watchers

    run(tmp_path, body)


def test_a_slow_consumer_is_caught_up_with_bounded_memory_and_nothing_lost(tmp_path: Path) -> None:
    async def body(s: Setup) -> None:
        stream = s.stream(max_pending_events=5)
        stream.create(Create(key=b"k"))
        revs = []
        for i in range(60):
            revs.append(s.put(b"k", str(i).encode()))
            assert stream._pending_events <= 5 + 1  # the bound is the point
            await asyncio.sleep(0)  # let the catch-up task run between writes
        responses = await drain(stream)
        assert [r for _, r, _ in events_of(responses)] == revs
        assert stream.watchers[0].synced

    run(tmp_path, body, chunk_revisions=4)


def test_a_slow_consumer_of_large_values_is_bounded_by_bytes(tmp_path: Path) -> None:
    async def body(s: Setup) -> None:
        stream = s.stream(max_pending_bytes=10_000)
        stream.create(Create(key=b"k"))
        stream.create(Create(key=b"k", prev_kv=True))
        revs = []
        for i in range(40):
            revs.append(s.put(b"k", b"%04d" % i * 250))
            # one revision may pass the bound (a watcher with prev_kv: two 1 KB values); no more
            assert stream._pending_bytes <= 10_000 + 2_100
            await asyncio.sleep(0)
        responses = await drain(stream)
        assert [r for _, r, _ in events_of(responses, 0)] == revs
        assert [r for _, r, _ in events_of(responses, 1)] == revs
        plain = [e for r in responses if r.watch_id == 0 for e in r.events]
        with_prev = [e for r in responses if r.watch_id == 1 for e in r.events]
        assert not any(e.HasField("prev_kv") for e in plain)
        assert [e.prev_kv.value for e in with_prev[1:]] == [e.kv.value for e in with_prev[:-1]]

    run(tmp_path, body, chunk_revisions=4)


def test_client_chosen_ids_and_duplicates(tmp_path: Path) -> None:
    async def body(s: Setup) -> None:
        stream = s.stream()
        stream.create(Create(key=b"a", watch_id=7))
        stream.create(Create(key=b"b", watch_id=7))
        stream.create(Create(key=b"c"))
        stream.create(Create(key=b"z", range_end=b"a"))
        responses = await drain(stream)
        assert [(r.watch_id, r.created, r.canceled) for r in responses] == [
            (7, True, False),
            (-1, True, True),
            (0, True, False),
            (-1, True, True),
        ]
        assert responses[1].cancel_reason == "mvcc: duplicate watch ID provided on the WatchStream"
        assert responses[3].cancel_reason == "mvcc: watcher range is empty"

    run(tmp_path, body)


def test_cancel_confirms_and_stops_events(tmp_path: Path) -> None:
    async def body(s: Setup) -> None:
        stream = s.stream()
        stream.create(Create(key=b"a"))
        s.put(b"a")
        stream.cancel(0)
        stream.cancel(42)  # unknown: ignored
        s.put(b"a")
        responses = await drain(stream)
        assert [(r.canceled, len(r.events)) for r in responses] == [(False, 0), (False, 1), (True, 0)]
        assert s.hub.watcher_count == 0

    run(tmp_path, body)


def test_progress_request_waits_for_watchers_catching_up(tmp_path: Path) -> None:
    async def body(s: Setup) -> None:
        revs = [s.put(b"k") for _ in range(6)]
        stream = s.stream()
        stream.create(Create(key=b"k", start_revision=revs[0]))
        stream.request_progress()
        responses = await drain(stream)
        assert responses[-1].watch_id == -1 and responses[-1].header.revision == revs[-1]
        assert [r for _, r, _ in events_of(responses)] == revs

    run(tmp_path, body, chunk_revisions=2)


def test_progress_notify_goes_to_synced_watchers_that_asked(tmp_path: Path) -> None:
    async def body(s: Setup) -> None:
        stream = s.stream()
        stream.create(Create(key=b"a", progress_notify=True))
        stream.create(Create(key=b"b"))
        rev = s.put(b"x")
        s.hub.notify_progress()
        responses = await drain(stream)
        progress = [r for r in responses if not r.created]
        assert [(r.watch_id, r.header.revision, len(r.events)) for r in progress] == [(0, rev, 0)]

    run(tmp_path, body)


def test_a_txn_revision_is_never_split(tmp_path: Path) -> None:
    async def body(s: Setup) -> None:
        for key in (b"p1", b"p2", b"p3"):
            s.put(key)
        stream = s.stream(max_pending_events=1)
        stream.create(Create(key=b"p", range_end=b"q", start_revision=1))
        rev = s.delete(b"p", b"q")
        responses = await drain(stream)
        for response in responses:
            revisions = {e.kv.mod_revision for e in response.events}
            if rev in revisions:
                assert len([e for e in response.events if e.kv.mod_revision == rev]) == 3

    run(tmp_path, body)


def test_fragments_split_a_large_response_and_flag_all_but_the_last() -> None:
    events = [kv_pb2.Event(kv=kv_pb2.KeyValue(key=b"k%d" % i, value=b"x" * 100)) for i in range(10)]
    head = pb.WatchResponse(header=pb.ResponseHeader(revision=12, member_id=7), watch_id=3)
    frames = EncodedEvents(events).frames
    pieces = [pb.WatchResponse.FromString(p) for p in fragment(head, frames, 350)]
    assert len(pieces) > 1
    assert [p.fragment for p in pieces] == [True] * (len(pieces) - 1) + [False]
    assert [e for p in pieces for e in p.events] == events
    assert all(p.ByteSize() < 350 for p in pieces)
    assert all((p.header, p.watch_id) == (head.header, 3) for p in pieces)
    whole = pb.WatchResponse(header=head.header, watch_id=3, events=events)
    assert [pb.WatchResponse.FromString(p) for p in fragment(head, frames, 10**6)] == [whole]


@pytest.mark.parametrize("seed", range(6))
def test_random_writers_and_watchers_keep_every_guarantee(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    keys = [b"a", b"b", b"ba", b"c"]
    writes: list[CommittedWrite] = []
    records: list[tuple[Create, WatchStream]] = []
    compactions = [0]

    async def body(s: Setup) -> None:
        async def reader(stream: WatchStream, out: list[pb.WatchResponse]) -> None:
            while (response := await stream.next()) is not None:
                out.append(response)
                if rng.random() < 0.3:
                    await asyncio.sleep(0.001)  # a slow consumer now and then

        readers = []
        outputs: list[list[pb.WatchResponse]] = []
        for step in range(120):
            if rng.random() < 0.08:
                start = rng.randint(0, s.hub.rev + 1)
                key = rng.choice(keys)
                req = rng.choice(
                    [
                        Create(key=key, start_revision=start, prev_kv=rng.random() < 0.5),
                        Create(key=key, range_end=key + b"\xff", start_revision=start, prev_kv=True),
                        Create(key=b"\x00", range_end=b"\x00", start_revision=start),
                    ]
                )
                stream = s.stream(max_pending_events=rng.choice([2, 8, 1000]))
                stream.create(req)
                records.append((req, stream))
                outputs.append([])
                readers.append(asyncio.get_running_loop().create_task(reader(stream, outputs[-1])))
            key = rng.choice(keys)
            if rng.random() < 0.75:
                value = b"%d" % step
                writes.append(CommittedWrite(s.put(key, value), (Put(key, value),)))
            elif s.member.get(key) is not None:
                writes.append(CommittedWrite(s.delete(key), (Delete(key),)))
            if rng.random() < 0.03 and s.hub.rev > compactions[-1] + 1:
                compactions.append(rng.randint(compactions[-1] + 1, s.hub.rev))
                s.member.apply(compaction=pb.CompactionRequest(revision=compactions[-1]))
            if rng.random() < 0.3:
                await asyncio.sleep(0)
        for stream in (st for _, st in records):
            stream.request_progress()
        deadline = asyncio.get_running_loop().time() + 5
        while any(not (o and (o[-1].watch_id == -1 or o[-1].compact_revision)) for o in outputs):
            assert asyncio.get_running_loop().time() < deadline, "watchers never caught up"
            await asyncio.sleep(0.01)
        for (req, stream), out in zip(records, outputs, strict=True):
            stream.close()
            # a stream-wide progress response after the cancel is the stream's, not the watcher's
            ends = [i for i, r in enumerate(out) if r.canceled][:1]
            watched.append(WatcherRecord(len(watched), req, out[: ends[0] + 1] if ends else list(out)))
        await asyncio.gather(*readers)

    watched: list[WatcherRecord] = []
    run(tmp_path, body, chunk_revisions=5)
    assert watched, "the seed made no watcher"
    history = history_from_writes(writes, compactions=compactions[1:])
    result = check_watches(history, watched, options=WatchCheckOptions(allow_compacted_tombstones=True))
    assert result.ok, result.explain()


def test_after_a_restore_synced_watchers_catch_up_from_history(tmp_path: Path) -> None:
    async def body(s: Setup) -> None:
        stream = s.stream()
        stream.create(Create(key=b"k"))
        s.member.applier.on_events = None  # revisions written while the store is replaced: no live events
        revs = [s.put(b"k", b"%d" % i) for i in range(3)]
        s.hub.restore(s.member.applier.current_revision)
        responses = await drain(stream)
        assert [r for _, r, _ in events_of(responses)] == revs

    run(tmp_path, body)


@pytest.mark.parametrize("seed", range(5))
def test_the_range_index_finds_exactly_the_ranges_holding_a_key(seed: int) -> None:
    rng = random.Random(seed)
    keys = [bytes([rng.randrange(97, 103) for _ in range(rng.randrange(1, 4))]) for _ in range(60)]
    index: RangeIndex[int] = RangeIndex()
    ranges: dict[int, tuple[bytes, bytes]] = {}
    for step in range(400):
        if ranges and rng.random() < 0.4:
            item = rng.choice(sorted(ranges))
            index.remove(*ranges.pop(item), item)
        else:
            start = rng.choice(keys)
            end = rng.choice([b"", *(k for k in keys if k > start)])  # b"": no end
            if rng.random() < 0.3 and ranges:  # share a range already there
                start, end = ranges[rng.choice(sorted(ranges))]
            index.add(start, end, step)
            ranges[step] = (start, end)
        assert len(index) == len(ranges) and sorted(index) == sorted(ranges)
        for key in rng.sample(keys, 5):
            found = sorted(item for items in index.stab(key) for item in items)
            assert found == sorted(i for i, (s, e) in ranges.items() if s <= key and (not e or key < e))


def test_many_disjoint_range_watchers_each_get_only_their_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each event is offered to the watchers whose range holds its key, not to all of them."""
    count = 300
    offered = 0
    select = Watcher.select

    def counting(self: Watcher, events: list[kv_pb2.Event]) -> list[kv_pb2.Event]:
        nonlocal offered
        offered += 1
        return select(self, events)

    monkeypatch.setattr(Watcher, "select", counting)

    async def body(s: Setup) -> None:
        stream = s.stream()
        for i in range(count):  # prefix b"r%03d/" is [b"r%03d/", b"r%03d0")
            stream.create(Create(key=b"r%03d/" % i, range_end=b"r%03d0" % i))
        written: dict[int, list[int]] = {i: [] for i in range(count)}
        for i in random.Random(7).sample(range(count), 40):
            written[i].append(s.put(b"r%03d/k" % i))
            s.put(b"r%03d" % i)  # next to the range, in none
        responses = await drain(stream)
        for i in range(count):
            assert [(t, rev) for t, rev, _ in events_of(responses, i)] == [(PUT, rev) for rev in written[i]]
        assert offered == 40  # one watcher per event that had one, none for the others

    run(tmp_path, body)


def test_unsent_revisions_of_each_watcher_of_a_stream_travel_in_one_response(tmp_path: Path) -> None:
    """Two watchers, three revisions each while nothing is sent: one response per watcher, in order.

    Headers never go back on the stream, and a response refuses to grow past max_response_bytes.
    """

    async def body(s: Setup) -> None:
        stream = s.stream(max_response_bytes=300)
        stream.create(Create(key=b"a", range_end=b"b", watch_id=1))
        stream.create(Create(key=b"b", range_end=b"c", watch_id=2))
        created = [await stream.next(), await stream.next()]
        assert all(r is not None and r.created for r in created)
        revs = [(s.put(b"a1"), s.put(b"b1")), (s.put(b"a2"), s.put(b"b2")), (s.put(b"a3"), s.put(b"b3"))]
        s.put(b"a4", b"x" * 400)  # too big to join watcher 1's response: a response of its own
        responses = await drain(stream)
        assert [r.watch_id for r in responses] == [1, 2, 1]
        assert events_of(responses, 1)[:3] == [(PUT, a, b"a%d" % (i + 1)) for i, (a, _) in enumerate(revs)]
        assert events_of(responses, 2) == [(PUT, b, b"b%d" % (i + 1)) for i, (_, b) in enumerate(revs)]
        headers = [r.header.revision for r in responses]
        assert headers == sorted(headers)
        assert all(max(e.kv.mod_revision for e in r.events) <= r.header.revision for r in responses)

    run(tmp_path, body)
