"""The aetcd scenario run by test_aetcd.py in its own process.

aetcd ships its own generated etcd protos; importing them next to etcdpy.api in
one process makes protobuf reject the duplicate symbols, so this runs apart.
Usage: python aetcd_scenario.py HOST PORT (exit status 0 when every check holds).
"""

from __future__ import annotations

import asyncio
import sys

import aetcd


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


if __name__ == "__main__":
    asyncio.run(_exercise(sys.argv[1], int(sys.argv[2])))
