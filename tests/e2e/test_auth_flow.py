"""Auth through real servers, etcd 3.4 and etcdpy side by side where both can run it.

- the auth store survives a restart; simple tokens do not (the old one is an invalid token). etcd
  differs here by accident: it replays the log above its last backend commit at start, the
  ``authenticate`` entries with it, so a token may outlive the restart; etcdpy's applied index is
  stored with every apply batch, nothing is replayed, and a token is gone with the process;
- JWT tokens (``--auth-token jwt,...``): issued and accepted, and once the auth store changes a
  token issued before is refused as checked against an old revision;
- etcdpy's threaded gRPC server (``--experimental-grpc-threads``) checks permissions as grpc.aio does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from procs import OWN_CONNECTION, ServerProcess

from etcdpy.api.authpb import auth_pb2
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.etcdserverpb import rpc_pb2_grpc


class Stubs:
    def __init__(self, server: ServerProcess) -> None:
        self.channel = grpc.insecure_channel(server.endpoint, options=OWN_CONNECTION)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.auth = rpc_pb2_grpc.AuthStub(self.channel)

    def token(self, name: str, password: str) -> list[tuple[str, str]]:
        return [("token", self.auth.Authenticate(pb.AuthenticateRequest(name=name, password=password)).token)]


def enable_with_app_user(s: Stubs) -> None:
    """root, and app (readwrite on /app/ only), auth on."""
    s.auth.UserAdd(pb.AuthUserAddRequest(name="root", password="rootpw"))
    s.auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="root"))
    s.auth.RoleAdd(pb.AuthRoleAddRequest(name="app"))
    perm = auth_pb2.Permission(key=b"/app/", range_end=b"/app0", permType=auth_pb2.Permission.READWRITE)
    s.auth.RoleGrantPermission(pb.AuthRoleGrantPermissionRequest(name="app", perm=perm))
    s.auth.UserAdd(pb.AuthUserAddRequest(name="app", password="apppw"))
    s.auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user="app", role="app"))
    s.auth.AuthEnable(pb.AuthEnableRequest())


def refusal(call: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    return call.code(), call.details()  # type: ignore[attr-defined]


def test_the_auth_store_survives_a_restart_and_simple_tokens_do_not(server: ServerProcess) -> None:
    s = Stubs(server)
    enable_with_app_user(s)
    old = s.token("app", "apppw")
    s.kv.Put(pb.PutRequest(key=b"/app/x", value=b"1"), metadata=old)
    s.channel.close()
    server.stop()
    server.start()
    s = Stubs(server)
    try:
        with pytest.raises(grpc.RpcError) as stale:
            s.kv.Range(pb.RangeRequest(key=b"/app/x"), metadata=old)
        assert refusal(stale.value) == (grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
        fresh = s.token("app", "apppw")
        assert s.kv.Range(pb.RangeRequest(key=b"/app/x"), metadata=fresh).kvs[0].value == b"1"
        with pytest.raises(grpc.RpcError) as anonymous:
            s.kv.Range(pb.RangeRequest(key=b"/app/x"))
        assert refusal(anonymous.value) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "etcdserver: user name is empty",
        )
    finally:
        s.channel.close()


@pytest.fixture(params=["etcd", "etcdpy"])
def jwt_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    key = rsa.generate_private_key(65537, 2048)
    private = tmp_path / "jwt.key"
    public = tmp_path / "jwt.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    flag = f"jwt,pub-key={public},priv-key={private},sign-method=RS256,ttl=10m"
    server = ServerProcess(request.param, tmp_path / "data", extra_args=["--auth-token", flag]).start()
    yield server
    server.stop()


def test_jwt_tokens_work_until_the_auth_store_changes(jwt_server: ServerProcess) -> None:
    s = Stubs(jwt_server)
    try:
        enable_with_app_user(s)
        md = s.token("app", "apppw")
        assert md[0][1].count(".") == 2  # header.claims.signature
        s.kv.Put(pb.PutRequest(key=b"/app/x", value=b"1"), metadata=md)
        root = s.token("root", "rootpw")
        s.auth.RoleAdd(pb.AuthRoleAddRequest(name="other"), metadata=root)  # the auth revision moves
        with pytest.raises(grpc.RpcError) as stale:
            s.kv.Put(pb.PutRequest(key=b"/app/x", value=b"2"), metadata=md)
        assert refusal(stale.value) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "etcdserver: revision of auth store is old",
        )
        with pytest.raises(grpc.RpcError) as forged:
            s.kv.Put(pb.PutRequest(key=b"/app/x", value=b"2"), metadata=[("token", md[0][1][:-4] + "AAAA")])
        assert refusal(forged.value) == (grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
        s.kv.Put(pb.PutRequest(key=b"/app/x", value=b"3"), metadata=s.token("app", "apppw"))
    finally:
        s.channel.close()


@pytest.mark.server_flags("--experimental-grpc-threads", "2")
def test_the_threaded_grpc_server_checks_permissions_too(server: ServerProcess) -> None:
    s = Stubs(server)
    try:
        enable_with_app_user(s)
        md = s.token("app", "apppw")
        s.kv.Put(pb.PutRequest(key=b"/app/x", value=b"1"), metadata=md)
        with pytest.raises(grpc.RpcError) as denied:
            s.kv.Put(pb.PutRequest(key=b"/other", value=b"1"), metadata=md)
        assert refusal(denied.value) == (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
        with pytest.raises(grpc.RpcError) as denied_read:
            s.kv.Range(pb.RangeRequest(key=b"/other"), metadata=md)
        assert refusal(denied_read.value)[0] == grpc.StatusCode.PERMISSION_DENIED
    finally:
        s.channel.close()
