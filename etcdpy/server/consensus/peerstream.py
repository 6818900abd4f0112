"""The peer stream: raft message batches between members on etcdpy's own framing over asyncio streams.

etcd streams raft messages over long-lived HTTP/1.1 requests on the peer URL (rafthttp), not gRPC;
this is etcdpy's version of it, and what ``--experimental-peer-protocol=stream`` sends on.

The handshake is one HTTP/1.1 request on the peer URL (the peer port's front tells it from gRPC by
its first bytes, or by ALPN under TLS: see etcdpy/server/http/front.py)::

    POST /raft/stream/batch HTTP/1.1
    X-Etcd-Cluster-ID: <cluster ID, hex>
    X-Server-From: <sender's member ID, hex>
    X-Raft-To: <receiver's member ID, hex>

The receiver checks them as etcd's stream handler does and answers a status: 200 starts the stream;
412 a cluster ID (or receiver) mismatch; 410 a sender removed from the cluster; 403 a certificate
refused by ``--peer-cert-allowed-cn``/``--peer-cert-allowed-hostname``/the CRL; 404 another path.
After 200 the connection carries frames one way only, sender to receiver, until either side closes
it: each frame is a 4-byte big-endian length and that many bytes of a `MessageBatch` holding only
its messages (the handshake named the rest).  A frame longer than `MAX_FRAME_BYTES`, one that is not
a MessageBatch, or a stream that ends inside a frame is a `FrameError`: the receiver logs it and
drops the connection, and steps nothing from that frame into raft.

A sender whose peer does not answer the handshake with an HTTP status (an older etcdpy, or one on
``grpc``, whose grpcio owns the peer port) falls back to the gRPC Send stream (transport.py).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from google.protobuf.message import DecodeError

from etcdpy.api.raftpb import peer_pb2
from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.server.http.http11 import HTTPError, parse_head, read_head, status_line
from etcdpy.server.tls import CertificateGuard, Dialer, TLSError

log = logging.getLogger("etcdpy.server.consensus.peerstream")

PATH = "/raft/stream/batch"
LENGTH_BYTES = 4
MAX_FRAME_BYTES = 256 * 1024 * 1024  # a longer length is garbage, not a batch: the connection is dropped
READ_BYTES = 256 * 1024  # what one read of the stream asks for (frames are cut from it)
HANDSHAKE_SECONDS = 5.0  # to wait for the receiver's answer to the handshake
REMOVED_TEXT = "the member has been permanently removed from the cluster"


class FrameError(Exception):
    """A stream that does not carry well-formed frames; the connection is dropped."""


class HandshakeRefused(Exception):
    """The receiver answered the handshake with a status other than 200."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status} {text}")
        self.status = status
        self.text = text


class NotAStreamPeer(Exception):
    """The peer does not answer the handshake in HTTP/1.1: it does not speak the stream (fall back)."""


# ------------------------------------------------------------------------------------------- framing


def encode_frames(messages: list[pb.Message]) -> Iterator[bytes]:
    """The frames carrying `messages` in order: one, or several when one would exceed the limit.

    A single message longer than the limit cannot be framed: `FrameError`.
    """
    payload = peer_pb2.MessageBatch(messages=messages).SerializeToString()
    if len(payload) <= MAX_FRAME_BYTES:
        yield len(payload).to_bytes(LENGTH_BYTES, "big") + payload
        return
    if len(messages) == 1:
        raise FrameError(f"a raft message of {len(payload)} bytes exceeds the frame limit")
    half = len(messages) // 2
    yield from encode_frames(messages[:half])
    yield from encode_frames(messages[half:])


