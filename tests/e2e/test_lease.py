"""Leases on a real member (etcd and etcdpy alike): expiry on time with DELETE events, keep-alive, revoke."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from procs import ServerProcess

from etcdpy.api import errors
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.client import Client
from etcdpy.client.watch import watch_create_request

pytestmark = pytest.mark.server_kinds("etcd", "etcdpy")

ELECTION_TIMEOUT = 1.0  # both servers' default


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with Client([server.endpoint]) as c:
        yield c


def test_an_expired_lease_deletes_its_keys_on_time_in_one_revision(client: Client) -> None:
    watch = client.watch(watch_create_request("exp/", prefix=True))
    responses = iter(watch)
    assert next(responses).created
    granted = time.monotonic()
    lease = client.lease_grant(2)
    client.put("exp/a", "1", lease=lease.ID)
    client.put("exp/b", "2", lease=lease.ID)
    deletes: list[kv_pb2.Event] = []
    for response in responses:
        deletes = [e for e in response.events if e.type == kv_pb2.Event.DELETE]
        if deletes:
            break
    elapsed = time.monotonic() - granted
    watch.close()
    assert sorted(e.kv.key for e in deletes) == [b"exp/a", b"exp/b"]  # one response, one revision
    assert len({e.kv.mod_revision for e in deletes}) == 1
    assert lease.TTL - 0.1 <= elapsed <= lease.TTL + ELECTION_TIMEOUT + 0.5, elapsed
    assert client.lease_time_to_live(lease.ID).TTL == -1
    assert client.get("exp/", prefix=True).count == 0


def test_keep_alive_holds_a_lease_past_its_ttl(client: Client) -> None:
    lease = client.lease_grant(2)
    client.put("ka", "v", lease=lease.ID)
    session = client.lease_keep_alive(lease.ID)
    renewals = 0
    started = time.monotonic()
    for response in session:
        assert response.TTL == lease.TTL
        renewals += 1
        if time.monotonic() - started > 3.5:
            break
    session.close()
    assert renewals >= 3
    assert client.get("ka").count == 1
    assert client.lease_time_to_live(lease.ID).TTL > 0


def test_revoke_time_to_live_and_list(client: Client) -> None:
    lease = client.lease_grant(60)
    client.put("rv/a", "1", lease=lease.ID)
    ttl = client.lease_time_to_live(lease.ID, keys=True)
    assert (ttl.grantedTTL, list(ttl.keys)) == (60, [b"rv/a"])
    assert 58 <= ttl.TTL <= 60
    assert lease.ID in [s.ID for s in client.lease_leases().leases]
    revoked_at = client.lease_revoke(lease.ID).header.revision
    assert client.get("rv/a").count == 0
    assert client.get("rv/a", revision=revoked_at - 1).count == 1
    assert client.lease_time_to_live(lease.ID).TTL == -1
    with pytest.raises(errors.ErrLeaseNotFound):
        client.lease_revoke(lease.ID)
    with pytest.raises(errors.ErrLeaseNotFound):
        client.lease_keep_alive_once(lease.ID)


def test_grant_errors_and_client_chosen_ids(client: Client) -> None:
    assert client.lease_grant(1).TTL == 2  # raised to 1.5 election timeouts
    assert client.lease_grant(30, lease_id=0x1234).ID == 0x1234
    with pytest.raises(errors.ErrLeaseExist):
        client.lease_grant(30, lease_id=0x1234)
    with pytest.raises(errors.ErrLeaseTTLTooLarge):
        client.lease_grant(9_000_000_001)
    with pytest.raises(errors.ErrLeaseNotFound):
        client.put("k", "v", lease=0x999)


def test_leases_and_their_keys_survive_a_restart(tmp_path: Path) -> None:
    proc = ServerProcess("etcdpy", tmp_path / "data").start()
    try:
        with Client([proc.endpoint]) as c:
            lease = c.lease_grant(100)
            c.put("kept", "v", lease=lease.ID)
        proc.stop()
        proc.start()
        with Client([proc.endpoint]) as c:
            ttl = c.lease_time_to_live(lease.ID, keys=True)
            assert (ttl.grantedTTL, list(ttl.keys)) == (100, [b"kept"])
            c.lease_revoke(lease.ID)
            assert c.get("kept").count == 0
    finally:
        proc.stop()
