"""The front reads ALPN from a TLS ClientHello without terminating TLS: ClientHellos made by Python's ssl."""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcdpy.server.http.clienthello import NotClientHello, looks_like_tls, offered_alpn


def client_hello(alpn: list[str] | None, *, tls13: bool = True) -> bytes:
    """The first flight of a real TLS client (a ClientHello), produced in memory."""
    context = ssl.create_default_context()
    if not tls13:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="etcd.example")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize(
    ("alpn", "expected"),
    [
        (["h2"], ("h2",)),  # what grpc clients offer
        (["h2", "http/1.1"], ("h2", "http/1.1")),
        (["http/1.1"], ("http/1.1",)),  # curl --http1.1, requests
        (None, ()),  # no ALPN extension at all: HTTP/1.1
    ],
)
@pytest.mark.parametrize("tls13", [True, False])
def test_the_offered_protocols_are_read(
    alpn: list[str] | None, expected: tuple[str, ...], tls13: bool
) -> None:
    hello = client_hello(alpn, tls13=tls13)
    assert looks_like_tls(hello)
    assert offered_alpn(hello) == expected


def test_a_partial_hello_asks_for_more_bytes() -> None:
    hello = client_hello(["h2"])
    for cut in (0, 1, 4, 5, 6, 40, len(hello) - 1):
        assert offered_alpn(hello[:cut]) is None, cut
    assert offered_alpn(hello + b"more records after it") == ("h2",)


def test_a_hello_split_over_two_records_is_joined() -> None:
    hello = client_hello(["h2", "http/1.1"])
    version, body = hello[1:3], hello[5:]
    half = len(body) // 2
    split = (
        b"\x16" + version + half.to_bytes(2, "big") + body[:half]
        + b"\x16" + version + (len(body) - half).to_bytes(2, "big") + body[half:]
    )  # fmt: skip
    assert offered_alpn(split[: 5 + half + 3]) is None
    assert offered_alpn(split) == ("h2", "http/1.1")


@pytest.mark.parametrize(
    "start",
    [
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # plain HTTP/2 on a TLS listener
        b"GET / HTTP/1.1\r\n",
        b"\x15\x03\x03\x00\x02\x02\x28",  # an alert record, not a handshake
        b"\x16\x03\x03\x00\x04\x02\x00\x00\x00",  # a ServerHello, not a ClientHello
        b"\x16\x03\x03\x00\x00",  # an empty record
    ],
)
def test_anything_else_is_refused(start: bytes) -> None:
    with pytest.raises(NotClientHello):
        offered_alpn(start)


def test_a_field_running_past_the_hello_is_refused() -> None:
    hello = bytearray(client_hello(["h2"]))
    hello[5 + 4 + 2 + 32] = 0xFF  # the session id's length now runs past the end of the hello
    with pytest.raises(NotClientHello):
        offered_alpn(bytes(hello))


@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_crash_the_parser(data: bytes) -> None:
    try:
        result = offered_alpn(b"\x16\x03\x01" + data)
    except NotClientHello:
        return
    assert result is None or all(isinstance(name, str) for name in result)
