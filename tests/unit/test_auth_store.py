"""The auth store as the apply chain drives it: etcd's rules, the auth revision, persistence, nothing written
on a refusal; tokens (simple, JWT) and the failed-attempt budget with fake clocks."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from etcdpy.api import errors
from etcdpy.api.authpb import auth_pb2
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.server.apply import Applier
from etcdpy.server.auth import AuthStore, SimpleTokens
from etcdpy.server.auth.gate import FailureBudget
from etcdpy.server.auth.tokens import AuthOptionError, jwt_tokens, parse_go_duration, token_provider
from etcdpy.server.storage.backend import Backend

pb = rpc_pb2


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Node:
    """An applier with the auth store's handlers and layer; requests carry a user and an auth revision."""

    def __init__(self, path: Path, clock: FakeClock) -> None:
        self.path, self.clock = path, clock
        self.leases: dict[int, list[bytes]] = {}
        self._open()

    def _open(self) -> None:
        self.backend = Backend(self.path)
        self.tokens = SimpleTokens(ttl=60, clock=self.clock)
        self.auth = AuthStore(self.backend, self.tokens, lease_keys=lambda lease: self.leases.get(lease, []))
        self.applier = Applier(self.backend, handlers=self.auth.handlers(), layers=[self.auth.layer])

    def reopen(self) -> None:
        self.backend.close()
        self._open()

    def apply(self, user: str = "", revision: int | None = None, **request: Any) -> Any:
        entry = raft_internal_pb2.InternalRaftRequest(**request)
        entry.header.ID = self.applier.applied_index + 1
        if user:
            entry.header.username = user
            entry.header.auth_revision = self.auth.revision if revision is None else revision
        (result,) = self.applier.apply([(self.applier.applied_index + 1, entry.SerializeToString())])
        if isinstance(result.response, errors.EtcdError):
            raise result.response
        return result.response

    def add_user(self, name: str, password: str = "pw", **kw: Any) -> None:
        hashed = base64.b64encode(bcrypt.hashpw(password.encode(), bcrypt.gensalt(4))).decode()
        self.apply(**kw, auth_user_add=pb.AuthUserAddRequest(name=name, hashedPassword=hashed))

    def grant(
        self, role: str, key: bytes, range_end: bytes = b"", perm: int = auth_pb2.Permission.READWRITE
    ) -> None:
        self.apply(
            user="root",
            auth_role_grant_permission=pb.AuthRoleGrantPermissionRequest(
                name=role, perm=auth_pb2.Permission(key=key, range_end=range_end, permType=perm)
            ),
        )


@pytest.fixture
def node(tmp_path: Path) -> Any:
    n = Node(tmp_path, FakeClock())
    yield n
    n.backend.close()


def enable(node: Node) -> None:
    node.add_user("root")
    node.apply(auth_user_grant_role=pb.AuthUserGrantRoleRequest(user="root", role="root"))
    node.apply(auth_enable=pb.AuthEnableRequest())


def test_enabling_needs_the_root_user_with_the_root_role(node: Node) -> None:
    with pytest.raises(errors.ErrRootUserNotExist):
        node.apply(auth_enable=pb.AuthEnableRequest())
    node.add_user("root")
    with pytest.raises(errors.ErrRootRoleNotExist):
        node.apply(auth_enable=pb.AuthEnableRequest())
    node.apply(auth_user_grant_role=pb.AuthUserGrantRoleRequest(user="root", role="root"))
    node.apply(auth_enable=pb.AuthEnableRequest())
    assert node.auth.enabled


def test_every_mutation_but_enabling_bumps_the_revision_and_the_state_survives_a_restart(node: Node) -> None:
    assert node.auth.revision == 1  # a new store, as etcd's
    node.add_user("root")
    node.apply(auth_user_grant_role=pb.AuthUserGrantRoleRequest(user="root", role="root"))
    assert node.auth.revision == 3
    node.apply(auth_user_grant_role=pb.AuthUserGrantRoleRequest(user="root", role="root"))  # no change
    node.apply(auth_enable=pb.AuthEnableRequest())
    assert node.auth.revision == 3
    node.apply(user="root", auth_role_add=pb.AuthRoleAddRequest(name="r"))
    node.grant("r", b"k")
    assert node.auth.revision == 5
    node.reopen()
    assert node.auth.enabled and node.auth.revision == 5
    assert node.apply(user="root", auth_role_get=pb.AuthRoleGetRequest(role="r")).perm[0].key == b"k"
    status = node.apply(auth_status=pb.AuthStatusRequest())
    assert (status.enabled, status.authRevision) == (True, 5)