class FrameDecoder:
    """Cuts frames out of the bytes of a stream as they arrive, whatever their boundaries."""

    def __init__(self, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The payloads of the frames `data` completes, in order; `FrameError` where a length is over
        the limit (after the frames before it).  Consume it whole before feeding more."""
        buffer = self._buffer
        buffer += data
        position = 0
        end = len(buffer)
        while end - position >= LENGTH_BYTES:
            length = int.from_bytes(buffer[position : position + LENGTH_BYTES], "big")
            if length > self.max_bytes:
                raise FrameError(f"a frame of {length} bytes exceeds the limit of {self.max_bytes}")
            start = position + LENGTH_BYTES
            if end - start < length:
                break
            yield bytes(buffer[start : start + length])
            position = start + length
        del buffer[:position]

    def finish(self) -> None:
        """The stream ended: `FrameError` if it ended inside a frame."""
        if self._buffer:
            raise FrameError(f"the stream ended inside a frame ({len(self._buffer)} bytes of it arrived)")


def decode_batch(payload: bytes) -> list[pb.Message]:
    """The messages of one frame's payload; `FrameError` when it is not a MessageBatch."""
    try:
        batch = peer_pb2.MessageBatch.FromString(payload)
    except DecodeError as exc:
        raise FrameError(f"a frame is not a raft message batch: {exc}") from None
    return list(batch.messages)


# ----------------------------------------------------------------------------------------- receiving


class Receiver(Protocol):
    """What the receiving side needs of the member's transport (PeerTransport implements it)."""

    local_id: int
    cluster_id: int
    removed: set[int]

    def received(self, sender_id: int, size: int, messages: Iterable[pb.Message]) -> None:
        """Count a batch from `sender_id` and step its messages into raft."""


def certificate_auth(der: bytes) -> dict[str, list[bytes]]:
    """A verified certificate as grpc's auth context names it, for `CertificateGuard.refusal`."""
    cert = x509.load_der_x509_certificate(der)
    cns = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n.value) for n in san if isinstance(n, (x509.DNSName, x509.IPAddress))]
    except x509.ExtensionNotFound:
        names = []
    return {
        "x509_common_name": [str(cn).encode() for cn in cns],
        "x509_subject_alternative_name": [n.encode() for n in names],
        "x509_pem_cert": [cert.public_bytes(Encoding.PEM)],
    }


def _answer(status: int, text: str = "") -> bytes:
    """The handshake's answer: 200 opens the stream (no length: it lasts); others close with `text`."""
    if status == 200:
        return status_line(200) + b"Content-Type: application/octet-stream\r\n\r\n"
    body = (text + "\n").encode()
    return (
        status_line(status)
        + f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n".encode()
        + b"Connection: close\r\n\r\n"
        + body
    )


def _hex_header(headers: dict[str, str], name: str) -> int:
    try:
        return int(headers[name.lower()], 16)
    except (KeyError, ValueError):
        raise HTTPError(400, f"missing or malformed {name} header") from None


@dataclass
class StreamServer:
    """Serves handshakes and streams on the member's event loop (the peer port's front hands them here)."""

    receiver: Receiver
    guard: CertificateGuard | None = None  # --peer-cert-allowed-cn/-hostname, the CRL

    def _refusal(self, writer: asyncio.StreamWriter, headers: dict[str, str]) -> tuple[int, str] | None:
        """Why the handshake is refused (status, text), or None; and the sender's ID is checked too."""
        if self.guard is not None:
            ssl_object = writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            reason = self.guard.refusal(certificate_auth(der)) if der else "no client certificate"
            if reason is not None:
                return 403, f"{self.guard.side} {reason}"
        r = self.receiver
        cluster_id = _hex_header(headers, "X-Etcd-Cluster-ID")
        if cluster_id != r.cluster_id:
            return 412, f"cluster ID mismatch: local {r.cluster_id:x}, remote {cluster_id:x}"
        to = _hex_header(headers, "X-Raft-To")
        if to != r.local_id:
            return 412, f"the stream is for member {to:x}, this is member {r.local_id:x}"
        if _hex_header(headers, "X-Server-From") in r.removed:
            return 410, REMOVED_TEXT
        return None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        """One connection: the handshake, then frames until it ends or breaks."""
        try:
            try:
                head = await read_head(reader, True)
                if head is None:
                    return
                method, path, _query, headers, _keep_alive = parse_head(head)
                if path != PATH:
                    raise HTTPError(404, "404 page not found")
                if method != "POST":
                    raise HTTPError(405, "Method Not Allowed")
                refusal = self._refusal(writer, headers)
                sender_id = _hex_header(headers, "X-Server-From")
            except HTTPError as exc:
                refusal = exc.status, str(exc)
            if refusal is not None:
                log.warning("refused a peer stream from %s: %s", peer, refusal[1])
                writer.write(_answer(*refusal))
                await writer.drain()
                return
            writer.write(_answer(200))
            await self._receive(reader, sender_id, peer)
        except (OSError, asyncio.IncompleteReadError) as exc:
            log.debug("peer stream from %s ended: %s", peer, exc)
        except FrameError as exc:
            log.warning("dropped the peer stream from %s: %s", peer, exc)
        finally:
            writer.close()

    async def _receive(self, reader: asyncio.StreamReader, sender_id: int, peer: str) -> None:
        decoder = FrameDecoder()
        r = self.receiver
        while True:
            data = await reader.read(READ_BYTES)
            if not data:
                decoder.finish()
                return
            for payload in decoder.feed(data):
                if sender_id in r.removed:
                    log.warning("ended the peer stream from removed member %x (%s)", sender_id, peer)
                    return
                r.received(sender_id, len(payload) + LENGTH_BYTES, decode_batch(payload))


