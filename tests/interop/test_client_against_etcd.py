"""etcdpy.client.Client against a real etcd: KV, txn, maintenance, errors and failover."""

from __future__ import annotations

import pytest
from procs import ServerProcess

from etcdpy.api import errors
from etcdpy.client import (
    Client,
    CompareResult,
    CompareTarget,
    SortOrder,
    SortTarget,
    compare,
    op_get,
    op_put,
)
from etcdpy.client import requests as rq

pytestmark = pytest.mark.interop


def test_kv_round_trip(etcd_server: ServerProcess) -> None:
    with Client([etcd_server.endpoint]) as c:
        first = c.put("k1", b"v1")
        assert first.header.revision == 2
        c.put(b"k2", "v2")
        assert [kv.key for kv in c.get("k", prefix=True).kvs] == [b"k1", b"k2"]
        assert c.get("k", prefix=True, limit=1).more is True
        assert c.get("k", prefix=True, count_only=True).count == 2
        desc = c.get("k", prefix=True, sort_order=SortOrder.DESCEND, sort_target=SortTarget.VALUE)
        assert [kv.value for kv in desc.kvs] == [b"v2", b"v1"]
        assert c.get("k1", revision=2).kvs[0].value == b"v1"
        replaced = c.put("k1", "v1b", prev_kv=True)
        assert replaced.prev_kv.value == b"v1"
        deleted = c.delete("k", prefix=True, prev_kv=True)
        assert deleted.deleted == 2 and len(deleted.prev_kvs) == 2
        assert c.get("k1").count == 0


def test_txn(etcd_server: ServerProcess) -> None:
    with Client(etcd_server.endpoint) as c:
        c.put("a", "1")
        ok = c.txn(
            [
                compare("a", CompareTarget.VALUE, CompareResult.EQUAL, "1"),
                compare("a", CompareTarget.VERSION, CompareResult.GREATER, 0),
            ],
            [op_put(rq.put_request("a", "2")), op_get(rq.range_request("a"))],
            [op_put(rq.put_request("a", "never"))],
        )
        assert ok.succeeded is True
        assert ok.responses[1].response_range.kvs[0].value == b"2"
        failed = c.txn(
            [compare("a", CompareTarget.MOD, CompareResult.LESS, 1)], [], [op_get(rq.range_request("a"))]
        )
        assert failed.succeeded is False
        with pytest.raises(TypeError):
            compare("a", CompareTarget.VALUE, CompareResult.EQUAL, 1)


def test_maintenance_and_cluster(etcd_server: ServerProcess) -> None:
    with Client([etcd_server.endpoint]) as c:
        for v in "abc":
            c.put("x", v)
        members = c.member_list().members
        assert [m.clientURLs[0] for m in members] == [etcd_server.client_url]
        status = c.status(etcd_server.client_url)
        assert status.leader == status.header.member_id == members[0].ID
        before = c.hash_kv(0, etcd_server.endpoint)
        assert before.hash == c.hash_kv(0, etcd_server.endpoint).hash
        c.compact(3, physical=True)
        assert c.hash_kv(0, etcd_server.endpoint).compact_revision == 3


def test_server_errors_map_to_the_error_table(etcd_server: ServerProcess) -> None:
    with Client([etcd_server.endpoint]) as c:
        c.put("a", "1")
        with pytest.raises(errors.ErrFutureRev):
            c.get("a", revision=100)
        with pytest.raises(errors.ErrKeyNotFound):
            c.put("missing", ignore_value=True)
        with pytest.raises(errors.ErrEmptyKey):
            c.put("", "v")
        c.compact(2)
        with pytest.raises(errors.ErrCompacted):
            c.get("a", revision=1)


def test_failover_skips_an_unreachable_endpoint(etcd_server: ServerProcess) -> None:
    with Client(["127.0.0.1:1", etcd_server.endpoint], command_timeout=5) as c:
        assert c.put("k", "v").header.revision == 2  # a write is safe to send on: it never left
        assert c.get("k").kvs[0].value == b"v"
