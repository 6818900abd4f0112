"""Range semantics, every RangeRequest field; expected answers were taken from etcd 3.4.23."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_mvcc_harness import Harness

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2

R = rpc_pb2.RangeRequest


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.close()


@pytest.fixture
def versions(h: Harness) -> Harness:
    """r/a version 2, r/b version 3, r/c version 1 (etcd probe data; revisions 2..7)."""
    for key, value in [(b"r/a", b"1"), (b"r/b", b"1"), (b"r/c", b"1"), (b"r/a", b"2"), (b"r/b", b"2")]:
        h.put(key, value)
    h.put(b"r/b", b"3")
    return h


def test_single_key_and_missing_key(h: Harness) -> None:
    h.put(b"foo", b"bar")
    resp = h.range(b"foo")
    assert [(kv.key, kv.value, kv.version, kv.create_revision, kv.mod_revision) for kv in resp.kvs] == [
        (b"foo", b"bar", 1, 2, 2)
    ]
    assert resp.count == 1
    missing = h.range(b"fo")
    assert list(missing.kvs) == [] and missing.count == 0 and not missing.more


def test_prefix_from_key_all_and_inverted_ranges(h: Harness) -> None:
    for k in [b"a", b"b", b"b1", b"b2", b"c"]:
        h.put(k)
    assert h.keys(b"b", b"c") == [b"b", b"b1", b"b2"]
    assert h.keys(b"b1", b"\x00") == [b"b1", b"b2", b"c"]
    assert h.keys(b"\x00", b"\x00") == [b"a", b"b", b"b1", b"b2", b"c"]
    assert h.keys(b"c", b"a") == []
    assert h.keys(b"b", b"b") == []


NASTY_KEYS = [b"a", b"a\x00", b"a\x00\x00", b"a\x00\x01", b"a\x01", b"a\xff", b"ab", b"a\xff\xff", b"b\x00"]


def test_keys_that_prefix_each_other_stay_in_byte_order_now_and_in_the_past(h: Harness) -> None:
    for k in reversed(NASTY_KEYS):
        h.put(k, b"v1")
    past = h.applier.current_revision
    for k in NASTY_KEYS:
        h.put(k, b"v2")
    assert h.keys() == sorted(NASTY_KEYS)
    assert h.keys(revision=past) == sorted(NASTY_KEYS)
    assert [kv.value for kv in h.range(b"\x00", b"\x00", revision=past).kvs] == [b"v1"] * len(NASTY_KEYS)
    assert h.keys(b"a\x00", b"a\x01", revision=past) == [b"a\x00", b"a\x00\x00", b"a\x00\x01"]
    assert h.keys(b"a\x00", b"a\x01") == [b"a\x00", b"a\x00\x00", b"a\x00\x01"]
    assert h.range(b"a\x00", revision=past).kvs[0].key == b"a\x00"


def test_limit_sets_more_and_count_ignores_limit(h: Harness) -> None:
    for k in [b"k1", b"k2", b"k3"]:
        h.put(k)
    resp = h.range(b"k", b"l", limit=2)
    assert [kv.key for kv in resp.kvs] == [b"k1", b"k2"] and resp.more and resp.count == 3
    exact = h.range(b"k", b"l", limit=3)
    assert len(exact.kvs) == 3 and not exact.more and exact.count == 3
    negative = h.range(b"k", b"l", limit=-1)  # etcd treats a negative limit as none
    assert len(negative.kvs) == 3 and not negative.more and negative.count == 3


def test_past_revisions_compaction_and_future(h: Harness) -> None:
    h.put(b"k", b"1")  # 2
    h.put(b"k", b"2")  # 3
    h.delete(b"k")  # 4
    h.put(b"k", b"3")  # 5
    assert h.get(b"k", revision=2).value == b"1"  # type: ignore[union-attr]
    assert h.get(b"k", revision=3).value == b"2"  # type: ignore[union-attr]
    assert h.get(b"k", revision=4) is None
    again = h.get(b"k", revision=5)
    assert again is not None and (again.value, again.version, again.create_revision) == (b"3", 1, 5)
    assert h.range(b"k", revision=2).header.revision == 5  # the header says "now", not the revision read
    with pytest.raises(errors.ErrFutureRev):
        h.range(b"k", revision=6)
    h.compact(3)
    with pytest.raises(errors.ErrCompacted):
        h.range(b"k", revision=2)
    assert h.get(b"k", revision=3).value == b"2"  # type: ignore[union-attr]  # the compact revision is readable
    assert h.get(b"k", revision=-1).value == b"3"  # type: ignore[union-attr]  # <= 0 means now


def test_sort_order_none_with_non_key_target_sorts_ascending_only_what_limit_fetched(
    versions: Harness,
) -> None:
    # etcd fetches limit+1 by key (r/a v2, r/b v3), sorts those by version, then truncates.
    resp = versions.range(b"r/", b"r0", sort_target=R.VERSION, limit=1)
    assert [kv.key for kv in resp.kvs] == [b"r/a"] and resp.more and resp.count == 3
    # with an explicit order it fetches everything first
    asc = versions.range(b"r/", b"r0", sort_target=R.VERSION, sort_order=R.ASCEND, limit=1)
    assert [kv.key for kv in asc.kvs] == [b"r/c"] and asc.more
    none_mod = versions.range(b"r/", b"r0", sort_target=R.MOD, limit=2)
    assert [kv.key for kv in none_mod.kvs] == [b"r/c", b"r/a"]


@pytest.mark.parametrize(
    ("target", "ascending"),
    [
        (R.KEY, [b"r/a", b"r/b", b"r/c"]),
        (R.VERSION, [b"r/c", b"r/a", b"r/b"]),
        (R.CREATE, [b"r/a", b"r/b", b"r/c"]),
        (R.MOD, [b"r/c", b"r/a", b"r/b"]),
        (R.VALUE, [b"r/c", b"r/a", b"r/b"]),
    ],
)
def test_every_sort_target_in_both_orders(versions: Harness, target: int, ascending: list[bytes]) -> None:
    asc = versions.range(b"r/", b"r0", sort_target=target, sort_order=R.ASCEND)
    desc = versions.range(b"r/", b"r0", sort_target=target, sort_order=R.DESCEND)
    assert [kv.key for kv in asc.kvs] == ascending
    assert [kv.key for kv in desc.kvs] == ascending[::-1]


def test_descending_key_sort_fetches_all_before_limit(versions: Harness) -> None:
    resp = versions.range(b"r/", b"r0", sort_order=R.DESCEND, limit=2)
    assert [kv.key for kv in resp.kvs] == [b"r/c", b"r/b"] and resp.more and resp.count == 3


def test_sort_ties_keep_key_order_in_both_directions(versions: Harness) -> None:
    versions.put(b"r/c", b"2")  # r/a and r/c now both hold "2"
    desc = versions.range(b"r/", b"r0", sort_target=R.VALUE, sort_order=R.DESCEND)
    asc = versions.range(b"r/", b"r0", sort_target=R.VALUE, sort_order=R.ASCEND)
    assert [kv.key for kv in desc.kvs] == [b"r/b", b"r/a", b"r/c"]
    assert [kv.key for kv in asc.kvs] == [b"r/a", b"r/c", b"r/b"]


def test_keys_only_and_count_only(versions: Harness) -> None:
    keys_only = versions.range(b"r/", b"r0", keys_only=True)
    assert [kv.value for kv in keys_only.kvs] == [b""] * 3
    assert [kv.version for kv in keys_only.kvs] == [2, 3, 1]
    count_only = versions.range(b"r/", b"r0", count_only=True, limit=1)
    assert list(count_only.kvs) == [] and count_only.count == 3 and not count_only.more


def test_revision_filters_prune_after_fetch_and_count_ignores_them(versions: Harness) -> None:
    # r/a: create 2 mod 5; r/b: create 3 mod 7; r/c: create 4 mod 4
    resp = versions.range(b"r/", b"r0", min_mod_revision=5)
    assert [kv.key for kv in resp.kvs] == [b"r/a", b"r/b"] and resp.count == 3
    assert versions.keys(b"r/", b"r0", max_mod_revision=5) == [b"r/a", b"r/c"]
    assert versions.keys(b"r/", b"r0", min_create_revision=3) == [b"r/b", b"r/c"]
    assert versions.keys(b"r/", b"r0", max_create_revision=3) == [b"r/a", b"r/b"]
    limited = versions.range(b"r/", b"r0", min_mod_revision=5, limit=1)
    assert [kv.key for kv in limited.kvs] == [b"r/a"] and limited.more and limited.count == 3
    assert versions.range(b"r/", b"r0", count_only=True, min_mod_revision=7).count == 3


def test_past_range_with_limit_count_and_deleted_keys(h: Harness) -> None:
    for k in [b"p/1", b"p/2", b"p/3", b"p/4"]:
        h.put(k, b"old")
    h.delete(b"p/2")
    past = h.applier.current_revision
    h.delete(b"p/", b"p0")
    h.put(b"p/5", b"new")
    resp = h.range(b"p/", b"p0", revision=past, limit=2)
    assert [kv.key for kv in resp.kvs] == [b"p/1", b"p/3"] and resp.more and resp.count == 3
    assert h.range(b"p/", b"p0", revision=past, count_only=True).count == 3
    assert h.keys(b"p/", b"p0") == [b"p/5"]


def test_past_counts_agree_whether_few_or_many_changes_followed(h: Harness) -> None:
    # counting at a recent revision corrects today's count by the few changes since; at an old one
    # it walks the key index: both must give the number of keys live back then
    for i in range(30):
        h.put(b"n/%02d" % i)
    old = h.applier.current_revision
    for i in range(0, 30, 3):
        h.delete(b"n/%02d" % i)
    for i in range(30, 60):
        h.put(b"n/%02d" % i)
    for _ in range(120):
        h.put(b"o")  # churn outside the range: many revisions, no change to its count
    recent = h.applier.current_revision
    h.delete(b"n/31")
    h.put(b"n/00")
    h.put(b"o")
    assert h.range(b"n/", b"n0", revision=old, count_only=True).count == 30  # 163 changes since: walk
    assert h.range(b"n/", b"n0", revision=recent, count_only=True).count == 50  # 3 changes since
    assert h.range(b"n/", b"n0", revision=recent, limit=1).count == 50
    assert h.range(b"n/", b"n0", count_only=True).count == 50
