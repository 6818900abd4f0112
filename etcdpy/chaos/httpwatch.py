"""Watches over the HTTP/JSON gateway: `POST /v3/watch` on a member's client URL, read as it comes.

`HttpRawWatch` is one gateway watch stream on one member, with the interface of
`etcdpy.chaos.watching.RawWatch`: the requests go up as a chunked request body (the
create request, then progress requests), the answers come back as newline-separated
``{"result": ...}`` objects over a chunked response, and each is decoded with protobuf's
``json_format`` into the `WatchResponse` it is, so the watch checker reads an HTTP stream
exactly as it reads a gRPC one.  A stream that breaks (the member dies, the connection
ends, an error object arrives) raises `WatchBroken`, which is an `OSError`.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from typing import BinaryIO

from google.protobuf import json_format

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.client import TLSConfig

CONNECT_TIMEOUT = 5.0  # seconds to open the connection; the stream itself may stay idle for long


class WatchBroken(ConnectionError):
    """The gateway watch stream ended without the server cancelling the watch."""


def response_lines(reader: BinaryIO) -> Iterator[bytes]:
    """The newline-separated objects of a chunked response body, until its last chunk.

    Raises `WatchBroken` when the connection ends before the last chunk.
    """
    pending = b""
    while True:
        size_line = reader.readline()
        if not size_line.endswith(b"\n"):
            raise WatchBroken("the connection ended inside the response body")
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            return
        chunk = reader.read(size + 2)
        if len(chunk) < size + 2:
            raise WatchBroken("the connection ended inside a chunk")
        pending += chunk[:-2]
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield line


def watch_response(line: bytes) -> pb.WatchResponse:
    """The `WatchResponse` one line of the stream carries; `WatchBroken` for an error object."""
    document = json.loads(line)
    if "result" not in document:
        raise WatchBroken(f"the stream ended with {line.decode(errors='replace')}")
    return json_format.ParseDict(document["result"], pb.WatchResponse())


def _chunk(request: pb.WatchRequest) -> bytes:
    body = json_format.MessageToJson(request, preserving_proto_field_name=True, indent=None).encode() + b"\n"
    return b"%x\r\n%s\r\n" % (len(body), body)


class HttpRawWatch:
    """HttpRawWatch is one `/v3/watch` stream on one member, exactly as the gateway answers it."""

    def __init__(self, endpoint: str, create: pb.WatchCreateRequest, tls: TLSConfig | None = None) -> None:
        if tls is not None:
            raise ValueError("HttpRawWatch speaks plaintext HTTP only")
        host, _, port = endpoint.rpartition(":")
        self._lock = threading.Lock()
        self._closed = False
        self._sock = socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT)
        self._sock.settimeout(None)
        head = f"POST /v3/watch HTTP/1.1\r\nHost: {endpoint}\r\nTransfer-Encoding: chunked\r\n\r\n"
        self._send(head.encode() + _chunk(pb.WatchRequest(create_request=create)))

    def _send(self, data: bytes) -> None:
        with self._lock:
            if not self._closed:
                self._sock.sendall(data)

    def request_progress(self) -> None:
        """Ask for a progress notification (ignored once the stream broke: the next one asks again)."""
        with contextlib.suppress(OSError):
            self._send(_chunk(pb.WatchRequest(progress_request=pb.WatchProgressRequest())))

    def __iter__(self) -> Iterator[pb.WatchResponse]:
        """The responses until the server cancels the watch; a broken stream raises `WatchBroken`."""
        try:
            with self._sock.makefile("rb") as reader:
                status = reader.readline()
                if not status.startswith(b"HTTP/1.1 200"):
                    raise WatchBroken(f"the gateway answered {status.decode(errors='replace').strip()!r}")
                while reader.readline() not in (b"\r\n", b"\n", b""):
                    pass
                for line in response_lines(reader):
                    response = watch_response(line)
                    yield response
                    if response.canceled:
                        return
        except WatchBroken:
            raise
        except (OSError, ValueError) as err:  # reset, or read after `close`
            raise WatchBroken(str(err)) from err
        raise WatchBroken("the server ended the stream")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
