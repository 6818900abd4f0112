"""A third-party client, aetcd (from PyPI), works unchanged against etcdpy.

The same test body runs against the reference etcd, which proves the test
itself, and against an etcdpy server.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import aetcd
import pytest
from procs import ServerProcess

SERVER_KINDS = ["etcd", "etcdpy"]


async def _exercise(host: str, port: int) -> None:
    async with aetcd.Client(host=host, port=port, timeout=10) as client:
        put = await client.put(b"aetcd/k1", b"v1")
        first_revision = put.header.revision
        await client.put(b"aetcd/k2", b"v2")

        got = await client.get(b"aetcd/k1")
        assert got is not None
        assert (got.key, got.value, got.version) == (b"aetcd/k1", b"v1", 1)
        assert got.create_revision == got.mod_revision == first_revision
        assert await client.get(b"aetcd/missing") is None

        prefix = await client.get_prefix(b"aetcd/")
        assert [kv.key for kv in prefix] == [b"aetcd/k1", b"aetcd/k2"]

        tx = client.transactions
        succeeded, responses = await client.transaction(
            compare=[tx.value(b"aetcd/k1") == b"v1", tx.version(b"aetcd/k1") > 0],
            success=[tx.put(b"aetcd/k1", b"from-txn"), tx.get(b"aetcd/k2")],
            failure=[tx.put(b"aetcd/k1", b"failure-branch")],
        )
        assert succeeded is True
        assert len(responses) == 2
        after = await client.get(b"aetcd/k1")
        assert after is not None and after.value == b"from-txn"
        assert after.mod_revision > first_revision

        succeeded, _ = await client.transaction(
            compare=[tx.value(b"aetcd/k1") == b"v1"],
            success=[tx.put(b"aetcd/k1", b"wrong-branch")],
            failure=[tx.delete(b"aetcd/k2")],
        )
        assert succeeded is False
        assert await client.get(b"aetcd/k2") is None

        deleted = await client.delete(b"aetcd/k1", prev_kv=True)
        assert deleted is not None and deleted.deleted == 1
        assert deleted.prev_kv.value == b"from-txn"
        assert await client.get(b"aetcd/k1") is None
        assert await client.delete(b"aetcd/k1") is None


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_aetcd_put_get_delete_txn(kind: str, tmp_path: Path) -> None:
    if kind == "etcdpy" and importlib.util.find_spec("etcdpy.server.main") is None:
        pytest.fail("etcdpy.server.main is missing: the etcdpy server must exist for this test")
    server = ServerProcess(kind, tmp_path / f"{kind}.data").start()
    try:
        asyncio.run(_exercise("127.0.0.1", server.client_port))
    finally:
        server.stop()
