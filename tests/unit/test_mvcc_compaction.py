"""Compaction (logical at apply, physical in bounded resumable steps) and the hashes members compare."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_mvcc_harness import Harness

from etcdpy.api import errors
from etcdpy.server.mvcc import layout


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "a")
    yield harness
    harness.close()


def _raw(h: Harness, start: bytes, stop: bytes) -> list[tuple[bytes, bytes]]:
    return list(h.backend.db.iterator(start=start, stop=stop))


def _history_revs(h: Harness) -> list[int]:
    return [layout.history_rev(k).main for k, _ in _raw(h, layout.HISTORY_START, layout.HISTORY_STOP)]


def _write_history(h: Harness) -> None:
    """k: puts at 2, 3, 5; gone: put 4, deleted 6; live: put 7."""
    h.put(b"k", b"1")
    h.put(b"k", b"2")
    h.put(b"gone", b"x")
    h.put(b"k", b"3")
    h.delete(b"gone")
    h.put(b"live", b"y")


def test_compact_revision_bounds_like_etcd(h: Harness) -> None:
    h.compact(0)  # a fresh store (revision 1, never compacted) accepts 0 and 1
    with pytest.raises(errors.ErrCompacted):
        h.compact(-3)
    with pytest.raises(errors.ErrCompacted):
        h.compact(0)
    assert h.compact(1).header.revision == 1
    h.put(b"k")
    with pytest.raises(errors.ErrFutureRev):
        h.compact(3)
    with pytest.raises(errors.ErrCompacted):
        h.compact(1)
    h.compact(2)
    assert h.applier.compact_revision == 2


def test_physical_compaction_keeps_newest_version_and_drops_tombstoned_keys(h: Harness) -> None:
    _write_history(h)
    visible = {rev: h.range(b"\x00", b"\x00", revision=rev) for rev in range(6, 8)}
    h.compact(6)
    assert h.applier.compaction_pending
    assert h.applier.compact_step()
    assert not h.applier.compaction_pending
    assert _history_revs(h) == [5, 7]  # k@5 kept; k@2,3 and gone@4,6 (tombstoned at 6) deleted
    index_keys = [layout.split_index_key(k)[1] for k, _ in _raw(h, layout.INDEX_START, layout.INDEX_STOP)]
    assert index_keys == [b"k", b"live"]
    for rev, before in visible.items():
        assert h.range(b"\x00", b"\x00", revision=rev) == before
    with pytest.raises(errors.ErrCompacted):
        h.range(b"k", revision=5)


def test_tombstone_above_the_compact_revision_is_kept(h: Harness) -> None:
    _write_history(h)
    h.compact(5)
    h.applier.compact_step()
    assert _history_revs(h) == [4, 5, 6, 7]
    assert h.get(b"gone", revision=5) is not None and h.get(b"gone", revision=6) is None


def test_steps_are_bounded_and_resume_after_a_restart(tmp_path: Path) -> None:
    straight, stepped = Harness(tmp_path / "straight"), Harness(tmp_path / "stepped")
    for harness in (straight, stepped):
        for i in range(40):
            harness.put(b"key%02d" % (i % 7), b"%d" % i)
        harness.delete(b"key03")
        harness.compact(30)
    straight.applier.compact_step(max_records=10_000)
    steps = 0
    while not stepped.applier.compact_step(max_records=4):
        steps += 1
        if steps % 2 == 0:
            stepped.reopen()  # crash between steps: progress is stored with each step
    assert steps >= 2  # 29 history records in the window, at most 4 read per step
    everything = (b"\x00", b"\xff")
    assert _raw(stepped, *everything) == _raw(straight, *everything)
    straight.close()
    stepped.close()


def test_a_later_compaction_during_an_unfinished_one_widens_it(h: Harness) -> None:
    for i in range(20):
        h.put(b"k%d" % (i % 3), b"%d" % i)
    h.compact(10)
    assert not h.applier.compact_step(max_records=3)
    h.compact(18)
    while not h.applier.compact_step(max_records=3):
        pass
    assert _history_revs(h) == [16, 17, 18, 19, 20, 21]  # k2@16, k0@17, k1@18 are newest <= 18
    assert [kv.value for kv in h.range(b"k", b"l", revision=18).kvs] == [b"15", b"16", b"14"]


def test_writes_between_steps_survive(h: Harness) -> None:
    for i in range(10):
        h.put(b"a%d" % i, b"old")
    h.put(b"a0", b"new")
    h.compact(12)
    assert not h.applier.compact_step(max_records=2)
    h.put(b"a1", b"newer")
    h.delete(b"a2")
    h.applier.compact_step(max_records=1000)
    assert [kv.value for kv in h.range(b"a", b"b").kvs][:3] == [b"new", b"newer", b"old"]
    assert h.keys(b"a", b"b")[:3] == [b"a0", b"a1", b"a3"]
    assert h.get(b"a2", revision=13) is not None


def test_hash_kv_ignores_physical_compaction_progress(tmp_path: Path) -> None:
    a, b = Harness(tmp_path / "a"), Harness(tmp_path / "b")
    for harness in (a, b):
        _write_history(harness)
        harness.compact(6)
    a.applier.compact_step()
    assert a.applier.hash_kv(0) == b.applier.hash_kv(0)
    assert a.applier.hash_kv(0)[1:] == (6, 7)
    assert a.applier.hash() != b.applier.hash()  # the physical hash sees what was deleted
    a.close()
    b.close()


def test_hash_kv_at_a_revision_depends_only_on_history_up_to_it(tmp_path: Path) -> None:
    full, prefix = Harness(tmp_path / "full"), Harness(tmp_path / "prefix")
    _write_history(full)
    _write_history(prefix)
    full.put(b"later", b"z")
    assert full.applier.hash_kv(7) == prefix.applier.hash_kv(0)
    assert full.applier.hash_kv(0)[0] != prefix.applier.hash_kv(0)[0]
    assert full.applier.hash() != prefix.applier.hash()
    prefix.put(b"later", b"z")
    assert full.applier.hash() == prefix.applier.hash()
    full.close()
    prefix.close()


def test_hash_kv_revision_bounds(h: Harness) -> None:
    _write_history(h)
    h.compact(4)
    with pytest.raises(errors.ErrCompacted):
        h.applier.hash_kv(4)
    with pytest.raises(errors.ErrFutureRev):
        h.applier.hash_kv(8)
    assert h.applier.hash_kv(5)[1:] == (4, 5)
