"""Watch calls of `Client`: one stream per `Watch`, fragments reassembled, progress on request."""

from __future__ import annotations

import queue
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import grpc

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.etcdserverpb import rpc_pb2_grpc as rpc
from etcdpy.client.errors import from_rpc_error
from etcdpy.client.requests import Bytes, _key_range

_WatchStub: Any = rpc.WatchStub  # the generated stubs are untyped

NOPUT = pb.WatchCreateRequest.NOPUT
NODELETE = pb.WatchCreateRequest.NODELETE


class _Streams(Protocol):
    def stream_channel(self) -> tuple[grpc.Channel, list[tuple[str, str]]]: ...


def watch_create_request(
    key: Bytes,
    range_end: Bytes | None = None,
    *,
    prefix: bool = False,
    from_key: bool = False,
    start_revision: int = 0,
    prev_kv: bool = False,
    progress_notify: bool = False,
    filters: Sequence[pb.WatchCreateRequest.FilterType] = (),
    fragment: bool = False,
    watch_id: int = 0,
) -> pb.WatchCreateRequest:
    """A WatchCreateRequest; ``prefix``/``from_key`` override ``range_end`` as for ranges."""
    k, end = _key_range(key, range_end, prefix, from_key)
    return pb.WatchCreateRequest(
        key=k,
        range_end=end,
        start_revision=start_revision,
        prev_kv=prev_kv,
        progress_notify=progress_notify,
        filters=filters,
        fragment=fragment,
        watch_id=watch_id,
    )


class WatchMixin:
    """The Watch service's call (mixed into `Client`)."""

    def watch(self: _Streams, request: pb.WatchCreateRequest) -> Watch:
        """Open a stream watching what ``request`` (see `watch_create_request`) describes."""
        channel, metadata = self.stream_channel()
        return Watch(channel, metadata, request)


class Watch:
    """A watch stream: iterate for its WatchResponses (created, events, progress, cancel).

    Fragments are reassembled into one response.  The iteration ends after a
    cancel response or `close`; other failures raise their EtcdError.
    """

    def __init__(
        self, channel: grpc.Channel, metadata: list[tuple[str, str]], create: pb.WatchCreateRequest
    ) -> None:
        self._requests: queue.Queue[pb.WatchRequest | None] = queue.Queue()
        self._requests.put(pb.WatchRequest(create_request=create))
        self._closed = False
        self._call = _WatchStub(channel).Watch(self._send(), metadata=metadata or None)

    def _send(self) -> Iterator[pb.WatchRequest]:
        while (request := self._requests.get()) is not None:
            yield request

    def request_progress(self) -> None:
        """Ask for a progress response (watch_id -1) at the server's current revision."""
        self._requests.put(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))

    def cancel(self, watch_id: int = 0) -> None:
        """Ask the server to cancel the watcher; its cancel response ends the iteration."""
        self._requests.put(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=watch_id)))

    def close(self) -> None:
        """Drop the stream at once."""
        self._closed = True
        self._requests.put(None)
        self._call.cancel()

    def __iter__(self) -> Iterator[pb.WatchResponse]:
        pending: pb.WatchResponse | None = None
        try:
            for response in self._call:
                if response.fragment:
                    if pending is None:
                        pending = response
                    else:
                        pending.events.extend(response.events)
                    continue
                if pending is not None:
                    pending.events.extend(response.events)
                    pending.header.CopyFrom(response.header)
                    pending.fragment = False
                    response, pending = pending, None
                yield response
                if response.canceled:  # cancelled, refused or compacted: the only watcher is gone
                    return
        except grpc.RpcError as err:
            if not self._closed:
                raise from_rpc_error(err) from None
        finally:
            self.close()