# ------------------------------------------------------------------------------------------- sending


async def dial(
    dialer: Dialer, url: str, *, cluster_id: int, local_id: int, peer_id: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to `url` (through the dialer's test proxies), handshake; the open stream.

    OSError/TimeoutError: the peer is not reachable (or closed the connection without a word);
    `NotAStreamPeer`: it answers, but not in HTTP/1.1 (grpcio answers an HTTP/2 SETTINGS frame, and
    under TLS selects no ALPN protocol);
    `HandshakeRefused`: it refuses this stream (the status says why).
    """
    host, target = dialer.target(url)
    t_host, _, t_port = target.rpartition(":")
    context = None
    if urlsplit(url).scheme == "https":
        try:
            # not h2: the peer port's front hands http/1.1 to the stream
            context = dialer.ssl_context(["http/1.1"])
        except (TLSError, ssl.SSLError) as exc:
            raise OSError(f"cannot read the peer TLS files: {exc}") from None
    reader, writer = await asyncio.open_connection(
        t_host.strip("[]"), int(t_port), ssl=context, server_hostname=host if context else None
    )
    if context is not None and writer.get_extra_info("ssl_object").selected_alpn_protocol() != "http/1.1":
        # A peer port's front selects http/1.1; grpcio (an older etcdpy, or one on grpc) selects none.
        writer.transport.abort()
        raise NotAStreamPeer("the peer's TLS handshake did not select ALPN http/1.1")
    try:
        writer.write(
            (
                f"POST {PATH} HTTP/1.1\r\nHost: {urlsplit(url).netloc}\r\n"
                f"X-Etcd-Cluster-ID: {cluster_id:x}\r\nX-Server-From: {local_id:x}\r\n"
                f"X-Raft-To: {peer_id:x}\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        async with asyncio.timeout(HANDSHAKE_SECONDS):
            status_text = await reader.readline()
            if not status_text:  # a proxy in front of a peer that is down closes so, too
                raise ConnectionResetError("the peer closed the connection before answering")
            parts_of_status = status_text.split(b" ", 2)
            if len(parts_of_status) < 2 or not parts_of_status[0].startswith(b"HTTP/1."):
                raise NotAStreamPeer(f"the peer answered {status_text[:40]!r}")
            try:
                status = int(parts_of_status[1])
            except ValueError:
                raise NotAStreamPeer(f"the peer answered {status_text[:40]!r}") from None
            head = await reader.readuntil(b"\r\n\r\n")
            if status != 200:
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length" and value.strip().isdigit():
                        length = min(int(value), 4096)
                text = (await reader.readexactly(length)).decode(errors="replace").strip()
                raise HandshakeRefused(status, text)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        writer.transport.abort()
        raise ConnectionResetError(f"the peer closed the connection during the handshake ({exc})") from None
    except BaseException:
        # Reset, not closed: a TLS close waits for the peer's answer, which a failed handshake does not
        # need, and which a loop stopping right after (a caller giving up) would leave half done.
        writer.transport.abort()
        raise
    return reader, writer
