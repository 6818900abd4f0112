"""The calls channel between a client worker and the member's core: its methods and its frames.

A worker forwards every call of etcd's services over one Unix stream socket to the core, unary calls
and streams alike.  Frames are length-prefixed (a 4-byte big-endian length, then the body), so either
side parses what one read returned, however many frames that is, and writes the frames a loop turn
produced in one write.

    call   (worker -> core): u32 call id | u16 method | u16 peer length | u16 metadata length |
                             peer (utf-8) | metadata | payload
    reply  (core -> worker): u32 call id | u8 code | u32 details length | details (utf-8) | payload

A call frame's method is a number of `METHODS`, or one of the stream controls:

    (a method)   a new call: a unary one carries its request (the protobuf bytes the client sent); a
                 stream's requests follow as MESSAGE frames
    MESSAGE      one request of the stream `call id`
    HALF_CLOSE   the client sent its last request on the stream
    CREDIT       payload u32: the worker has written that many more response bytes of the stream to
                 its client; the core sends a stream's responses only within `WINDOW` bytes not yet
                 credited, so a slow client slows its own stream (as grpc's flow control does), never
                 the channel
    CANCEL       the client gave up on the call (it cancelled, its deadline passed, its connection
                 ended): the core cancels the handler, as grpcio does (a Lock or Campaign waiting
                 stops waiting; a watch stream closes)

A reply's code is a gRPC status code (the call's end: a unary call's response is the payload when
the code is OK), or `STREAM_MESSAGE`: one response of the stream, the payload.

A worker serving TLS adds the client certificate's common name to a call's metadata under
`COMMON_NAME_KEY`; a client cannot send that key (grpc refuses metadata keys that start with a colon,
and the worker drops them), so the core takes it for the certificate's.

Metadata is the call's pairs, each ``u16 key length | u16 value length | key | value`` (grpc holds a
call's metadata to 16 KiB).  `METHODS`
numbers the methods; both sides build it from the same generated descriptors, so the numbers agree
within one installation (workers are always the member's own children).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from google.protobuf import descriptor_pool

from etcdpy.api.etcdserverpb import rpc_pb2  # noqa: F401  (registers the descriptors)
from etcdpy.api.v3electionpb import v3election_pb2  # noqa: F401
from etcdpy.api.v3lockpb import v3lock_pb2  # noqa: F401

# The services whose calls the core serves over the channel (the member's `Service` names).
SERVICES = (
    "etcdserverpb.KV",
    "etcdserverpb.Watch",
    "etcdserverpb.Lease",
    "etcdserverpb.Cluster",
    "etcdserverpb.Maintenance",
    "etcdserverpb.Auth",
    "v3lockpb.Lock",
    "v3electionpb.Election",
)

_LENGTH = struct.Struct("!I")
_CALL = struct.Struct("!IHHH")
_REPLY = struct.Struct("!IBI")  # details: a handler's exception text may be long
_PAIR = struct.Struct("!HH")  # a client's metadata key may be longer than 255 bytes
MAX_FRAME_BYTES = 2**31 - 1
COMMON_NAME_KEY = ":x509-common-name"
CANCEL = 0xFFFF  # the stream controls' method numbers (see the module docstring)
MESSAGE = 0xFFFE
HALF_CLOSE = 0xFFFD
CREDIT = 0xFFFC
FIRST_CONTROL = CREDIT
STREAM_MESSAGE = 0xFF  # a reply's code: one response of a stream
WINDOW = 256 * 1024  # response bytes of one stream in flight between the core and the client


@dataclass(frozen=True)
class Method:
    """One RPC: its number on the channel, its gRPC path, its service and name, and whether it is unary."""

    number: int
    path: str  # /etcdserverpb.KV/Range
    service: str
    name: str
    client_streaming: bool
    server_streaming: bool

    @property
    def unary(self) -> bool:
        return not (self.client_streaming or self.server_streaming)


def _methods() -> tuple[Method, ...]:
    pool = descriptor_pool.Default()
    found: list[Method] = []
    for service_name in SERVICES:
        for method in pool.FindServiceByName(service_name).methods:
            path = f"/{service_name}/{method.name}"
            streams = (method.client_streaming, method.server_streaming)
            found.append(Method(len(found), path, service_name, method.name, *streams))
    return tuple(found)


METHODS = _methods()
BY_PATH = {method.path: method for method in METHODS}


def encode_metadata(pairs: Sequence[tuple[str, str | bytes]]) -> bytes:
    parts: list[bytes] = []
    for key, value in pairs:
        raw_key = key.encode()
        raw_value = value if isinstance(value, bytes) else value.encode()
        parts += (_PAIR.pack(len(raw_key), len(raw_value)), raw_key, raw_value)
    return b"".join(parts)


def decode_metadata(raw: bytes) -> Iterator[tuple[str, str | bytes]]:
    pos = 0
    while pos < len(raw):
        key_length, value_length = _PAIR.unpack_from(raw, pos)
        pos += _PAIR.size
        key = raw[pos : pos + key_length].decode()
        pos += key_length
        value = raw[pos : pos + value_length]
        pos += value_length
        yield key, (value if key.endswith("-bin") else value.decode())


def encode_call(call_id: int, method: int, peer: bytes, metadata: bytes, request: bytes) -> bytes:
    body_length = _CALL.size + len(peer) + len(metadata) + len(request)
    head = _LENGTH.pack(body_length) + _CALL.pack(call_id, method, len(peer), len(metadata))
    return b"".join((head, peer, metadata, request))


def encode_control(call_id: int, control: int, payload: bytes = b"") -> bytes:
    """A MESSAGE, HALF_CLOSE, CREDIT or CANCEL frame of the call `call_id`."""
    return encode_call(call_id, control, b"", b"", payload)


def encode_credit(call_id: int, granted: int) -> bytes:
    return encode_control(call_id, CREDIT, _LENGTH.pack(granted))


def decode_credit(payload: bytes) -> int:
    return int(_LENGTH.unpack(payload)[0])


def decode_call(frame: bytes) -> tuple[int, int, str, bytes, bytes]:
    """(call id, method number, peer, metadata, request) of a call frame's body."""
    call_id, method, peer_length, metadata_length = _CALL.unpack_from(frame)
    pos = _CALL.size
    peer = frame[pos : pos + peer_length].decode()
    pos += peer_length
    metadata = frame[pos : pos + metadata_length]
    return call_id, method, peer, metadata, frame[pos + metadata_length :]


