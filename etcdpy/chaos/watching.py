"""Resumable watches recorded for the watch checker, and the watchers workload.

A `ResumableWatch` is one logical watch: when its stream breaks (member killed,
link cut) it opens a new one on the next member, starting right after the last
revision it was told about, as a client should.  Every stream is one
`WatcherRecord`; the streams of one logical watch form a chain that the checker
reads as one stream (nothing skipped, nothing repeated).  A stream is a gRPC
`RawWatch` or, for `HttpWatchers`, a gateway `HttpRawWatch` (`etcdpy.chaos.httpwatch`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Protocol

import grpc

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.etcdserverpb import rpc_pb2_grpc as rpc
from etcdpy.chaos.history import PREFIX
from etcdpy.chaos.httpwatch import HttpRawWatch
from etcdpy.chaos.workload import Context
from etcdpy.checker import WatcherRecord
from etcdpy.client import Client, TLSConfig, prefix_range_end

PROGRESS_WATCH_ID = -1
RESUME_PAUSE = 0.2  # seconds between a broken stream and the next attempt


class WatchStream(Protocol):
    """One watch stream on one member: `RawWatch` (gRPC) or `HttpRawWatch` (the JSON gateway).

    Iterating gives the responses until the server cancels the watch; a broken stream raises
    `grpc.RpcError` or `OSError` (opening one may raise `OSError` too).
    """

    def request_progress(self) -> None: ...
    def __iter__(self) -> Iterator[pb.WatchResponse]: ...
    def close(self) -> None: ...


Transport = Callable[[str, pb.WatchCreateRequest, TLSConfig | None], WatchStream]
"""Transport opens a `WatchStream` on an endpoint: `RawWatch` or `HttpRawWatch`."""


class RawWatch:
    """RawWatch is one Watch call on one member, exactly as the server answers it.

    The client library's watch resumes on other members by itself; the checker
    must see each server stream as it was, so the harness speaks gRPC directly.
    """

    def __init__(self, endpoint: str, create: pb.WatchCreateRequest, tls: TLSConfig | None = None) -> None:
        self._channel = (
            grpc.insecure_channel(endpoint)
            if tls is None
            else grpc.secure_channel(endpoint, tls.credentials())
        )
        self._requests: queue.Queue[pb.WatchRequest | None] = queue.Queue()
        self._requests.put(pb.WatchRequest(create_request=create))
        stub = rpc.WatchStub(self._channel)  # type: ignore[no-untyped-call]
        self._call = stub.Watch(iter(self._requests.get, None))

    def request_progress(self) -> None:
        self._requests.put(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))

    def __iter__(self) -> Iterator[pb.WatchResponse]:
        """The responses until the server cancels the watch; a broken stream raises grpc.RpcError."""
        for response in self._call:
            yield response
            if response.canceled:
                return

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()
        self._channel.close()


class ResumableWatch:
    """ResumableWatch keeps one watch going across failures, recording every stream it opens."""

    def __init__(
        self,
        ctx: Context,
        name: str,
        first_endpoint: int,
        request: pb.WatchCreateRequest,
        on_response: Callable[[pb.WatchResponse], None] | None = None,
        transport: Transport = RawWatch,
    ) -> None:
        self.ctx = ctx
        self.transport = transport
        self.name = name
        self.endpoint = first_endpoint
        self.request = request
        self.on_response = on_response
        # Where the next stream resumes: every event below it was delivered (the watch checker verifies it).
        self.next_revision = request.start_revision
        self.reached = request.start_revision - 1 if request.start_revision else 0
        self.links: list[str] = []
        self.compacted = False
        self._responses: list[pb.WatchResponse] = []
        self._watch: WatchStream | None = None
        self._closed = threading.Event()
        self._final: int | None = None  # set by `close`: the revision the last stream was current up to
        self._progress = threading.Condition()

    def start(self) -> None:
        self.ctx.closers.append(lambda: self.close(None))
        self.ctx.spawn(self.name, self._run, background=True)

    def _run(self) -> None:
        while not self._closed.is_set():
            request = pb.WatchCreateRequest()
            request.CopyFrom(self.request)
            request.start_revision = self.next_revision
            link = f"{self.name}.{len(self.links)}"
            self.links.append(link)
            self._responses = []
            endpoints = self.ctx.endpoints
            try:
                watch = self._watch = self.transport(
                    endpoints[self.endpoint % len(endpoints)], request, self.ctx.tls
                )
            except OSError:
                watch = None  # the member does not answer: no stream was opened, resume on the next one
            try:
                if self._closed.is_set() and watch is not None:
                    watch.close()
                for response in watch or ():
                    self._receive(response)
            except (grpc.RpcError, OSError):
                pass  # the stream broke: resume on the next member
            finally:
                if watch is not None:
                    watch.close()
            if self._closed.is_set():
                # `close` ended this stream: it counts as current up to where the harness saw it get.
                self._record(link, request, ended_early=self._final is None, current=self._final)
                return
            self._record(link, request, ended_early=True, current=None)
            if self.compacted:
                return
            self.endpoint += 1
            self._closed.wait(RESUME_PAUSE)

    def _receive(self, response: pb.WatchResponse) -> None:
        self._responses.append(response)
        if response.compact_revision:
            self.compacted = True
        if response.events:
            self.next_revision = max(self.next_revision, response.events[-1].kv.mod_revision + 1)
        if response.watch_id == PROGRESS_WATCH_ID or not (
            response.events or response.created or response.canceled
        ):
            self.next_revision = max(self.next_revision, response.header.revision + 1)
        if self.on_response is not None:
            self.on_response(response)
        with self._progress:
            self.reached = max(self.reached, self.next_revision - 1)
            self._progress.notify_all()

    def _record(
        self, link: str, request: pb.WatchCreateRequest, *, ended_early: bool, current: int | None
    ) -> None:
        self.ctx.history.watcher(WatcherRecord(link, request, list(self._responses), ended_early, current))

    def catch_up(self, revision: int, timeout: float) -> bool:
        """Ask for progress until the watch has delivered everything up to `revision`."""
        deadline = self.ctx.history.clock() + timeout
        with self._progress:
            while self.reached < revision:
                remaining = deadline - self.ctx.history.clock()
                if remaining <= 0 or self.compacted:
                    return False
                if self._watch is not None:
                    self._watch.request_progress()
                self._progress.wait(min(remaining, 0.5))
        return True

    def close(self, caught_up_to: int | None) -> None:
        """Stop the watch; its last stream counts as current up to `caught_up_to` (None: it was not)."""
        if self._closed.is_set():
            return
        self._final = caught_up_to
        self._closed.set()
        if self._watch is not None:
            self._watch.close()
        for thread in self.ctx.background:
            if thread.name == self.name:
                thread.join(10)
        self.ctx.history.chain(list(self.links))


def prefix_watch(
    key: bytes,
    start: int,
    *,
    prev_kv: bool = False,
    filters: tuple[pb.WatchCreateRequest.FilterType, ...] = (),
) -> pb.WatchCreateRequest:
    return pb.WatchCreateRequest(
        key=key, range_end=prefix_range_end(key), start_revision=start, prev_kv=prev_kv, filters=filters
    )


class Watchers:
    """Watchers: watches over every workload key, opened during the run from many revisions.

    Some start at revision 1 (the whole history), some at a random past revision,
    some at the current one; some ask for prev_kv, some filter puts or deletes.
    """

    name = "watch"
    transport: Transport = RawWatch
    stagger = True  # every watcher but the first opens 0.5-4 s into the run

    def __init__(self, watchers: int = 4) -> None:
        self.count = watchers
        self.watches: list[ResumableWatch] = []

    def start(self, ctx: Context) -> None:
        for w in range(self.count):
            ctx.spawn(f"watch-opener-{w}", lambda w=w: self._open(ctx, w))  # type: ignore[misc]

    def _open(self, ctx: Context, index: int) -> None:
        rng = ctx.rng(f"{self.name}-{index}")
        if index and self.stagger and ctx.stop.wait(rng.uniform(0.5, 4.0)):
            return
        try:
            current = ctx.client(index).get(PREFIX, prefix=True, count_only=True).header.revision
        except Exception:
            current = 1
        start = [1, rng.randint(1, current), current + 1][index % 3]
        filters: tuple[pb.WatchCreateRequest.FilterType, ...] = ()
        if rng.random() < 0.25:
            filters = (rng.choice([pb.WatchCreateRequest.NOPUT, pb.WatchCreateRequest.NODELETE]),)
        request = prefix_watch(PREFIX, start, prev_kv=rng.random() < 0.5, filters=filters)
        watch = ResumableWatch(ctx, f"{self.name}-{index}", index, request, transport=type(self).transport)
        self.watches.append(watch)
        ctx.history.count(self.name)
        watch.start()

    def finish(self, ctx: Context, client: Client) -> None:
        """Each watch must deliver everything up to the final revision; then it is closed."""
        final = client.get(PREFIX, prefix=True, count_only=True).header.revision
        for watch in self.watches:
            caught_up = watch.catch_up(final, timeout=30.0)
            if not caught_up and not watch.compacted:
                ctx.history.anomaly(
                    "watch-liveness",
                    f"{watch.name} never delivered up to revision {final} after the faults healed",
                )
            watch.close(final if caught_up else None)


class HttpWatchers(Watchers):
    """HttpWatchers: the same watches over the HTTP/JSON gateway (`POST /v3/watch` on the client URL).

    Their streams are recorded and checked exactly as the gRPC watchers' are.  They open at once,
    one on each member (of a 3-member cluster), so the first fault that kills or cuts a member
    breaks a stream that has delivered events, and that watch resumes on the next member.
    """

    name = "http-watch"
    transport: Transport = HttpRawWatch
    stagger = False

    def __init__(self, watchers: int = 3) -> None:
        super().__init__(watchers)