def test_only_the_hash_is_stored_and_it_checks_the_password(node: Node) -> None:
    node.add_user("u", "secret")
    stored = node.auth.users["u"].password
    assert b"secret" not in stored and bcrypt.checkpw(b"secret", stored)
    raw = b"".join(value for _key, value in node.backend.db.iterator())
    assert b"secret" not in raw


def test_a_request_checked_against_an_older_auth_revision_is_refused_and_writes_nothing(node: Node) -> None:
    enable(node)
    node.add_user("u", user="root")
    node.apply(user="root", auth_role_add=pb.AuthRoleAddRequest(name="r"))
    node.grant("r", b"a", b"z")
    node.apply(user="root", auth_user_grant_role=pb.AuthUserGrantRoleRequest(user="u", role="r"))
    stale = node.auth.revision
    node.apply(user="u", put=pb.PutRequest(key=b"k", value=b"1"))
    node.apply(user="root", auth_role_add=pb.AuthRoleAddRequest(name="other"))  # any change
    before = node.applier.current_revision
    with pytest.raises(errors.ErrAuthOldRevision):
        node.apply(user="u", revision=stale, put=pb.PutRequest(key=b"k", value=b"2"))
    assert node.applier.current_revision == before


@pytest.mark.parametrize(
    ("request_fields", "error"),
    [
        ({"put": pb.PutRequest(key=b"zz")}, errors.ErrPermissionDenied),
        ({"delete_range": pb.DeleteRangeRequest(key=b"a", range_end=b"\x00")}, errors.ErrPermissionDenied),
        (
            {"txn": pb.TxnRequest(compare=[pb.Compare(key=b"zz", target=pb.Compare.VERSION)])},
            errors.ErrPermissionDenied,
        ),
        ({"auth_user_list": pb.AuthUserListRequest()}, errors.ErrPermissionDenied),
        ({"auth_user_get": pb.AuthUserGetRequest(name="root")}, errors.ErrPermissionDenied),
        ({"lease_revoke": pb.LeaseRevokeRequest(ID=7)}, errors.ErrPermissionDenied),
    ],
)
def test_a_user_without_the_permission_is_refused_as_etcd_refuses(
    node: Node, request_fields: dict[str, Any], error: type[errors.EtcdError]
) -> None:
    enable(node)
    node.add_user("u", user="root")
    node.apply(user="root", auth_role_add=pb.AuthRoleAddRequest(name="r"))
    node.grant("r", b"a", b"z")
    node.apply(user="root", auth_user_grant_role=pb.AuthUserGrantRoleRequest(user="u", role="r"))
    node.leases[7] = [b"b", b"zz"]  # revoking lease 7 would delete zz
    with pytest.raises(error):
        node.apply(user="u", **request_fields)
    with pytest.raises(errors.ErrUserEmpty):  # nobody at all
        node.apply(**request_fields)


def test_root_may_do_anything_and_cannot_be_deleted_or_demoted_while_auth_is_on(node: Node) -> None:
    enable(node)
    node.apply(user="root", put=pb.PutRequest(key=b"anything"))
    with pytest.raises(errors.ErrInvalidAuthMgmt):
        node.apply(user="root", auth_user_delete=pb.AuthUserDeleteRequest(name="root"))
    with pytest.raises(errors.ErrInvalidAuthMgmt):
        node.apply(user="root", auth_user_revoke_role=pb.AuthUserRevokeRoleRequest(name="root", role="root"))
    with pytest.raises(errors.ErrInvalidAuthMgmt):
        node.apply(user="root", auth_role_delete=pb.AuthRoleDeleteRequest(role="root"))
    node.apply(user="root", auth_disable=pb.AuthDisableRequest())
    node.apply(auth_user_delete=pb.AuthUserDeleteRequest(name="root"))
    assert "root" not in node.auth.users


