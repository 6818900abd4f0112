"""Watch service: one WatchStream per bidirectional call; requests in, the stream's responses out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.server import failpoints
from etcdpy.server.auth.gate import AuthGate
from etcdpy.server.services.common import Context, answers_unimplemented
from etcdpy.server.watch import WatchHub, WatchStream

log = logging.getLogger("etcdpy.server.watch")


@answers_unimplemented
class WatchService(rpc_pb2_grpc.WatchServicer):
    """/etcdserverpb.Watch/Watch."""

    def __init__(self, hub: WatchHub, *, max_response_bytes: int, auth: AuthGate | None = None) -> None:
        self.hub = hub
        self.max_response_bytes = max_response_bytes
        self.auth = auth  # watch creation is a read of its range (etcd's isWatchPermitted)

    async def Watch(
        self, request_iterator: AsyncIterator[rpc_pb2.WatchRequest], context: Context
    ) -> AsyncIterator[bytes]:
        stream = self.hub.new_stream(max_response_bytes=self.max_response_bytes)
        receiving = asyncio.get_running_loop().create_task(_receive(request_iterator, stream, self.auth))
        try:
            while (response := await stream.next_wire()) is not None:
                failpoints.hit("beforeSendWatchResponse")
                yield response
        finally:
            receiving.cancel()
            stream.close()


def add_watch_servicer(servicer: rpc_pb2_grpc.WatchServicer, server: Any) -> None:
    """``add_WatchServicer_to_server``, but responses the stream encoded (bytes) go out as they are."""
    handlers = {
        "Watch": grpc.stream_stream_rpc_method_handler(
            servicer.Watch,
            request_deserializer=rpc_pb2.WatchRequest.FromString,
            response_serializer=_encoded,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("etcdserverpb.Watch", handlers),))
    server.add_registered_method_handlers("etcdserverpb.Watch", handlers)


def _encoded(response: bytes | rpc_pb2.WatchResponse) -> bytes:
    return response if isinstance(response, bytes) else response.SerializeToString()


def _refused(create: rpc_pb2.WatchCreateRequest, stream: WatchStream, auth: AuthGate | None) -> bool:
    """Whether the caller may not watch the range: then the stream says so, as etcd (canceled, id -1)."""
    if auth is None:
        return False
    try:
        auth.check_watch(create.key, create.range_end)
    except errors.EtcdError as exc:
        refusal = exc
        if not isinstance(exc, errors.ErrInvalidAuthToken | errors.ErrAuthOldRevision | errors.ErrUserEmpty):
            refusal = errors.ErrPermissionDenied()  # etcd answers every other refusal so
        # etcd's reason is the gRPC error's Go text: "rpc error: code = PermissionDenied desc = ...".
        code = refusal.code.name.title().replace("_", "")
        reason = f"rpc error: code = {code} desc = {refusal.text}"
        hub = stream.hub
        stream.enqueue(
            rpc_pb2.WatchResponse(
                header=hub.header(hub.rev), watch_id=-1, created=True, canceled=True, cancel_reason=reason
            )
        )
        return True
    return False


async def _receive(
    requests: AsyncIterator[rpc_pb2.WatchRequest], stream: WatchStream, auth: AuthGate | None = None
) -> None:
    """Apply the client's requests in order; a broken call closes the stream.

    A client that half-closes keeps its watchers, as with etcd: the call ends
    when the client cancels it.
    """
    try:
        async for request in requests:
            which = request.WhichOneof("request_union")
            if which == "create_request":
                if not _refused(request.create_request, stream, auth):
                    stream.create(request.create_request)
            elif which == "cancel_request":
                stream.cancel(request.cancel_request.watch_id)
            elif which == "progress_request":
                stream.request_progress()
    except (asyncio.CancelledError, GeneratorExit):
        raise
    except Exception:
        # The call broke under grpc, or a request failed in the stream (a bug): nothing is left to
        # serve either way. The traceback tells the two apart. (A client that goes away cancels
        # this task instead, which is not an error.)
        log.warning("a watch stream's requests failed; the stream is closed", exc_info=True)
        stream.close()
