"""The live watch view: event lines, progress, and a reconnect that resumes after the last revision shown."""

from __future__ import annotations

import datetime
import io
from collections.abc import Iterator
from typing import Any

from rich.console import Console

from etcdpy.api.errors import ErrCompacted, UnknownEtcdError
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.cli import watch_view
from etcdpy.cli.watch_view import event_line, run_view


def put(key: bytes, value: bytes, rev: int) -> kv_pb2.Event:
    return kv_pb2.Event(kv=kv_pb2.KeyValue(key=key, value=value, mod_revision=rev))


class FakeStream:
    def __init__(self, responses: list[pb.WatchResponse], fail: bool) -> None:
        self.responses = responses
        self.fail = fail

    def __iter__(self) -> Iterator[pb.WatchResponse]:
        yield from self.responses
        if self.fail:
            raise UnknownEtcdError(code=None, message="connection reset")  # type: ignore[arg-type]

    def close(self) -> None:
        """Nothing to release."""


class FakeClient:
    """Serves scripted streams; records the start revision of every watch it is asked for."""

    def __init__(self, streams: list[FakeStream]) -> None:
        self.streams = streams
        self.starts: list[int] = []

    def get(self, *args: Any, **kwargs: Any) -> pb.RangeResponse:
        return pb.RangeResponse(header=pb.ResponseHeader(revision=9))

    def watch(self, request: pb.WatchCreateRequest) -> FakeStream:
        self.starts.append(request.start_revision)
        return self.streams.pop(0)


def test_an_event_line_shows_time_type_key_value_and_revision() -> None:
    at = datetime.datetime(2026, 1, 2, 3, 4, 5, 678000)
    assert event_line(put(b"k", b"v" * 100, 12), at).plain == f"03:04:05.678  PUT k = {'v' * 59}…  @12"
    delete = kv_pb2.Event(type=kv_pb2.Event.DELETE, kv=kv_pb2.KeyValue(key=b"k", mod_revision=13))
    assert event_line(delete, at).plain == "03:04:05.678  DEL k  @13"


def test_a_broken_stream_resumes_after_the_last_revision_shown(monkeypatch: Any) -> None:
    monkeypatch.setattr(watch_view, "RETRY_SECONDS", 0)
    first = FakeStream(
        [pb.WatchResponse(created=True), pb.WatchResponse(events=[put(b"a", b"1", 10)])], fail=True
    )
    second = FakeStream(
        [
            pb.WatchResponse(events=[put(b"a", b"2", 11)]),
            pb.WatchResponse(header=pb.ResponseHeader(revision=15)),
            pb.WatchResponse(canceled=True, compact_revision=3, cancel_reason=ErrCompacted.message),
        ],
        fail=False,
    )
    client = FakeClient([first, second])
    out = io.StringIO()
    reason = run_view(Console(file=out, width=200), client, "ep", pb.WatchCreateRequest(key=b"a"))  # type: ignore[arg-type]
    assert client.starts == [10, 11]
    assert reason == ErrCompacted.message
    text = out.getvalue()
    assert (
        "current revision 9" in text
        and "resuming from revision 11" in text
        and "progress: revision 15" in text
    )
    assert text.index("= 1") < text.index("= 2")
