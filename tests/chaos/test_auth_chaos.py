"""A permission revoked while the leader is killed: once the revoke is acknowledged, nothing it
forbade is allowed again, on any member, the killed one included once it is back.

Clients of user ``app`` (readwrite on ``/app/`` through role ``app``) put and read (linearizable)
keys under ``/app/`` on every member in turn, each operation recorded with the monotonic times it
was invoked and answered and its outcome.  Meanwhile the leader is killed (kill -9) and root revokes
the permission through a surviving member, retrying until the revoke is acknowledged; then the old
leader comes back.  The checker: no operation invoked after the acknowledgment succeeded, and every
member, the restarted one included, refused some.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from etcdpy.api.authpb import auth_pb2
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.etcdserverpb import rpc_pb2_grpc
from etcdpy.chaos.cluster import ChaosCluster, MemberProcess, wait_until

CALL_TIMEOUT = 2.0
APP_PERMISSION = auth_pb2.Permission(key=b"/app/", range_end=b"/app0", permType=auth_pb2.Permission.READWRITE)


@dataclass(frozen=True)
class Op:
    member: str
    kind: str  # "put" or "get"
    invoked: float
    answered: float
    outcome: str  # "OK" or the gRPC code's name


class Member:
    """Stubs on one member and a token of one user there (fetched again when refused)."""

    def __init__(self, member: MemberProcess, user: str, password: str) -> None:
        self.name = member.name
        self.channel = grpc.insecure_channel(member.endpoint)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.auth = rpc_pb2_grpc.AuthStub(self.channel)
        self.user, self.password = user, password
        self.token: str | None = None

    def metadata(self) -> list[tuple[str, str]]:
        if self.token is None:
            request = pb.AuthenticateRequest(name=self.user, password=self.password)
            self.token = self.auth.Authenticate(request, timeout=CALL_TIMEOUT).token
        return [("token", self.token)]


def workload(members: list[Member], stop: threading.Event, history: list[Op], lock: threading.Lock) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        member = members[n % len(members)]
        kind = "put" if n % 2 else "get"
        key = f"/app/{n % 7}".encode()
        invoked = time.monotonic()
        try:
            md = member.metadata()
            if kind == "put":
                member.kv.Put(pb.PutRequest(key=key, value=b"v"), metadata=md, timeout=CALL_TIMEOUT)
            else:
                member.kv.Range(pb.RangeRequest(key=key), metadata=md, timeout=CALL_TIMEOUT)
            outcome = "OK"
        except grpc.RpcError as exc:
            outcome = exc.code().name  # type: ignore[attr-defined]
            if outcome in ("UNAUTHENTICATED", "INVALID_ARGUMENT"):  # token gone, or auth revision moved
                member.token = None
            if outcome in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                time.sleep(0.05)  # a member that is down: do not spin on it
        with lock:
            history.append(Op(member.name, kind, invoked, time.monotonic(), outcome))


def set_up(root: Member) -> None:
    a = root.auth
    a.UserAdd(pb.AuthUserAddRequest(name="root", password="rootpw"), timeout=10)
    a.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="root"), timeout=10)
    a.RoleAdd(pb.AuthRoleAddRequest(name="app"), timeout=10)
    a.RoleGrantPermission(pb.AuthRoleGrantPermissionRequest(name="app", perm=APP_PERMISSION), timeout=10)
    a.UserAdd(pb.AuthUserAddRequest(name="app", password="apppw"), timeout=10)
    a.UserGrantRole(pb.AuthUserGrantRoleRequest(user="app", role="app"), timeout=10)
    a.AuthEnable(pb.AuthEnableRequest(), timeout=10)


def revoke_until_acknowledged(roots: list[Member], deadline: float) -> float:
    """Revoke app's permission through the live members until one acknowledges it; the time it did."""
    request = pb.AuthRoleRevokePermissionRequest(
        role="app", key=APP_PERMISSION.key, range_end=APP_PERMISSION.range_end
    )
    while time.monotonic() < deadline:
        for root in roots:
            try:
                root.auth.RoleRevokePermission(request, metadata=root.metadata(), timeout=CALL_TIMEOUT)
                return time.monotonic()
            except grpc.RpcError as exc:
                if exc.details() == "etcdserver: permission is not granted to the role":  # type: ignore[attr-defined]
                    return time.monotonic()  # an earlier attempt was applied: revoked by now
                root.token = None
    raise AssertionError("the revoke was never acknowledged")


def test_no_request_is_allowed_after_the_acknowledged_revoke_of_its_permission(tmp_path: Path) -> None:
    cluster = ChaosCluster(tmp_path, 3)
    history: list[Op] = []
    lock = threading.Lock()
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        cluster.start()
        set_up(Member(cluster.members[0], "root", "rootpw"))
        clients = [[Member(m, "app", "apppw") for m in cluster.members] for _ in range(3)]
        threads = [threading.Thread(target=workload, args=(c, stop, history, lock)) for c in clients]
        for thread in threads:
            thread.start()

        def ok_count(after: float = 0.0) -> int:
            with lock:
                return sum(1 for op in history if op.outcome == "OK" and op.invoked > after)

        wait_until(lambda: ok_count() >= 30, 30, "the workload never got going")
        leader = cluster.wait_leader()
        cluster.kill(leader)
        roots = [Member(m, "root", "rootpw") for m in cluster.members if m is not leader]
        acknowledged = revoke_until_acknowledged(roots, time.monotonic() + 60)
        cluster.launch(leader)

        def refused_everywhere() -> bool:
            with lock:
                refused = {
                    op.member
                    for op in history
                    if op.invoked > acknowledged and op.outcome == "PERMISSION_DENIED"
                }
            return refused == {m.name for m in cluster.members}

        wait_until(refused_everywhere, 60, "some member never answered after the revoke")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        cluster.stop()
    allowed_after = [op for op in history if op.invoked > acknowledged and op.outcome == "OK"]
    assert allowed_after == [], f"allowed after the revoke was acknowledged: {allowed_after[:5]}"
    assert sum(1 for op in history if op.outcome == "OK") >= 30
