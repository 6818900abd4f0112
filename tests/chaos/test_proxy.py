"""The link proxy does to the bytes what each fault says: forward, cut, blackhole, delay, lose."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from etcdpy.chaos import OPEN, LinkFault, LinkProxy, ProxyHub


@pytest.fixture
def echo() -> Iterator[int]:
    """A TCP echo server on a free port (one thread per connection)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


@pytest.fixture
def link(echo: int) -> Iterator[LinkProxy]:
    hub = ProxyHub(seed=1)
    yield hub.add("a->b", ("127.0.0.1", echo))
    hub.close()


def connect(link: LinkProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", link.port), timeout=2.0)


def roundtrip(sock: socket.socket, payload: bytes = b"ping") -> bytes:
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return received


def test_an_open_link_forwards_both_ways(link: LinkProxy) -> None:
    with connect(link) as sock:
        assert roundtrip(sock, b"hello") == b"hello"
        assert roundtrip(sock, b"again") == b"again"


def test_a_cut_link_resets_open_connections_and_refuses_new_ones(link: LinkProxy) -> None:
    with connect(link) as sock:
        assert roundtrip(sock) == b"ping"
        link.set(LinkFault(cut=True))
        with pytest.raises(OSError):
            sock.sendall(b"x")
            if not sock.recv(10):  # an orderly close would also mean the bytes were lost
                raise ConnectionResetError
    with connect(link) as sock, pytest.raises(OSError):
        sock.sendall(b"x")
        if not sock.recv(10):
            raise ConnectionResetError
    link.set(OPEN)
    with connect(link) as sock:
        assert roundtrip(sock) == b"ping"


def test_a_blackholed_link_holds_bytes_until_it_opens(link: LinkProxy) -> None:
    with connect(link) as sock:
        link.set(LinkFault(blackhole=True))
        sock.sendall(b"held")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(10)
        link.set(OPEN)
        sock.settimeout(2.0)
        assert sock.recv(10) == b"held"


def test_a_delayed_link_delivers_late_and_in_order(link: LinkProxy) -> None:
    link.set(LinkFault(delay=0.2, jitter=0.1))
    with connect(link) as sock:
        started = time.monotonic()
        assert roundtrip(sock, b"one") == b"one"
        assert time.monotonic() - started >= 0.2  # two crossings, at least 0.1 s each
        payload = bytes(range(256)) * 64
        assert roundtrip(sock, payload) == payload


def test_a_lossy_link_resets_connections(link: LinkProxy) -> None:
    link.set(LinkFault(loss=1.0))
    with connect(link) as sock, pytest.raises(OSError):
        sock.sendall(b"lost")
        if not sock.recv(10):
            raise ConnectionResetError


def test_a_fault_must_be_possible() -> None:
    with pytest.raises(ValueError):
        LinkFault(delay=0.1, jitter=0.2)
    with pytest.raises(ValueError):
        LinkFault(loss=1.5)
