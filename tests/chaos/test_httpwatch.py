"""The chaos harness's HTTP watch stream: what it reads over the gateway is what gRPC delivers.

`HttpRawWatch` must hand the watch checker the same `WatchResponse`s a gRPC `RawWatch` gets for the
same request (events with prev_kv, filters, the created response, progress notifications, a
cancellation for a compacted revision), and a stream that dies with its member must raise (the
resumable watch then moves to another member).  etcdpy's gateway only: the progress requests go up the
open request body, and etcd 3.4's gateway starts answering a watch only once its request body ended.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from procs import ServerProcess

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.chaos.httpwatch import HttpRawWatch, WatchBroken
from etcdpy.chaos.watching import RawWatch, WatchStream, prefix_watch
from etcdpy.client import Client

PREFIX = b"hwatch/"


def take(stream: WatchStream, events: int) -> list[pb.WatchResponse]:
    """The responses of `stream` until they have carried `events` events."""
    responses: list[pb.WatchResponse] = []
    iterator: Iterator[pb.WatchResponse] = iter(stream)
    while sum(len(r.events) for r in responses) < events:
        responses.append(next(iterator))
    return responses


def events_of(responses: list[pb.WatchResponse]) -> list[bytes]:
    return [event.SerializeToString() for response in responses for event in response.events]


def test_the_http_stream_gives_the_responses_grpc_gives(etcdpy_server: ServerProcess) -> None:
    with Client([etcdpy_server.endpoint]) as client:
        first = client.put(PREFIX + b"a", b"1").header.revision
        client.put(PREFIX + b"b", b"")  # an empty value: left out of the JSON, an empty value again
        client.put(PREFIX + b"a", b"2")
        last = client.delete(PREFIX + b"a").header.revision
        request = prefix_watch(PREFIX, first, prev_kv=True)
        filtered = prefix_watch(PREFIX, first, filters=(pb.WatchCreateRequest.NODELETE,))
        for create, count in ((request, 4), (filtered, 3)):  # the filtered watch: the puts, not the delete
            grpc_watch, http_watch = (
                RawWatch(etcdpy_server.endpoint, create),
                HttpRawWatch(etcdpy_server.endpoint, create),
            )
            try:
                grpc_seen, http_seen = take(grpc_watch, count), take(http_watch, count)
            finally:
                grpc_watch.close()
                http_watch.close()
            assert http_seen[0].created and grpc_seen[0].created
            assert events_of(http_seen) == events_of(grpc_seen)
            assert len(events_of(http_seen)) == count

        # A progress request on the open stream is answered with the current revision.
        http_watch = HttpRawWatch(etcdpy_server.endpoint, prefix_watch(PREFIX, last + 1))
        try:
            iterator = iter(http_watch)
            assert next(iterator).created
            http_watch.request_progress()
            progress = next(iterator)
        finally:
            http_watch.close()
        assert not progress.events and progress.header.revision == last


def test_a_watch_from_a_compacted_revision_is_canceled_and_ends(etcdpy_server: ServerProcess) -> None:
    with Client([etcdpy_server.endpoint]) as client:
        client.put(PREFIX + b"x", b"1")
        revision = client.put(PREFIX + b"x", b"2").header.revision
        client.compact(revision)
        watch = HttpRawWatch(etcdpy_server.endpoint, prefix_watch(PREFIX, 1))
        try:
            responses = list(watch)  # ends without raising: the server canceled the watch
        finally:
            watch.close()
    assert responses[-1].canceled
    assert responses[-1].compact_revision == revision


def test_a_stream_whose_member_dies_raises(etcdpy_server: ServerProcess) -> None:
    watch = HttpRawWatch(etcdpy_server.endpoint, prefix_watch(PREFIX, 0))
    outcome: list[BaseException | None] = []
    created = threading.Event()

    def read() -> None:
        try:
            for response in watch:
                if response.created:
                    created.set()
            outcome.append(None)
        except BaseException as err:  # the test asserts what it was
            outcome.append(err)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert created.wait(20), "the watch was never created"
        etcdpy_server.kill()
        reader.join(20)
    finally:
        watch.close()
    assert not reader.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], WatchBroken), outcome


def test_a_member_that_does_not_answer_raises_an_os_error(etcdpy_server: ServerProcess) -> None:
    etcdpy_server.kill()
    with pytest.raises(OSError):
        HttpRawWatch(etcdpy_server.endpoint, prefix_watch(PREFIX, 0))
