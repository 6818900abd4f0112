"""The client's TLS probes against servers on loopback sockets: what they conclude, and no descriptor left.

`speaks_tls` asks whether a port answers TLS (a plaintext client failing there is told so); `probe`
shakes hands as the channel will and names the failed check.  A server that resets the connection
before the handshake used to leave ssl's half-built SSLSocket unclosed (a ResourceWarning, the
descriptor held until garbage collection): the probes now run TLS over memory BIOs on the caller's
socket.
"""

from __future__ import annotations

import contextlib
import gc
import socket
import ssl
import struct
import threading
import time
import warnings
from collections.abc import Callable, Iterator

import pytest
from tlscerts import PKI

from etcdpy.client.endpoints import Endpoint
from etcdpy.client.tls import TLSConfig, _TLSOver, probe, speaks_tls


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[socket.socket], None]], Endpoint]]:
    """Starts a loopback listener whose every accepted connection goes to a handler (on a thread)."""
    listeners: list[socket.socket] = []

    def start(handle: Callable[[socket.socket], None]) -> Endpoint:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def accept() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    handle(conn)

        threading.Thread(target=accept, daemon=True).start()
        return Endpoint.parse(f"127.0.0.1:{listener.getsockname()[1]}")

    yield start
    for listener in listeners:
        listener.close()


def _reset(conn: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0) at once: the client's hello meets a reset, or its wrapping does."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _plaintext(conn: socket.socket) -> None:
    conn.recv(4096)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def _tls_server(pki: PKI) -> Callable[[socket.socket], None]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server.cert, pki.server.key)
    context.set_alpn_protocols(["h2"])

    def handle(conn: socket.socket) -> None:
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(64)  # the client's preface: answer a SETTINGS-sized frame, as a gRPC server
                tls.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        except (ssl.SSLError, OSError):
            pass

    return handle


def _no_unclosed_socket(check: Callable[[], object]) -> object:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        result = check()
        gc.collect()
    unclosed = [w for w in seen if issubclass(w.category, ResourceWarning)]
    assert not unclosed, [str(w.message) for w in unclosed]
    return result


def test_a_server_that_resets_is_not_tls_and_leaves_no_socket_behind(serve) -> None:  # type: ignore[no-untyped-def]
    endpoint = serve(_reset)
    for _ in range(50):  # the reset lands before, during or after the hello: each must end so
        _no_unclosed_socket(lambda: _not_tls_or_unreachable(endpoint))


def _not_tls_or_unreachable(endpoint: Endpoint) -> None:
    # A reset within the connect is "unreachable" (ConnectionResetError), no answer either way, as documented.
    with contextlib.suppress(ConnectionResetError):
        assert speaks_tls(endpoint, 5.0) is False


def test_tls_over_a_socket_the_server_already_reset_raises_and_keeps_the_socket_the_callers(serve) -> None:  # type: ignore[no-untyped-def]
    # The case ssl's wrap_socket leaks: the reset is in before the TLS conversation starts.
    endpoint = serve(_reset)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", int(endpoint.target.rsplit(":", 1)[1]))) as raw:
        raw.settimeout(5.0)
        _wait_for_reset(raw)

        def handshake() -> None:
            with pytest.raises(ConnectionResetError):
                _TLSOver(raw, context, None).handshake()

        _no_unclosed_socket(handshake)
        assert raw.fileno() != -1, "the socket is still the caller's to close"


def _wait_for_reset(raw: socket.socket) -> None:
    """Until the kernel has taken the server's RST: the socket is no longer connected."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            raw.getpeername()
        except OSError:
            return
        time.sleep(0.01)
    raise AssertionError("the server's reset never arrived")


def test_a_plaintext_server_is_not_tls(serve) -> None:  # type: ignore[no-untyped-def]
    assert _no_unclosed_socket(lambda: speaks_tls(serve(_plaintext), 5.0)) is False


def test_a_tls_server_speaks_tls_and_passes_the_probe_with_its_ca(serve, pki: PKI) -> None:  # type: ignore[no-untyped-def]
    endpoint = serve(_tls_server(pki))
    assert _no_unclosed_socket(lambda: speaks_tls(endpoint, 5.0)) is True
    material = TLSConfig(cacert=pki.ca, always=True).load()
    assert _no_unclosed_socket(lambda: probe(endpoint, material, 5.0)) is None


def test_the_probe_names_the_failed_check_and_a_hang_up(serve, pki: PKI) -> None:  # type: ignore[no-untyped-def]
    endpoint = serve(_tls_server(pki))
    other_ca = TLSConfig(cacert=pki.other_ca, always=True).load()
    reason = probe(endpoint, other_ca, 5.0)
    assert reason is not None and "certificate signed by unknown authority" in reason, reason
    reset = serve(_reset)
    material = TLSConfig(cacert=pki.ca, always=True).load()
    for _ in range(20):  # the reset lands within the connect (unreachable: OSError, no verdict) or after it
        try:
            reason = _no_unclosed_socket(lambda: probe(reset, material, 5.0))
        except ConnectionResetError:
            continue
        assert reason is not None and "does not speak TLS" in str(reason), reason
