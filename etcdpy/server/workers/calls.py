"""The calls channel between a client worker and the member's core: its methods and its frames.

A worker forwards every unary call of etcd's services as one frame on a Unix stream socket; the core
answers each with one frame.  Frames are length-prefixed (a 4-byte big-endian length, then the body),
so either side parses what one read returned, however many frames that is, and writes the frames a
loop iteration produced in one write.

    call   (worker -> core): u32 call id | u16 method | u16 peer length | u16 metadata length |
                             peer (utf-8) | metadata | request (the protobuf bytes the client sent)
    reply  (core -> worker): u32 call id | u8 status code | u32 details length |
                             details (utf-8) | response (protobuf bytes; empty unless the code is OK)

A call frame whose method is `CANCEL` (no peer, metadata or request) tells the core that the client
gave up on call id (cancelled, or past its deadline): the core cancels that call's handler, as grpcio
does for the calls it serves, so a Lock or Campaign nobody waits for stops waiting.

Metadata is the call's pairs, each ``u16 key length | u16 value length | key | value`` (grpc holds a
call's metadata to 16 KiB).  `METHODS` numbers the methods; both sides build it from the same
generated descriptors, so the numbers agree within one installation (workers are always the member's
own children).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from google.protobuf import descriptor_pool

from etcdpy.api.etcdserverpb import rpc_pb2  # noqa: F401  (registers the descriptors)
from etcdpy.api.v3electionpb import v3election_pb2  # noqa: F401
from etcdpy.api.v3lockpb import v3lock_pb2  # noqa: F401

# The services whose unary calls the core serves over the channel (the member's `Service` names).
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
CANCEL = 0xFFFF  # the method number of a cancel frame (no method has it)


@dataclass(frozen=True)
class Method:
    """One RPC: its number on the channel, its gRPC path, its service and name, and whether it is unary."""

    number: int
    path: str  # /etcdserverpb.KV/Range
    service: str
    name: str
    unary: bool  # neither side streams: served over the channel; the others are proxied by the worker


def _methods() -> tuple[Method, ...]:
    pool = descriptor_pool.Default()
    found: list[Method] = []
    for service_name in SERVICES:
        for method in pool.FindServiceByName(service_name).methods:
            unary = not (method.client_streaming or method.server_streaming)
            path = f"/{service_name}/{method.name}"
            found.append(Method(len(found), path, service_name, method.name, unary))
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
