"""Reading history back as events: equal to what apply published, bounded, refused below compaction."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_mvcc_harness import Harness, op_del, op_put

from etcdpy.api import errors
from etcdpy.server.mvcc.history import read_events


def _write(h: Harness) -> None:
    h.put(b"a", b"1")
    h.txn(success=[op_put(b"b", b"2"), op_put(b"a", b"3")])
    h.delete(b"a")
    h.txn(success=[op_del(b"b"), op_put(b"c", b"4")])


def test_history_replays_exactly_the_published_events(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    _write(h)
    with h.applier.store.read() as reader:
        replayed = read_events(reader, 0, 100, prev_kv=True)
    assert replayed == h.events
    assert [rev for rev, _ in replayed] == [2, 3, 4, 5]
    h.close()


def test_history_without_prev_kv_and_bounded(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    _write(h)
    with h.applier.store.read() as reader:
        chunk = read_events(reader, 3, 2)
    assert [rev for rev, _ in chunk] == [3, 4]
    assert all(not e.HasField("prev_kv") for _, events in chunk for e in events)
    assert [[(e.type, e.kv.key, e.kv.mod_revision) for e in events] for _, events in chunk] == [
        [(0, b"b", 3), (0, b"a", 3)],
        [(1, b"a", 4)],
    ]
    h.close()


def test_history_below_the_compact_revision_is_refused(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    _write(h)
    h.compact(4)
    h.applier.compact_step()
    with h.applier.store.read() as reader:
        with pytest.raises(errors.ErrCompacted):
            read_events(reader, 3, 10)
        assert [rev for rev, _ in read_events(reader, 4, 10)] == [5]  # the tombstone at 4 is compacted away
    h.close()
