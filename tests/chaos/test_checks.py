"""Each chaos checker flags the anomaly it exists for, and accepts the same history without it."""

from __future__ import annotations

import types

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.chaos.checks import check_linearizable, check_revision_order, check_watch_guarantees, lost_writes
from etcdpy.chaos.history import RunHistory
from etcdpy.chaos.workloads_k8s import PODS, paginated_list
from etcdpy.chaos.workloads_lease import fencing_violations
from etcdpy.checker import KvInput, KvOutput, WatcherRecord
from etcdpy.checker.watch import Delete, Put


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def history() -> tuple[RunHistory, FakeClock]:
    clock = FakeClock()
    return RunHistory(clock=clock), clock


def test_revision_order_flags_an_older_revision_after_a_newer_one_answered() -> None:
    run, clock = history()
    run.timed(0.0, 10, "put x")  # answered at 0.0
    clock.now = 2.0
    run.timed(1.0, 9, "get x")  # called at 1.0, after "put x" answered revision 10
    verdict = check_revision_order(run)
    assert verdict.held is False
    assert "get x called at 1.000 got revision 9" in verdict.detail


def test_revision_order_accepts_overlapping_requests_in_any_order() -> None:
    run, clock = history()
    clock.now = 2.0
    run.timed(0.0, 10, "put x")
    run.timed(1.0, 9, "get x")  # overlaps "put x": either may come first
    assert check_revision_order(run).held is True


def test_linearizability_flags_a_stale_read_and_accepts_an_unknown_write_that_happened() -> None:
    run, clock = history()
    handle = run.kv.call(1, KvInput.put("x", "1"))
    clock.now = 1.0
    run.kv.returned(handle, KvOutput())
    clock.now = 2.0
    handle = run.kv.call(2, KvInput.put("x", "2"))
    run.kv.unknown(handle)  # its answer never came: it may have been applied
    clock.now = 3.0
    handle = run.kv.call(3, KvInput.get("x"))
    clock.now = 4.0
    run.kv.returned(handle, KvOutput("2"))
    assert check_linearizable(run).held is True
    clock.now = 5.0
    handle = run.kv.call(3, KvInput.get("x"))
    clock.now = 6.0
    run.kv.returned(handle, KvOutput("1"))  # "2" was read before: "1" is stale now
    verdict = check_linearizable(run)
    assert verdict.held is False
    assert "get('x')" in verdict.detail


def event(kind: int, key: bytes, value: bytes, revision: int) -> kv_pb2.Event:
    return kv_pb2.Event(type=kind, kv=kv_pb2.KeyValue(key=key, value=value, mod_revision=revision))


def test_lost_writes_names_missing_changed_and_undeleted_writes() -> None:
    run, _ = history()
    run.committed(2, Put(b"a", b"1"))
    run.committed(3, Put(b"b", b"2"))
    run.committed(4, Delete(b"a"))
    run.committed(5, Put(b"c", b"3"))
    events = [
        event(kv_pb2.Event.PUT, b"a", b"1", 2),
        event(kv_pb2.Event.PUT, b"b", b"other", 3),
        event(kv_pb2.Event.PUT, b"a", b"x", 4),
    ]
    problems = lost_writes(run.writes, 2, events)
    assert len(problems) == 3
    assert "revision 3 holds b'other'" in problems[0]
    assert "did not delete b'a'" in problems[1]
    assert "at revision 5 is missing" in problems[2]
    assert lost_writes(run.writes, 5, [event(kv_pb2.Event.PUT, b"c", b"3", 5)]) == []  # the rest compacted


def watch_response(revision: int, *events: kv_pb2.Event, created: bool = False) -> pb.WatchResponse:
    return pb.WatchResponse(header=pb.ResponseHeader(revision=revision), created=created, events=events)


def test_watch_check_flags_a_dropped_event() -> None:
    run, _ = history()
    run.committed(2, Put(b"/chaos/a", b"1"))
    run.committed(3, Put(b"/chaos/b", b"2"))
    request = pb.WatchCreateRequest(key=b"/chaos/", range_end=b"/chaos0", start_revision=2)
    put_a = kv_pb2.Event(
        type=kv_pb2.Event.PUT,
        kv=kv_pb2.KeyValue(key=b"/chaos/a", value=b"1", create_revision=2, mod_revision=2, version=1),
    )
    run.watcher(WatcherRecord("w", request, [watch_response(3, created=True), watch_response(3, put_a)]))
    verdict = check_watch_guarantees(run, 3)
    assert verdict.held is False
    assert "[reliable]" in verdict.detail


def test_fencing_flags_two_holders_writing_the_same_count() -> None:
    assert fencing_violations([(1, 10, 11), (2, 12, 13)], 0, 2) == []
    problems = fencing_violations([(1, 10, 11), (1, 12, 13)], 0, 1)
    assert any("both wrote count 1" in p for p in problems)
    assert any("the counter is 1 after 2 acknowledged" in p for p in problems)
    assert fencing_violations([(1, 12, 11), (2, 10, 13)], 0, 2) == [
        "a write with token 10 at revision 13 follows token 12 at 11"
    ]
    assert fencing_violations([(1, 10, 11)], 1, 2) == []  # the unknown increment happened


class PagedClient:
    """A client whose pages come from a fixed key list; `drift` makes later pages see other keys."""

    def __init__(self, keys: list[bytes], drift: list[bytes] | None = None) -> None:
        self.keys = keys
        self.drift = drift

    def get(self, key: bytes, end: bytes, *, limit: int, revision: int) -> pb.RangeResponse:
        keys = self.keys if revision == 0 or self.drift is None else self.drift
        rest = [k for k in keys if key <= k < end]
        kvs = [kv_pb2.KeyValue(key=k, mod_revision=5) for k in rest[:limit]]
        header = pb.ResponseHeader(revision=revision or 7)
        return pb.RangeResponse(header=header, kvs=kvs, more=len(rest) > limit, count=len(rest))


def test_paginated_lists_must_add_up() -> None:
    keys = [PODS + f"pod-{i}".encode() for i in range(10)]
    at, kvs, problems = paginated_list(PagedClient(keys))  # type: ignore[arg-type]
    assert (at, len(kvs), problems) == (7, 10, [])
    _, _, problems = paginated_list(PagedClient(keys, drift=keys[:6]))  # type: ignore[arg-type]
    assert problems == ["the pages hold 6 pods, the first page counted 10"]


def test_the_package_exports_exactly_its_public_names() -> None:
    import etcdpy.chaos

    public = {
        name
        for name, value in vars(etcdpy.chaos).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(etcdpy.chaos.__all__) == public
