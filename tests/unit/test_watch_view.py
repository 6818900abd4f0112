"""The live watch view: event lines, progress, and a reconnect that resumes after the last revision shown."""

from __future__ import annotations

import datetime
import io
from typing import Any

from rich.console import Console
from watch_fakes import BROKEN, FakeCall, FakeCluster, created, events, put

from etcdpy.api.errors import ErrCompacted
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.cli.watch_view import event_line, run_view
from etcdpy.client.endpoints import Endpoint
from etcdpy.client.watch import Watch


class FakeClient:
    """Serves a real `Watch` over scripted calls on two endpoints."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    def get(self, *args: Any, **kwargs: Any) -> pb.RangeResponse:
        return pb.RangeResponse(header=pb.ResponseHeader(revision=9))

    def watch(self, request: pb.WatchCreateRequest, **callbacks: Any) -> Watch:
        return Watch(self.cluster.open, [Endpoint.parse("ep1"), Endpoint.parse("ep2")], request, **callbacks)


def test_an_event_line_shows_time_type_key_value_and_revision() -> None:
    at = datetime.datetime(2026, 1, 2, 3, 4, 5, 678000)
    assert event_line(put(b"k", b"v" * 100, 12), at).plain == f"03:04:05.678  PUT k = {'v' * 59}…  @12"
    delete = kv_pb2.Event(type=kv_pb2.Event.DELETE, kv=kv_pb2.KeyValue(key=b"k", mod_revision=13))
    assert event_line(delete, at).plain == "03:04:05.678  DEL k  @13"


def test_a_broken_stream_says_where_it_reconnected_and_resumes_after_the_last_revision_shown() -> None:
    cluster = FakeCluster(
        [
            FakeCall([created(9), events(put(b"a", b"1", 10))], BROKEN),
            FakeCall(
                [
                    created(10),
                    events(put(b"a", b"2", 11)),
                    pb.WatchResponse(header=pb.ResponseHeader(revision=15)),
                    pb.WatchResponse(canceled=True, compact_revision=3, cancel_reason=ErrCompacted.message),
                ],
                None,
            ),
        ]
    )
    out = io.StringIO()
    reason = run_view(Console(file=out, width=200), FakeClient(cluster), pb.WatchCreateRequest(key=b"a"))  # type: ignore[arg-type]
    assert [request.start_revision for _, request in cluster.opened] == [0, 11]
    assert reason == ErrCompacted.message
    lines = out.getvalue().splitlines()
    assert lines[0] == "watching a on ep1, current revision 9"
    assert lines[2:4] == [
        "connection to ep1 lost (Socket closed)",
        "reconnected to ep2, resuming at revision 11",
    ]
    assert lines[5] == "progress: revision 15"
    assert lines[1].endswith("PUT a = 1  @10") and lines[4].endswith("PUT a = 2  @11")
    assert len(lines) == 6
