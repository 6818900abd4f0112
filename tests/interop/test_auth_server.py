"""The permission matrix, etcd 3.4 against etcdpy: role shape x permission type x request kind x key.

For each shape of granted range (one key, a prefix, from a key) and each permission type (read,
write, readwrite) a user gets one role; each request kind (range, put, delete, each operation and the
compares of a txn, watch creation, lease revoke, compaction, the root-only calls) is made by that
user on a key inside the grant and one outside, through gRPC with the token in the ``token``
metadata as etcd's clients send it.  The outcome (OK, or the gRPC code and message; for a watch, its
created response) must be the same on both servers, request by request.

And an auth session through etcdctl (users, roles, grants, refusals, password change, disable)
must read the same against both, byte for byte.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from procs import ETCDCTL_BIN, ServerProcess

from etcdpy.api.authpb import auth_pb2
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.etcdserverpb import rpc_pb2_grpc

pytestmark = pytest.mark.interop

P = auth_pb2.Permission
SHAPES = {  # shape -> (key, range_end, a key inside, a key outside)
    "key": (b"k1", b"", b"k1", b"k2"),
    "prefix": (b"p/", b"p0", b"p/a", b"q"),
    "from-key": (b"f", b"\x00", b"g", b"e"),
}
TYPES = {"read": P.READ, "write": P.WRITE, "readwrite": P.READWRITE}


def prefix_end(key: bytes) -> bytes:
    return key[:-1] + bytes([key[-1] + 1])


class Conn:
    def __init__(self, server: ServerProcess) -> None:
        self.channel = grpc.insecure_channel(server.endpoint)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.auth = rpc_pb2_grpc.AuthStub(self.channel)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)
        self.watch = rpc_pb2_grpc.WatchStub(self.channel)
        self.maintenance = rpc_pb2_grpc.MaintenanceStub(self.channel)
        self.cluster = rpc_pb2_grpc.ClusterStub(self.channel)

    def token(self, name: str, password: str) -> list[tuple[str, str]]:
        return [("token", self.auth.Authenticate(pb.AuthenticateRequest(name=name, password=password)).token)]


def outcome(call: Callable[[], Any]) -> str:
    try:
        call()
    except grpc.RpcError as exc:
        return f"{exc.code().name}: {exc.details()}"
    return "OK"


def watch_outcome(conn: Conn, md: list[tuple[str, str]], key: bytes, range_end: bytes) -> str:
    create = pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key, range_end=range_end))
    responses = conn.watch.Watch(iter([create]), metadata=md, timeout=10)
    try:
        first = next(responses)
        return f"created={first.created} canceled={first.canceled} reason={first.cancel_reason!r}"
    except grpc.RpcError as exc:
        return f"{exc.code().name}: {exc.details()}"
    finally:
        responses.cancel()


def kv_cases(kv: rpc_pb2_grpc.KVStub, key: bytes, md: list[tuple[str, str]]) -> dict[str, Callable[[], Any]]:
    """The KV requests of one user on one key, each a call to make."""
    cmp = pb.Compare(key=key, target=pb.Compare.VERSION, result=pb.Compare.GREATER, version=0)
    return {
        "range": lambda: kv.Range(pb.RangeRequest(key=key), metadata=md),
        "range-serializable": lambda: kv.Range(pb.RangeRequest(key=key, serializable=True), metadata=md),
        "range-prefix": lambda: kv.Range(pb.RangeRequest(key=key, range_end=prefix_end(key)), metadata=md),
        "range-from-key": lambda: kv.Range(pb.RangeRequest(key=key, range_end=b"\x00"), metadata=md),
        "put": lambda: kv.Put(pb.PutRequest(key=key, value=b"w"), metadata=md),
        "put-prev-kv": lambda: kv.Put(pb.PutRequest(key=key, value=b"w", prev_kv=True), metadata=md),
        "delete": lambda: kv.DeleteRange(pb.DeleteRangeRequest(key=key), metadata=md),
        "delete-prefix": lambda: kv.DeleteRange(
            pb.DeleteRangeRequest(key=key, range_end=prefix_end(key)), metadata=md
        ),
        "txn-put": lambda: kv.Txn(
            pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(key=key))]), metadata=md
        ),
        "txn-range": lambda: kv.Txn(
            pb.TxnRequest(success=[pb.RequestOp(request_range=pb.RangeRequest(key=key))]), metadata=md
        ),
        "txn-delete": lambda: kv.Txn(
            pb.TxnRequest(failure=[pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key))]),
            metadata=md,
        ),
        "txn-compare": lambda: kv.Txn(pb.TxnRequest(compare=[cmp]), metadata=md),
        "txn-compare-then-put": lambda: kv.Txn(
            pb.TxnRequest(compare=[cmp], success=[pb.RequestOp(request_put=pb.PutRequest(key=key))]),
            metadata=md,
        ),
    }


def admin_cases(conn: Conn, md: list[tuple[str, str]]) -> dict[str, Callable[[], Any]]:
    """The calls only root may make (and alarm, which etcd 3.4 lets anyone make)."""
    return {
        "user-list": lambda: conn.auth.UserList(pb.AuthUserListRequest(), metadata=md),
        "role-add": lambda: conn.auth.RoleAdd(pb.AuthRoleAddRequest(name="x"), metadata=md),
        "hash-kv": lambda: conn.maintenance.HashKV(pb.HashKVRequest(), metadata=md),
        "defragment": lambda: conn.maintenance.Defragment(pb.DefragmentRequest(), metadata=md),
        "snapshot": lambda: list(conn.maintenance.Snapshot(pb.SnapshotRequest(), metadata=md)),
        "alarm-list": lambda: conn.maintenance.Alarm(
            pb.AlarmRequest(action=pb.AlarmRequest.GET), metadata=md
        ),
        "member-remove": lambda: conn.cluster.MemberRemove(pb.MemberRemoveRequest(ID=12345), metadata=md),
    }


def set_up(conn: Conn) -> dict[str, list[tuple[str, str]]]:
    """root, one role and user per shape and type, auth enabled; the users' tokens."""
    a = conn.auth
    a.UserAdd(pb.AuthUserAddRequest(name="root", password="rootpw"))
    a.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="root"))
    for shape, (key, range_end, _in, _out) in SHAPES.items():
        for type_name, perm_type in TYPES.items():
            name = f"{shape}-{type_name}"
            a.RoleAdd(pb.AuthRoleAddRequest(name=name))
            perm = P(key=key, range_end=range_end, permType=perm_type)
            a.RoleGrantPermission(pb.AuthRoleGrantPermissionRequest(name=name, perm=perm))
            a.UserAdd(pb.AuthUserAddRequest(name=name, password="pw"))
            a.UserGrantRole(pb.AuthUserGrantRoleRequest(user=name, role=name))
    a.AuthEnable(pb.AuthEnableRequest())
    tokens = {"root": conn.token("root", "rootpw")}
    for shape in SHAPES:
        for type_name in TYPES:
            tokens[f"{shape}-{type_name}"] = conn.token(f"{shape}-{type_name}", "pw")
    return tokens


