"""The front under TLS: gRPC (ALPN h2) spliced untouched to a TLS grpcio, HTTP/1.1 terminated by the front.

A grpc.aio server with TLS credentials on a Unix socket and a `Front` (thread mode) with a server-side
`ssl.SSLContext` on a loopback port, in the test process; certificates made with `cryptography`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from etcdpy.server.http.front import Front, bind
from etcdpy.server.http.http11 import Reply, Request, Response


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer if issuer is not None else (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def pki(tmp_path: Path) -> tuple[bytes, bytes, bytes]:
    """(CA certificate, server certificate, server key), PEM."""
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("test CA", ca_key, None)
    server = _certificate("127.0.0.1", server_key, (ca.subject, ca_key))
    pem = serialization.Encoding.PEM
    key_pem = server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ca.public_bytes(pem), server.public_bytes(pem), key_pem


async def version(request: Request) -> Reply:
    return Response(200, [("Content-Type", "application/json")], b'{"via":"front"}')


@contextlib.asynccontextmanager
async def tls_front(pki: tuple[bytes, bytes, bytes], tmp_path: Path) -> AsyncIterator[int]:
    """A TLS grpcio (the health service, grpcio's thread pool) behind a TLS front; the front's port."""
    _ca_pem, cert_pem, key_pem = pki
    grpc_path = str(tmp_path / "grpc.sock")
    server = grpc.server(ThreadPoolExecutor(2))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    server.add_secure_port(f"unix:{grpc_path}", grpc.ssl_server_credentials([(key_pem, cert_pem)]))
    server.start()
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    context.set_alpn_protocols(["http/1.1"])
    listener = bind(("127.0.0.1", 0))
    loop = asyncio.get_running_loop()
    front = Front([listener], app=version, loop=loop, grpc_path=grpc_path, ssl_context=context)
    front.start()
    try:
        yield listener.getsockname()[1]
    finally:
        await front.stop()
        server.stop(0)


def test_grpc_over_tls_is_spliced_to_grpcio(pki: tuple[bytes, bytes, bytes], tmp_path: Path) -> None:
    def check(port: int) -> int:
        credentials = grpc.ssl_channel_credentials(root_certificates=pki[0])
        with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
            return (
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
            )

    async def scenario() -> int:
        async with tls_front(pki, tmp_path) as port:
            return await asyncio.to_thread(check, port)  # the loop stays free for the front

    assert asyncio.run(scenario()) == health_pb2.HealthCheckResponse.SERVING  # grpcio did the TLS itself


def test_https_is_terminated_by_the_front(pki: tuple[bytes, bytes, bytes], tmp_path: Path) -> None:
    async def scenario() -> bytes:
        async with tls_front(pki, tmp_path) as port:
            context = ssl.create_default_context(cadata=pki[0].decode())
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
            writer.write(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = await reader.read()
            writer.close()
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                await writer.wait_closed()
            return answer

    answer = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b'{"via":"front"}')


def test_plain_bytes_on_a_tls_port_are_dropped(pki: tuple[bytes, bytes, bytes], tmp_path: Path) -> None:
    async def scenario() -> bytes:
        async with tls_front(pki, tmp_path) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                answer = await reader.read()
            except ConnectionResetError:  # closed with our request unread: the kernel resets
                answer = b""
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            return answer

    assert asyncio.run(scenario()) == b""  # not a ClientHello: closed, nothing answered
