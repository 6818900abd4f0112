"""The ALPN protocols a TLS ClientHello offers, read from the first bytes of a connection in the clear.

The front tells gRPC from HTTP/1.1 under TLS without terminating TLS: the ClientHello travels
unencrypted, and gRPC clients offer ``h2`` in its ALPN extension (RFC 7301).  `offered_alpn` reads
the TLS records a connection has sent so far (``recv(MSG_PEEK)``): it answers the protocols, or
`None` while the ClientHello is not complete yet, and raises `NotClientHello` for anything else.

Layout (RFC 8446 4.1.2, the same in TLS 1.0-1.3)::

    record:       type 0x16 (handshake) | version (2) | length (2) | fragment
    handshake:    type 0x01 (ClientHello) | length (3) | body     (may span several records)
    ClientHello:  version (2) | random (32) | session_id <1> | cipher_suites <2>
                  | compression_methods <1> | extensions <2>
    extension:    type (2) | data <2>;  ALPN (type 16): protocol_name_list <2> of name <1>
"""

from __future__ import annotations

RECORD_HANDSHAKE = 0x16
HANDSHAKE_CLIENT_HELLO = 0x01
EXTENSION_ALPN = 16
RECORD_HEADER = 5
MAX_CLIENT_HELLO = 64 * 1024  # larger than any real ClientHello (a post-quantum key share is ~1.2 KB)


class NotClientHello(ValueError):
    """The bytes are not the start of a TLS ClientHello (or it is malformed)."""


def looks_like_tls(first: bytes) -> bool:
    """Whether a connection's first byte is a TLS handshake record's (no HTTP request starts so)."""
    return first[:1] == bytes([RECORD_HANDSHAKE])


def offered_alpn(data: bytes) -> tuple[str, ...] | None:
    """The ALPN protocol names the ClientHello at the start of `data` offers (empty: no ALPN extension).

    None while `data` holds only part of the ClientHello.
    """
    if data and not looks_like_tls(data):
        raise NotClientHello(f"TLS record type {data[0]}, not handshake")
    body = bytearray()
    pos = 0
    while pos + RECORD_HEADER <= len(data):
        if data[pos] != RECORD_HANDSHAKE or data[pos + 1] != 3:
            raise NotClientHello("not a TLS handshake record")
        size = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if size == 0 or size > 2**14 + 2048:
            raise NotClientHello(f"TLS record of {size} bytes")
        if pos + RECORD_HEADER + size > len(data):
            return None
        body += data[pos + RECORD_HEADER : pos + RECORD_HEADER + size]
        pos += RECORD_HEADER + size
        if len(body) >= 4:
            if body[0] != HANDSHAKE_CLIENT_HELLO:
                raise NotClientHello(f"handshake message type {body[0]}, not ClientHello")
            length = int.from_bytes(body[1:4], "big")
            if length > MAX_CLIENT_HELLO:
                raise NotClientHello(f"ClientHello of {length} bytes")
            if len(body) >= 4 + length:
                return _alpn_of(_Reader(bytes(body[4 : 4 + length])))
    return None


class _Reader:
    """Reads the length-prefixed fields of a ClientHello body; a short field is malformed."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise NotClientHello("ClientHello field runs past its end")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def vector(self, length_bytes: int) -> bytes:
        return self.take(int.from_bytes(self.take(length_bytes), "big"))

    def done(self) -> bool:
        return self.pos >= len(self.data)


def _alpn_of(hello: _Reader) -> tuple[str, ...]:
    hello.take(2 + 32)  # legacy_version, random
    hello.vector(1)  # session id
    hello.vector(2)  # cipher suites
    hello.vector(1)  # compression methods
    if hello.done():
        return ()  # no extensions at all (an SSLv3-era hello)
    extensions = _Reader(hello.vector(2))
    while not extensions.done():
        kind = int.from_bytes(extensions.take(2), "big")
        data = extensions.vector(2)
        if kind == EXTENSION_ALPN:
            names = _Reader(_Reader(data).vector(2))
            offered: list[str] = []
            while not names.done():
                offered.append(names.vector(1).decode("ascii", "replace"))
            return tuple(offered)
    return ()