def matrix(conn: Conn, shape: str) -> dict[str, str]:
    tokens = set_up(conn)
    root = tokens["root"]
    kv, lease = conn.kv, conn.lease
    results: dict[str, str] = {}
    for type_name in TYPES:
        md = tokens[f"{shape}-{type_name}"]
        for where, key in (("in", SHAPES[shape][2]), ("out", SHAPES[shape][3])):
            kv.Put(pb.PutRequest(key=key, value=b"v"), metadata=root)
            cases = kv_cases(kv, key, md)
            for name, call in cases.items():
                results[f"{type_name} {where} {name}"] = outcome(call)
                kv.Put(pb.PutRequest(key=key, value=b"v"), metadata=root)  # every case finds the key
            for name, range_end in (("key", b""), ("prefix", prefix_end(key)), ("from-key", b"\x00")):
                results[f"{type_name} {where} watch-{name}"] = watch_outcome(conn, md, key, range_end)
            granted = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=600), metadata=root).ID
            kv.Put(pb.PutRequest(key=key, value=b"l", lease=granted), metadata=root)
            results[f"{type_name} {where} lease-revoke"] = outcome(
                lambda: lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=granted), metadata=md)  # noqa: B023
            )
        revision = kv.Put(pb.PutRequest(key=b"compact-me"), metadata=root).header.revision
        results[f"{type_name} compaction"] = outcome(
            lambda: kv.Compact(pb.CompactionRequest(revision=revision), metadata=md)  # noqa: B023
        )
        admin = admin_cases(conn, md)
        for name, call in admin.items():
            results[f"{type_name} {name}"] = outcome(call)
    for name, md in (("no token", []), ("forged token", [("token", "forged.1")])):
        results[f"{name} put"] = outcome(lambda: kv.Put(pb.PutRequest(key=b"k1"), metadata=md))  # noqa: B023
        results[f"{name} range"] = outcome(lambda: kv.Range(pb.RangeRequest(key=b"k1"), metadata=md))  # noqa: B023
        results[f"{name} watch"] = watch_outcome(conn, md, b"k1", b"")
    return results


