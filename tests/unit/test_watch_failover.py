"""Client watch failover: a broken stream resumes on the next endpoint after the last revision delivered."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest
from watch_fakes import BROKEN, FakeCall, FakeCluster, FakeRpcError, created, events, progress, put

from etcdpy.api import errors
from etcdpy.api.errors import EtcdError
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.client import watch as client_watch
from etcdpy.client.endpoints import Endpoint
from etcdpy.client.watch import Watch

ENDPOINTS = [Endpoint.parse(text) for text in ("ep1", "ep2", "ep3")]


def watch(cluster: FakeCluster, request: pb.WatchCreateRequest, **callbacks: object) -> Watch:
    return Watch(cluster.open, ENDPOINTS, request, **callbacks)  # type: ignore[arg-type]


def revisions(responses: list[pb.WatchResponse]) -> list[int]:
    return [event.kv.mod_revision for response in responses for event in response.events]


def test_a_broken_stream_resumes_on_the_next_endpoint_after_the_last_event() -> None:
    cluster = FakeCluster(
        [
            FakeCall([created(5), events(put(b"a", b"1", 6)), events(put(b"a", b"2", 7))], BROKEN),
            FakeCall([created(9), events(put(b"a", b"3", 8)), pb.WatchResponse(canceled=True)], None),
        ]
    )
    resumed: list[tuple[str, int]] = []
    lost: list[EtcdError] = []
    stream = watch(
        cluster,
        pb.WatchCreateRequest(key=b"a", start_revision=6),
        on_lost=lost.append,
        on_resumed=lambda ep, rev: resumed.append((ep.text, rev)),
    )
    responses = list(stream)
    assert [(ep, req.start_revision) for ep, req in cluster.opened] == [("ep1", 6), ("ep2", 8)]
    assert revisions(responses) == [6, 7, 8]
    assert sum(r.created for r in responses) == 1  # the resumed stream's created response is not repeated
    assert resumed == [("ep2", 8)] and [err.text for err in lost] == ["Socket closed"]
    assert stream.endpoint.text == "ep2"


def test_a_watch_from_now_resumes_after_the_created_revision_and_progress() -> None:
    cluster = FakeCluster(
        [
            FakeCall([created(9)], BROKEN),
            FakeCall([created(9), progress(12)], BROKEN),
            FakeCall([created(12), pb.WatchResponse(canceled=True)], None),
        ]
    )
    list(watch(cluster, pb.WatchCreateRequest(key=b"a")))
    assert [req.start_revision for _, req in cluster.opened] == [0, 10, 13]
    assert [ep for ep, _ in cluster.opened] == ["ep1", "ep2", "ep3"]


def test_a_fragmented_revision_cut_by_the_break_is_delivered_whole_after_the_resume() -> None:
    head = pb.WatchResponse(events=[put(b"a", b"1", 6)], fragment=True)
    cluster = FakeCluster(
        [
            FakeCall([created(5), head], BROKEN),
            FakeCall(
                [created(6), events(put(b"a", b"1", 6), put(b"b", b"1", 6)), pb.WatchResponse(canceled=True)],
                None,
            ),
        ]
    )
    responses = list(watch(cluster, pb.WatchCreateRequest(key=b"a", range_end=b"c", start_revision=6)))
    assert cluster.opened[1][1].start_revision == 6
    assert [len(r.events) for r in responses if r.events] == [2]


def test_a_watch_compacted_meanwhile_ends_with_the_compaction_cancel() -> None:
    compacted = pb.WatchResponse(
        canceled=True, compact_revision=20, cancel_reason=errors.ErrCompacted.message
    )
    cluster = FakeCluster(
        [FakeCall([created(5), events(put(b"a", b"1", 6))], BROKEN), FakeCall([created(30), compacted], None)]
    )
    responses = list(watch(cluster, pb.WatchCreateRequest(key=b"a", start_revision=6)))
    assert responses[-1].compact_revision == 20 and responses[-1].canceled
    assert len(cluster.opened) == 2


@pytest.mark.parametrize(
    "error",
    [
        FakeRpcError(grpc.StatusCode.UNAVAILABLE, errors.ErrNoLeader.message),
        FakeRpcError(grpc.StatusCode.PERMISSION_DENIED, errors.ErrPermissionDenied.message),
    ],
)
def test_an_answer_from_the_server_is_raised_not_retried(error: FakeRpcError) -> None:
    cluster = FakeCluster([FakeCall([created(5)], error)])
    with pytest.raises(EtcdError) as info:
        list(watch(cluster, pb.WatchCreateRequest(key=b"a")))
    assert info.value.text == error.details()
    assert len(cluster.opened) == 1


def test_every_endpoint_down_keeps_retrying_with_backoff_until_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_watch, "FIRST_BACKOFF", 0.001)
    cluster = FakeCluster([])  # every call fails at once
    seven_opened = threading.Event()
    original = cluster.open

    def counting(endpoint: Endpoint, requests: Iterator[pb.WatchRequest]) -> FakeCall:
        call = original(endpoint, requests)
        if len(cluster.opened) >= 7:
            seven_opened.set()
        return call

    stream = Watch(counting, ENDPOINTS, pb.WatchCreateRequest(key=b"a", start_revision=4))  # type: ignore[arg-type]
    received: list[pb.WatchResponse] = []
    reader = threading.Thread(target=lambda: received.extend(stream))
    reader.start()
    assert seven_opened.wait(10)
    stream.close()
    reader.join(10)
    assert not reader.is_alive() and received == []
    assert [ep for ep, _ in cluster.opened[:4]] == ["ep1", "ep2", "ep3", "ep1"]
    assert {req.start_revision for _, req in cluster.opened} == {4}
