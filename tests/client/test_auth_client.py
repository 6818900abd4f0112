"""The client under auth, against etcd 3.4 and etcdpy: management calls, a fresh token after expiry, recipes.

Each server runs with ``--auth-token-ttl 1``: a simple token unused for a
second is forgotten by the server (etcd resets the countdown on every use).  A
test lets its client's token expire, proves the server now refuses it, and
checks the next call (unary, watch, keep-alive, recipe) authenticates again
once and succeeds.  The expiry is the server's clock; nothing observable
announces it without using (and so renewing) the token, hence the one wait
of a few TTLs in `expire`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from auth_support import enable_auth
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from procs import ServerProcess
from recipe_support import Background

from etcdpy.api.errors import (
    ErrAuthFailed,
    ErrAuthOldRevision,
    ErrInvalidAuthToken,
    ErrPermissionDenied,
    ErrUserEmpty,
)
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.etcdserverpb import rpc_pb2_grpc as rpc
from etcdpy.client import Client
from etcdpy.client.auth import PermissionType
from etcdpy.client.concurrency import STM, Election, Mutex, Session, run_stm
from etcdpy.client.errors import from_rpc_error
from etcdpy.client.watch import watch_create_request

TOKEN_TTL = 1  # seconds (--auth-token-ttl)
_names = itertools.count()


@pytest.fixture(params=["etcd", "etcdpy"])
def auth_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server with auth on: root (rootpw), and alice (apw) with readwrite on the prefix app/."""
    server = ServerProcess(request.param, tmp_path / "data", extra_args=["--auth-token-ttl", str(TOKEN_TTL)])
    server.start()
    try:
        enable_auth(server.endpoint)
        yield server
    finally:
        server.stop()


def _raw_range(endpoint: str, token: str) -> None:
    """A Range sent with ``token`` by hand (raises the mapped error if refused)."""
    channel = grpc.insecure_channel(endpoint)
    try:
        stub: Any = rpc.KVStub(channel)  # type: ignore[no-untyped-call]
        stub.Range(pb.RangeRequest(key=b"app/x"), metadata=[("token", token)], timeout=5)
    except grpc.RpcError as err:
        raise from_rpc_error(err) from None
    finally:
        channel.close()


def expire(client: Client, endpoint: str) -> str:
    """Let the client's token expire on the server, and prove it did; the dead token."""
    token = client._token
    assert token, "the client has authenticated"
    time.sleep(TOKEN_TTL * 3)  # the server's countdown; no event to wait for (using the token renews it)
    with pytest.raises(ErrInvalidAuthToken):
        _raw_range(endpoint, token)
    return token


def test_management_calls_answer_as_etcd(auth_server: ServerProcess) -> None:
    with Client(auth_server.endpoint, user="root", password="rootpw") as root:
        assert list(root.user_list().users) == ["alice", "root"]
        assert list(root.role_list().roles) == ["app", "root"]
        assert list(root.user_get("alice").roles) == ["app"]
        perm = root.role_get("app").perm[0]
        assert (int(perm.permType), perm.key, perm.range_end) == (PermissionType.READWRITE, b"app/", b"app0")
        root.user_change_password("alice", "apw2")
        with pytest.raises(ErrAuthFailed):
            Client(auth_server.endpoint, user="alice", password="apw").authenticate()
        root.user_revoke_role("alice", "app")
        root.role_revoke_permission("app", "app/", prefix=True)
        assert list(root.role_get("app").perm) == []
        root.role_delete("app")
        root.user_delete("alice")
        assert list(root.user_list().users) == ["root"]
    with Client(auth_server.endpoint) as anonymous, pytest.raises(ErrUserEmpty):
        anonymous.get("app/x")


def test_unary_calls_authenticate_again_once_the_token_expired(auth_server: ServerProcess) -> None:
    with Client(auth_server.endpoint, user="alice", password="apw") as alice:
        alice.put("app/x", "1")
        dead = expire(alice, auth_server.endpoint)
        assert alice.get("app/x").kvs[0].value == b"1"  # a read
        assert alice._token != dead
        expire(alice, auth_server.endpoint)
        alice.put("app/x", "2")  # a write: refused before it was applied, so sent again
        assert alice.get("app/x").kvs[0].value == b"2"
        assert alice.get("app/x").kvs[0].version == 2, "the write was applied once"
        with pytest.raises(ErrPermissionDenied):
            alice.get("other")  # a refusal that is not about the token stays a refusal


