"""The server's TLS credentials in a grpc.aio server on a loopback port: a verified client
certificate's common name reaches the service (`tls.client_common_name`), a certificate the guard
refuses ends the call with PERMISSION_DENIED, and channels from `tls.Dialer` present the member's
certificate."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from procs import free_port
from tlscerts import PKI, CertPair

from etcdpy.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.server import tls


class WhoAmI(rpc_pb2_grpc.MaintenanceServicer):  # type: ignore[misc]
    """Answers Status with the caller's certificate common name as the version."""

    async def Status(self, request: rpc_pb2.StatusRequest, context: Any) -> rpc_pb2.StatusResponse:
        return rpc_pb2.StatusResponse(version=tls.client_common_name(context) or "(anonymous)")


async def serve(info: tls.TLSInfo, guard: tls.CertificateGuard | None = None) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(interceptors=[guard] if guard else None)
    rpc_pb2_grpc.add_MaintenanceServicer_to_server(WhoAmI(), server)
    port = free_port()
    server.add_secure_port(f"127.0.0.1:{port}", tls.server_credentials(info))
    await server.start()
    return server, f"https://localhost:{port}"


async def who(url: str, pki: PKI, pair: CertPair | None) -> str:
    info = tls.TLSInfo(
        cert_file=str(pair.cert) if pair else "",
        key_file=str(pair.key) if pair else "",
        trusted_ca_file=str(pki.ca),
    )
    async with await tls.Dialer(info).channel(url) as channel:
        response = await rpc_pb2_grpc.MaintenanceStub(channel).Status(rpc_pb2.StatusRequest(), timeout=10)
    return str(response.version)


def test_the_common_name_of_a_verified_client_certificate_reaches_the_service(pki: PKI) -> None:
    async def run() -> None:
        info = tls.TLSInfo(
            cert_file=str(pki.server.cert), key_file=str(pki.server.key), trusted_ca_file=str(pki.ca)
        )
        server, url = await serve(info)
        try:
            assert await who(url, pki, pki.client("alice")) == "alice"
            assert await who(url, pki, pki.client_root) == "root"
        finally:
            await server.stop(0)

    asyncio.run(run())


def test_without_client_certificates_the_service_sees_no_name(pki: PKI) -> None:
    async def run() -> None:
        server, url = await serve(tls.TLSInfo(cert_file=str(pki.server.cert), key_file=str(pki.server.key)))
        try:
            assert await who(url, pki, None) == "(anonymous)"
        finally:
            await server.stop(0)

    asyncio.run(run())


def test_the_guard_refuses_a_common_name_not_allowed_with_the_reason(pki: PKI) -> None:
    async def run() -> None:
        info = tls.TLSInfo(
            cert_file=str(pki.server.cert), key_file=str(pki.server.key), trusted_ca_file=str(pki.ca)
        )
        server, url = await serve(info, tls.CertificateGuard("peer", allowed_cn="alice"))
        try:
            assert await who(url, pki, pki.client("alice")) == "alice"
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await who(url, pki, pki.client("bob"))
            assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
            assert (
                refused.value.details() == "peer certificate CN 'bob' is not --peer-cert-allowed-cn 'alice'"
            )
        finally:
            await server.stop(0)

    asyncio.run(run())
