"""The serving side of auth: a call's credentials (token first, else the certificate's common name),
resolved against the store only when a check needs them; the member's own proposals run as root."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from etcdpy.api import errors
from etcdpy.api.authpb import auth_pb2
from etcdpy.api.etcdserverpb import raft_internal_pb2
from etcdpy.server.auth import CREDENTIALS, AuthGate, AuthInfo, AuthStore, SimpleTokens
from etcdpy.server.services.auth import credentials_of
from etcdpy.server.storage.backend import Backend


class FakeContext:
    def __init__(self, metadata: tuple[tuple[str, str], ...] = (), common_name: bytes | None = None) -> None:
        self.metadata = metadata
        self.common_name = common_name
        self.auth_context_calls = 0

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        self.auth_context_calls += 1
        return {"x509_common_name": [self.common_name]} if self.common_name else {}


@pytest.fixture
def gate(tmp_path: Path) -> Any:
    backend = Backend(tmp_path)
    store = AuthStore(backend, SimpleTokens(ttl=60), lease_keys=lambda lease: ())
    store.enabled = True
    store.tokens.enable()
    store.users["alice"] = auth_pb2.User(name=b"alice")
    gate = AuthGate(store, bcrypt_cost=4)
    yield gate
    gate.close()
    backend.close()


def resolve(gate: AuthGate, context: FakeContext, client_certs: bool = True) -> AuthInfo | None:
    token = CREDENTIALS.set(credentials_of(context, client_certs))
    try:
        return gate.info()
    finally:
        CREDENTIALS.reset(token)


def test_a_token_wins_over_the_certificate_and_a_bad_one_is_an_invalid_token(gate: AuthGate) -> None:
    token = gate.store.tokens.assign("alice", 1, "abc", 5)
    context = FakeContext((("token", token),), common_name=b"mallory")
    assert resolve(gate, context) == AuthInfo("alice", gate.store.revision)
    assert context.auth_context_calls == 0  # the certificate is not even looked at
    with pytest.raises(errors.ErrInvalidAuthToken):
        resolve(gate, FakeContext((("authorization", "forged.9"),)))


def test_with_no_token_the_client_certificates_common_name_is_the_user(gate: AuthGate) -> None:
    assert resolve(gate, FakeContext(common_name=b"alice")) == AuthInfo("alice", gate.store.revision)
    assert resolve(gate, FakeContext()) is None  # nobody
    header = raft_internal_pb2.RequestHeader()
    token = CREDENTIALS.set(credentials_of(FakeContext(common_name=b"alice")))
    try:
        gate.stamp(header)
    finally:
        CREDENTIALS.reset(token)
    assert (header.username, header.auth_revision) == ("alice", gate.store.revision)


def test_where_no_certificate_is_asked_for_none_is_looked_up(gate: AuthGate) -> None:
    # A listener that asks clients for no certificate has no common name to offer: grpc's auth context
    # (built anew for each call asked) is not consulted, and the caller is nobody, as with no certificate.
    context = FakeContext(common_name=b"alice")
    assert resolve(gate, context, client_certs=False) is None
    assert context.auth_context_calls == 0
    token = gate.store.tokens.assign("alice", 1, "abc", 5)
    assert resolve(gate, FakeContext((("token", token),)), client_certs=False) == AuthInfo(
        "alice", gate.store.revision
    )


def test_the_members_own_proposals_run_as_root_and_only_inside_as_root(gate: AuthGate) -> None:
    async def who() -> AuthInfo | None:
        return gate.info()

    async def scenario() -> tuple[AuthInfo | None, AuthInfo | None]:
        return await gate.as_root(who()), await who()

    inside, after = asyncio.run(scenario())
    assert inside == AuthInfo("root", gate.store.revision) and after is None


def test_passwords_are_hashed_and_checked_on_threads_and_failures_spend_the_budget(gate: AuthGate) -> None:
    async def scenario() -> None:
        import base64

        hashed = await gate.hash_password("s3cret")
        gate.store.users["alice"] = auth_pb2.User(name=b"alice", password=base64.b64decode(hashed))
        assert await gate.check_password("alice", "s3cret") == gate.store.revision
        for _ in range(20):
            with pytest.raises(errors.ErrAuthFailed):
                await gate.check_password("alice", "wrong")
        with pytest.raises(errors.ErrTooManyRequests):  # the budget (burst 20) is spent
            await gate.check_password("alice", "s3cret")

    asyncio.run(scenario())
