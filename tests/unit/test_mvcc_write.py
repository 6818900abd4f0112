"""Put and DeleteRange: revisions, versions, prev_kv, ignore_value/ignore_lease, leases, events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_mvcc_harness import FakeLeases, Harness, op_put

from etcdpy.api import errors
from etcdpy.api.mvccpb import kv_pb2

PUT, DELETE = kv_pb2.Event.PUT, kv_pb2.Event.DELETE


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, leases=FakeLeases(7, 8))
    yield harness
    harness.close()


def test_each_put_takes_the_next_revision_and_bumps_version(h: Harness) -> None:
    assert [h.put(b"k", v).header.revision for v in (b"1", b"2", b"3")] == [2, 3, 4]
    kv = h.get(b"k")
    assert kv is not None and (kv.create_revision, kv.mod_revision, kv.version, kv.value) == (2, 4, 3, b"3")


def test_delete_resets_version_and_create_revision(h: Harness) -> None:
    h.put(b"k", b"1")
    h.put(b"k", b"2")
    assert h.delete(b"k").header.revision == 4
    h.put(b"k", b"3")
    kv = h.get(b"k")
    assert kv is not None and (kv.create_revision, kv.mod_revision, kv.version) == (5, 5, 1)


def test_put_prev_kv(h: Harness) -> None:
    first = h.put(b"k", b"1", prev_kv=True)
    assert not first.HasField("prev_kv")
    second = h.put(b"k", b"2", prev_kv=True)
    assert (second.prev_kv.key, second.prev_kv.value, second.prev_kv.mod_revision) == (b"k", b"1", 2)


def test_ignore_value_keeps_value_and_ignore_lease_keeps_lease(h: Harness) -> None:
    h.put(b"k", b"v", lease=7)
    h.put(b"k", ignore_value=True, lease=8)
    kv = h.get(b"k")
    assert kv is not None and (kv.value, kv.lease, kv.version) == (b"v", 8, 2)
    h.put(b"k", b"w", ignore_lease=True)
    kv = h.get(b"k")
    assert kv is not None and (kv.value, kv.lease, kv.version) == (b"w", 8, 3)


def test_ignore_flags_on_missing_key_fail_without_taking_a_revision(h: Harness) -> None:
    with pytest.raises(errors.ErrKeyNotFound):
        h.put(b"nope", ignore_value=True)
    with pytest.raises(errors.ErrKeyNotFound):
        h.put(b"nope", b"v", ignore_lease=True)
    assert h.applier.current_revision == 1 and h.keys() == []
    assert h.applier.applied_index == 2  # failed entries still count as applied


def test_unknown_lease_is_rejected_and_known_ones_track_their_keys(h: Harness) -> None:
    with pytest.raises(errors.ErrLeaseNotFound):
        h.put(b"k", lease=99)
    leases = h.leases
    assert isinstance(leases, FakeLeases)
    h.put(b"a", lease=7)
    h.put(b"b", lease=7)
    assert leases.keys[7] == {b"a", b"b"}
    h.put(b"a", lease=8)
    assert leases.keys == {7: {b"b"}, 8: {b"a"}}
    h.put(b"a")  # no lease: detached
    h.delete(b"b")
    assert leases.keys == {7: set(), 8: set()}


def test_a_plain_put_checks_the_lease_before_the_key_but_a_txn_put_after(h: Harness) -> None:
    with pytest.raises(errors.ErrLeaseNotFound):
        h.put(b"missing", ignore_value=True, lease=99)
    with pytest.raises(errors.ErrKeyNotFound):
        h.txn(success=[op_put(b"missing", ignore_value=True, lease=99)])


def test_leased_keys_lists_current_attachments_for_a_restarting_lessor(h: Harness) -> None:
    h.put(b"a", lease=7)
    h.put(b"b", lease=8)
    h.put(b"c")
    h.put(b"b", lease=7)
    h.delete(b"a")
    h.reopen()
    assert list(h.applier.store.leased_keys()) == [(7, b"b")]


def test_without_a_lessor_every_lease_is_unknown(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    with pytest.raises(errors.ErrLeaseNotFound):
        h.put(b"k", lease=1)
    h.close()


def test_delete_range_counts_returns_prev_kvs_and_uses_one_revision(h: Harness) -> None:
    for k in [b"d/1", b"d/2", b"d/3", b"e"]:
        h.put(k, k)
    resp = h.delete(b"d/", b"d0", prev_kv=True)
    assert resp.deleted == 3 and resp.header.revision == 6
    assert [(kv.key, kv.value) for kv in resp.prev_kvs] == [
        (b"d/1", b"d/1"),
        (b"d/2", b"d/2"),
        (b"d/3", b"d/3"),
    ]
    assert h.keys() == [b"e"]
    no_prev = h.delete(b"e")
    assert no_prev.deleted == 1 and list(no_prev.prev_kvs) == []


def test_deleting_nothing_takes_no_revision(h: Harness) -> None:
    h.put(b"k")
    resp = h.delete(b"x", b"z")
    assert resp.deleted == 0 and resp.header.revision == 2 and h.applier.current_revision == 2
    assert h.delete(b"\x00", b"\x00").deleted == 1


def test_events_per_revision_carry_kv_and_prev_kv(h: Harness) -> None:
    h.put(b"a", b"1")
    h.put(b"a", b"2")
    h.delete(b"a", b"c")
    h.delete(b"zz")  # no revision, no events
    assert [rev for rev, _ in h.events] == [2, 3, 4]
    (created,), (updated,), (deleted,) = (events for _, events in h.events)
    assert created.type == PUT and created.kv.value == b"1" and not created.HasField("prev_kv")
    assert updated.type == PUT and updated.kv.version == 2 and updated.prev_kv.value == b"1"
    assert deleted.type == DELETE
    assert (deleted.kv.key, deleted.kv.mod_revision, deleted.kv.value, deleted.kv.version) == (
        b"a",
        4,
        b"",
        0,
    )
    assert deleted.prev_kv.value == b"2"