def encode_reply(call_id: int, code: int, details: str, response: bytes) -> bytes:
    raw_details = details.encode()
    body_length = _REPLY.size + len(raw_details) + len(response)
    return b"".join(
        (_LENGTH.pack(body_length), _REPLY.pack(call_id, code, len(raw_details)), raw_details, response)
    )


def decode_reply(frame: bytes) -> tuple[int, int, str, bytes]:
    """(call id, status code, details, response) of a reply frame's body."""
    call_id, code, details_length = _REPLY.unpack_from(frame)
    pos = _REPLY.size
    return call_id, code, frame[pos : pos + details_length].decode(), frame[pos + details_length :]


class FrameBuffer:
    """Bytes as they arrive, cut into frame bodies."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The bodies of the frames `data` completed, in order (ValueError for a length no frame has)."""
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        pos = 0
        end = len(buffer)
        while end - pos >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer, pos)
            if length > MAX_FRAME_BYTES:
                raise ValueError(f"a frame of {length} bytes")
            if end - pos - _LENGTH.size < length:
                break
            start = pos + _LENGTH.size
            frames.append(bytes(buffer[start : start + length]))
            pos = start + length
        if pos:
            del buffer[:pos]
        return frames


class FrameWriter:
    """One side's outgoing frames: those queued in one turn of the event loop leave in one write."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._out: list[bytes] = []

    def attach(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def detach(self) -> None:
        """The connection is gone: what is queued is dropped, and so is what is sent from now on."""
        self.transport = None
        self._out.clear()

    def send(self, frame: bytes) -> None:
        if self.transport is None:
            return
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(frame)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.transport is not None and out:
            self.transport.write(b"".join(out))
