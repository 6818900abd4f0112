"""etcd3gw (OpenStack's client of etcd's JSON gateway) drives KV, watch, lease and lock, against etcd 3.4 and
etcdpy alike: the same calls must give the same results on both."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import etcd3gw
import pytest
from etcd3gw.exceptions import Etcd3Exception
from procs import ServerProcess

pytestmark = [pytest.mark.interop, pytest.mark.server_kinds("etcd", "etcdpy")]

_names = itertools.count()


@pytest.fixture
def gw(shared_server: ServerProcess) -> Iterator[etcd3gw.Etcd3Client]:
    """A client that finds its API path from /version, as deployed ones do."""
    client = etcd3gw.client(host="127.0.0.1", port=shared_server.client_port, timeout=30)
    yield client
    client.session.close()


@pytest.fixture
def prefix() -> str:
    return f"gw{next(_names)}/"


def test_the_api_path_is_found_from_version(gw: etcd3gw.Etcd3Client) -> None:
    assert gw.api_path == "/v3/"  # etcd3gw picks /v3/ for a 3.4 server, from /version's etcdserver


def test_put_get_delete(gw: etcd3gw.Etcd3Client, prefix: str) -> None:
    assert gw.put(prefix + "a", "1") is True
    assert gw.put(prefix + "b", "2") is True
    assert gw.get(prefix + "a") == [b"1"]
    assert gw.get(prefix + "missing") == []
    values, metas = zip(*gw.get_prefix(prefix, sort_order="descend", sort_target="key"), strict=True)
    assert values == (b"2", b"1")
    assert [m["key"] for m in metas] == [(prefix + "b").encode(), (prefix + "a").encode()]
    assert gw.delete(prefix + "a") is True
    assert gw.delete(prefix + "a") is False  # nothing was deleted: deleted is left out of the JSON
    assert gw.delete_prefix(prefix) is True
    assert gw.get_prefix(prefix) == []


def test_create_and_replace_are_transactions(gw: etcd3gw.Etcd3Client, prefix: str) -> None:
    assert gw.create(prefix + "k", "first") is True
    assert gw.create(prefix + "k", "second") is False  # a failed txn has no "succeeded" in its JSON
    assert gw.replace(prefix + "k", "first", "third") is True
    assert gw.replace(prefix + "k", "first", "fourth") is False
    assert gw.get(prefix + "k") == [b"third"]


def test_status_and_members(gw: etcd3gw.Etcd3Client) -> None:
    status = gw.status()
    assert status["version"] == "3.4.23"
    assert status["leader"] == status["header"]["member_id"]
    members = gw.members()
    assert len(members) == 1
    assert members[0]["ID"] == status["header"]["member_id"]


def test_watch_sees_puts_and_deletes_in_order(gw: etcd3gw.Etcd3Client, prefix: str) -> None:
    events, cancel = gw.watch_prefix(prefix)
    try:
        gw.put(prefix + "x", "1")
        gw.put(prefix + "y", "2")
        gw.delete(prefix + "x")
        seen = [next(events) for _ in range(3)]
    finally:
        cancel()
    assert [(e.get("type", "PUT"), e["kv"]["key"]) for e in seen] == [
        ("PUT", (prefix + "x").encode()),
        ("PUT", (prefix + "y").encode()),
        ("DELETE", (prefix + "x").encode()),
    ]
    assert seen[1]["kv"]["value"] == b"2"


def test_watch_from_a_past_revision_replays(gw: etcd3gw.Etcd3Client, prefix: str) -> None:
    gw.put(prefix + "old", "v1")
    revision = int(gw.get(prefix + "old", metadata=True)[0][1]["mod_revision"])
    gw.put(prefix + "old", "v2")
    events, cancel = gw.watch(prefix + "old", start_revision=revision)
    try:
        replayed = [next(events)["kv"]["value"] for _ in range(2)]
    finally:
        cancel()
    assert replayed == [b"v1", b"v2"]


def test_watch_once_returns_the_next_event(gw: etcd3gw.Etcd3Client, prefix: str) -> None:
    gw.put(prefix + "k", "before")
    revision = int(gw.get(prefix + "k", metadata=True)[0][1]["mod_revision"])
    gw.put(prefix + "k", "after")
    event = gw.watch_once(prefix + "k", timeout=30, start_revision=revision + 1)
    assert event["kv"]["value"] == b"after"


def test_lease_lifecycle(gw: etcd3gw.Etcd3Client, prefix: str) -> None:
    lease = gw.lease(ttl=60)
    assert lease.id > 0
    gw.put(prefix + "leased", "v", lease=lease)
    assert lease.keys() == [(prefix + "leased").encode()]
    assert 0 < lease.ttl() <= 60
    assert 0 < lease.refresh() <= 60  # one keep-alive over a stream that ends with the request body
    assert lease.revoke() is True
    assert gw.get(prefix + "leased") == []  # revoking the lease deleted its key
    assert lease.ttl() == -1
    assert lease.refresh() == -1  # an unknown lease's keep-alive has no TTL in its JSON


def test_revoking_an_unknown_lease_fails(gw: etcd3gw.Etcd3Client) -> None:
    lease = gw.lease(ttl=60)
    assert lease.revoke() is True
    with pytest.raises(Etcd3Exception) as failure:
        lease.revoke()
    assert "etcdserver: requested lease not found" in (failure.value.detail_text or "")  # the body


def test_lock_excludes_a_second_holder(gw: etcd3gw.Etcd3Client, prefix: str) -> None:
    first = gw.lock(prefix + "l", ttl=60)
    second = gw.lock(prefix + "l", ttl=60)
    assert first.acquire() is True
    assert first.is_acquired()
    assert second.acquire() is False
    assert 0 < first.refresh() <= 60
    assert first.release() is True
    assert not first.is_acquired()
    with second:
        assert second.is_acquired()
    assert not second.is_acquired()