@pytest.fixture
def conns(etcd_server: ServerProcess, etcdpy_server: ServerProcess) -> Iterator[tuple[Conn, Conn]]:
    pair = Conn(etcd_server), Conn(etcdpy_server)
    yield pair
    for conn in pair:
        conn.channel.close()


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_request_kind_is_allowed_or_refused_as_etcd_does(conns: tuple[Conn, Conn], shape: str) -> None:
    etcd, etcdpy = conns
    expected, got = matrix(etcd, shape), matrix(etcdpy, shape)
    assert {k: v for k, v in got.items() if expected[k] != v} == {}
    # The matrix decides something: both outcomes occur for the user with every right inside its grant.
    assert expected["readwrite in put"] == "OK"
    assert expected["readwrite out put"] == "PERMISSION_DENIED: etcdserver: permission denied"


# An auth session through etcdctl, step by step: (arguments, stdin).
ETCDCTL_STEPS: list[tuple[str, str]] = [
    (cmd, "")
    for cmd in [
        "auth enable",
        "user add root:pw",
        "user grant-role root root",
        "role add r1",
        "role grant-permission r1 readwrite foo --prefix",
        "role grant-permission r1 read k1",
        "role grant-permission r1 write z --from-key",
        "user add u1:p1",
        "user grant-role u1 r1",
        "user grant-role u1 nope",
        "user add u1:x",
        "role add r1",
        "auth enable",
        "put a b",
        "get a",
        "--user root:pw put a b",
        "--user u1:p1 put foo1 x",
        "--user u1:p1 put bar x",
        "--user u1:pX get foo1",
        "--user u1:p1 get foo --prefix",
        "--user u1:p1 get fo --prefix",
        "--user u1:p1 put k1 v",
        "--user u1:p1 put zz v",
        "--user u1:p1 get zz",
        "--user u1:p1 user list",
        "--user root:pw user list",
        "--user root:pw role get r1",
        "--user u1:p1 user get u1",
        "--user u1:p1 user get root",
        "--user u1:p1 role get r1",
        "--user root:pw user delete root",
        "--user root:pw role delete root",
        "--user root:pw user revoke-role root root",
        "--user u1:p1 endpoint hashkv",
        "--user root:pw role revoke-permission r1 k1",
        "--user root:pw role revoke-permission r1 k1",
        "--user root:pw user revoke-role u1 nope",
    ]
] + [
    ("--user root:pw user passwd u1 --interactive=false", "p2\n"),
    ("--user u1:p1 get foo1", ""),
    ("--user u1:p2 get foo1", ""),
    ("--user root:pw user add nop --no-password", ""),
    ("--user nop:x get a", ""),
    ("--user root:pw auth disable", ""),
    ("put zz 1", ""),
    ("user list", ""),
    ("--user root:pw user delete root", ""),
]


def etcdctl_session(server: ServerProcess) -> list[str]:
    assert ETCDCTL_BIN is not None
    transcript = []
    for args, stdin in ETCDCTL_STEPS:
        done = subprocess.run(
            [ETCDCTL_BIN, f"--endpoints={server.endpoint}", *shlex.split(args)],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        errors = [line for line in done.stderr.splitlines() if not line.startswith("{")]  # clientv3's log
        # endpoint hashkv names the endpoint, whose port differs
        out = (done.stdout + "\n".join(errors)).replace(server.endpoint, "ENDPOINT")
        transcript.append(f"$ etcdctl {args}\n{out}\nexit {done.returncode}")
    return transcript


def test_an_etcdctl_auth_session_reads_the_same_against_etcd_and_etcdpy(
    etcd_server: ServerProcess, etcdpy_server: ServerProcess
) -> None:
    expected, got = etcdctl_session(etcd_server), etcdctl_session(etcdpy_server)
    assert [g for e, g in zip(expected, got, strict=True) if e != g] == []
    assert "Error: etcdserver: permission denied" in "".join(expected)
