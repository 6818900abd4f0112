"""The journaled LevelDB backend loses exactly what a power loss may lose, and nothing synced."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .journal import JournaledBackend


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[JournaledBackend]:
    opened = JournaledBackend(tmp_path)
    yield opened
    opened.close()


def _put(backend: JournaledBackend, sync: bool, **values: str | None) -> None:
    with backend.batch(sync=sync) as wb:
        for key, value in values.items():
            if value is None:
                wb.delete(key.encode())
            else:
                wb.put(key.encode(), value.encode())


def _read(backend: JournaledBackend, *keys: str) -> list[str | None]:
    return [None if (v := backend.get(k.encode())) is None else v.decode() for k in keys]


def test_losing_every_unsynced_batch_restores_the_synced_state(backend: JournaledBackend) -> None:
    _put(backend, True, a="1", b="1")
    _put(backend, False, a="2", c="2")  # overwrite one key, create another
    _put(backend, False, a="3", b=None)  # the same key twice across batches, and a delete
    assert backend.lose_unsynced(0) == 2
    assert _read(backend, "a", "b", "c") == ["1", "1", None]


def test_a_crash_may_keep_a_prefix_of_the_unsynced_batches(backend: JournaledBackend) -> None:
    _put(backend, False, a="1")
    _put(backend, False, a="2", b="2")
    _put(backend, False, b="3")
    assert backend.lose_unsynced(1) == 2
    assert _read(backend, "a", "b") == ["1", None]


def test_a_key_written_twice_in_one_batch_is_restored_to_its_value_before_the_batch(
    backend: JournaledBackend,
) -> None:
    _put(backend, True, a="0")
    with backend.batch(sync=False) as wb:
        wb.put(b"a", b"1")
        wb.delete(b"a")
        wb.put(b"a", b"2")
    backend.lose_unsynced(0)
    assert _read(backend, "a") == ["0"]


def test_an_fsync_makes_every_earlier_batch_durable(backend: JournaledBackend) -> None:
    _put(backend, False, a="1")
    backend.synced()  # the raft log's fsync, in the same database
    _put(backend, False, b="1")
    _put(backend, True, c="1")  # a synced batch carries the one before it too
    assert backend.lose_unsynced(0) == 0
    assert _read(backend, "a", "b", "c") == ["1", "1", "1"]


def test_what_survives_is_what_a_reopened_database_holds(tmp_path: Path) -> None:
    backend = JournaledBackend(tmp_path)
    _put(backend, False, a="1")
    _put(backend, False, a="2")
    backend.lose_unsynced(1)
    backend.close()
    reopened = JournaledBackend(tmp_path)
    try:
        assert _read(reopened, "a") == ["1"]
        assert reopened.unsynced == []
    finally:
        reopened.close()


def test_writes_made_on_the_database_itself_are_journaled_too(backend: JournaledBackend) -> None:
    """Raw batches written and cleared in a loop (as a snapshot install writes) and single puts are undone."""
    _put(backend, True, a="0", b="0")
    wb = backend.db.write_batch()
    wb.put(b"a", b"1")
    wb.write()
    wb.clear()
    wb.delete(b"b")
    wb.write()
    backend.db.put(b"c", b"1")
    assert len(backend.unsynced) == 3
    assert backend.lose_unsynced(1) == 2
    assert _read(backend, "a", "b", "c") == ["1", "0", None]


def test_a_synced_put_makes_every_earlier_write_durable(backend: JournaledBackend) -> None:
    """A synced marker (as an install's) carries the unsynced writes before it to the disk."""
    _put(backend, False, a="1")
    backend.db.put(b"marker", b"x", sync=True)
    wb = backend.db.write_batch()
    wb.put(b"b", b"1")
    wb.write()
    assert backend.lose_unsynced(0) == 1
    assert _read(backend, "a", "marker", "b") == ["1", "x", None]


def test_a_batch_left_by_an_exception_writes_nothing(backend: JournaledBackend) -> None:
    with pytest.raises(RuntimeError), backend.batch(sync=False) as wb:
        wb.put(b"a", b"1")
        raise RuntimeError("cut short")
    assert _read(backend, "a") == [None]
    assert backend.unsynced == []