def test_authenticate_assigns_a_simple_token_that_expires_when_idle_and_dies_with_the_password(
    node: Node,
) -> None:
    enable(node)
    entry_index = node.applier.applied_index + 1
    token = node.apply(
        authenticate=raft_internal_pb2.InternalAuthenticateRequest(name="root", simple_token="abc")
    ).token
    assert token == f"abc.{entry_index}"
    assert node.tokens.info(token, 9) == ("root", 9)
    node.clock.now += 59
    assert node.tokens.info(token, 9) is not None  # used: its 60 s start again
    node.clock.now += 59
    assert node.tokens.info(token, 9) is not None
    node.clock.now += 61
    assert node.tokens.info(token, 9) is None
    token = node.apply(
        authenticate=raft_internal_pb2.InternalAuthenticateRequest(name="root", simple_token="x")
    ).token
    hashed = base64.b64encode(bcrypt.hashpw(b"new", bcrypt.gensalt(4))).decode()
    node.apply(
        user="root",
        auth_user_change_password=pb.AuthUserChangePasswordRequest(name="root", hashedPassword=hashed),
    )
    assert node.tokens.info(token, 9) is None
    with pytest.raises(errors.ErrAuthFailed):
        node.apply(
            authenticate=raft_internal_pb2.InternalAuthenticateRequest(name="nobody", simple_token="y")
        )


def _pem(key: Any) -> tuple[bytes, bytes]:
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


@pytest.mark.parametrize("method", ["RS256", "PS384", "ES256", "HS512"])
def test_jwt_tokens_round_trip_and_refuse_forged_and_expired_ones(tmp_path: Path, method: str) -> None:
    def keys(name: str) -> dict[str, str]:
        if method.startswith("HS"):
            (tmp_path / f"{name}.key").write_bytes(name.encode() * 16)  # 64 bytes: HS512's minimum
            return {"priv-key": str(tmp_path / f"{name}.key")}
        key = (
            ec.generate_private_key(ec.SECP256R1())
            if method.startswith("ES")
            else rsa.generate_private_key(65537, 2048)
        )
        private, public = _pem(key)
        (tmp_path / f"{name}.key").write_bytes(private)
        (tmp_path / f"{name}.pub").write_bytes(public)
        return {"priv-key": str(tmp_path / f"{name}.key"), "pub-key": str(tmp_path / f"{name}.pub")}

    clock = FakeClock()
    tokens = jwt_tokens({**keys("good"), "sign-method": method, "ttl": "5m"}, clock=clock)
    forger = jwt_tokens({**keys("evil"), "sign-method": method}, clock=clock)
    token = tokens.assign("alice", 7, "", 1)
    assert tokens.info(token, 99) == ("alice", 7)  # a JWT carries the revision it was issued at
    assert tokens.info(forger.assign("alice", 7, "", 1), 99) is None
    assert tokens.info(token + "x", 99) is None
    clock.now += 301
    assert tokens.info(token, 99) is None


def test_the_auth_token_flag_is_parsed_as_etcd_parses_it(tmp_path: Path) -> None:
    assert isinstance(token_provider("simple", 300), SimpleTokens)
    assert parse_go_duration("1h30m") == 5400 and parse_go_duration("300ms") == 0.3
    for bad in (
        "nope",
        "jwt,sign-method=RS256",
        "jwt,sign-method=XX1,priv-key=/x",
        "simple,a=b=c",
        "jwt,ttl=5x",
    ):
        with pytest.raises(AuthOptionError):
            token_provider(bad, 300)


def test_failed_password_checks_spend_a_budget_that_refills_with_time() -> None:
    clock = FakeClock()
    budget = FailureBudget(rate=2.0, burst=3.0, clock=clock)
    for _ in range(3):
        assert budget.available()
        budget.spend()
    assert not budget.available()
    clock.now += 0.5
    assert budget.available()


def test_a_bad_auth_token_flag_fails_the_config_before_anything_is_written() -> None:
    from etcdpy.server.config import Config, ConfigError

    with pytest.raises(ConfigError, match="--auth-token jwt,sign-method=RS256: auth: missing key data"):
        Config(auth_token="jwt,sign-method=RS256").validate()
    assert Config(auth_token="simple").validate().auth_token == "simple"