def test_a_watch_opened_after_expiry_authenticates_again(auth_server: ServerProcess) -> None:
    with Client(auth_server.endpoint, user="alice", password="apw") as alice:
        start = alice.put("app/w", "0").header.revision
        expire(alice, auth_server.endpoint)
        watch = alice.watch(watch_create_request("app/w", start_revision=start))
        try:
            responses = iter(watch)
            created = next(responses)
            assert created.created and not created.canceled
            alice.put("app/w", "1")
            values: list[bytes] = []
            while len(values) < 2:
                values.extend(bytes(event.kv.value) for event in next(responses).events)
            assert values == [b"0", b"1"]
        finally:
            watch.close()


def test_a_keep_alive_opened_after_expiry_renews(auth_server: ServerProcess) -> None:
    with Client(auth_server.endpoint, user="alice", password="apw") as alice:
        lease = alice.lease_grant(30).ID
        expire(alice, auth_server.endpoint)
        renewals = alice.lease_keep_alive(lease)
        try:
            assert next(iter(renewals)).TTL > 0
        finally:
            renewals.close()
        assert alice.lease_time_to_live(lease).TTL > 0


def test_recipes_work_after_the_token_expired(auth_server: ServerProcess) -> None:
    name = f"app/recipe-{next(_names)}"
    with Client(auth_server.endpoint, user="alice", password="apw") as alice:
        with Session(alice, ttl=10) as session:
            expire(alice, auth_server.endpoint)
            with Mutex(session, name + "/lock") as lock:
                assert alice.get(lock.key).kvs[0].lease == session.lease_id
            expire(alice, auth_server.endpoint)
            election = Election(session, name + "/election")
            election.campaign("leader-1")
            assert election.leader().value == b"leader-1"
            election.resign()
        expire(alice, auth_server.endpoint)
        alice.put(name + "/counter", "0")
        expire(alice, auth_server.endpoint)

        def increment(stm: STM) -> None:
            value = int(stm.get(name + "/counter") or b"0")
            stm.put(name + "/counter", str(value + 1))

        run_stm(alice, increment)
        assert alice.get(name + "/counter").kvs[0].value == b"1"


def test_a_waiting_lock_holder_is_not_lost_to_expiry(auth_server: ServerProcess) -> None:
    """A Mutex waits (watching) while the token expires; it still gets the lock once released."""
    name = f"app/wait-{next(_names)}"
    with (
        Client(auth_server.endpoint, user="alice", password="apw") as first,
        Client(auth_server.endpoint, user="alice", password="apw") as second,
        Session(first, ttl=10) as held,
        Session(second, ttl=10) as waiting,
    ):
        holder = Mutex(held, name)
        holder.lock()
        waiter = Mutex(waiting, name)
        acquired = Background(waiter.lock)
        expire(second, auth_server.endpoint)
        holder.unlock()
        acquired.result(timeout=20)
        assert second.get(waiter.key).kvs[0].create_revision == waiter.revision
        waiter.unlock()


@pytest.fixture(params=["etcd", "etcdpy"])
def jwt_auth_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """Auth on with JWT tokens (RS256): a token carries the auth revision it was issued at."""
    key = rsa.generate_private_key(65537, 2048)
    private, public = tmp_path / "jwt.key", tmp_path / "jwt.pub"
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
    try:
        enable_auth(server.endpoint)
        yield server
    finally:
        server.stop()


def test_a_token_older_than_the_auth_store_is_replaced_once(jwt_auth_server: ServerProcess) -> None:
    """After an auth change a JWT is refused as old for writes; the client gets a new one and writes once."""
    ep = jwt_auth_server.endpoint
    with (
        Client(ep, user="alice", password="apw") as alice,
        Client(ep, user="root", password="rootpw") as root,
    ):
        alice.put("app/j", "1")
        stale = alice._token
        assert stale is not None
        root.role_add("unrelated")  # the auth revision moves on
        with pytest.raises(ErrAuthOldRevision), Client(ep) as raw:
            raw._token = stale  # the old token, sent as is
            raw.put("app/j", "never")
        alice.put("app/j", "2")
        assert alice._token != stale
        kv = alice.get("app/j").kvs[0]
        assert (kv.value, kv.version) == (b"2", 2), "the refused write was applied once, after the new token"


@pytest.mark.server_kinds("etcd", "etcdpy")
def test_a_client_made_while_auth_was_off_authenticates_once_it_is_on(server: ServerProcess) -> None:
    with Client(server.endpoint, user="alice", password="apw") as alice:
        alice.put("app/early", "1")  # auth is off: the call carries no token
        assert not alice._token
        enable_auth(server.endpoint)
        alice.put("app/early", "2")  # "user name is empty": the client authenticates, then writes once
        assert alice._token
        kv = alice.get("app/early").kvs[0]
        assert (kv.value, kv.version) == (b"2", 2)
