"""The WAL: entries and hard state survive reopening, torn tails are dropped, damage elsewhere refuses."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from etcdpy.server.storage import schema
from etcdpy.server.storage.backend import Backend
from etcdpy.server.storage.wal import WAL, Entry, EntryType, HardState, WALCorruptError, entry_key

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    backend = Backend(tmp_path)
    yield backend
    backend.close()


def normal(index: int, term: int = 2, data: bytes = b"") -> Entry:
    return Entry(index, term, EntryType.NORMAL, data or f"entry-{index}".encode())


def reopen(backend: Backend) -> tuple[Backend, WAL]:
    backend.close()
    again = Backend(backend.data_dir)
    return again, WAL.open(again)


def test_entries_and_hard_state_round_trip_through_a_reopen(backend: Backend) -> None:
    wal = WAL.open(backend)
    assert (wal.first_index, wal.last_index, wal.hard_state) == (1, 0, HardState())
    conf = Entry(1, 1, EntryType.CONF_CHANGE, b"member")
    wal.save([conf, normal(2)], HardState(term=2, vote=7, commit=2))
    wal.save([normal(3, data=b"\x00" * 1000)], HardState(term=2, vote=7, commit=3))
    backend, wal = reopen(backend)
    try:
        assert (wal.first_index, wal.last_index, wal.last_term) == (1, 3, 2)
        assert wal.hard_state == HardState(term=2, vote=7, commit=3)
        assert wal.entries(1, 4) == [conf, normal(2), normal(3, data=b"\x00" * 1000)]
        assert wal.entries(2, 3) == [normal(2)]
        assert (wal.term(1), wal.term(3), wal.term(99)) == (1, 2, 0)
    finally:
        backend.close()


def test_append_must_follow_the_last_index(backend: Backend) -> None:
    wal = WAL.open(backend)
    wal.save([normal(1)], HardState(2, 1, 1))
    with pytest.raises(ValueError, match="does not follow"):
        wal.save([normal(3)], HardState(2, 1, 3))
    assert wal.last_index == 1


def test_compaction_drops_old_entries_in_the_same_batch(backend: Backend) -> None:
    wal = WAL.open(backend)
    wal.save([normal(i) for i in range(1, 11)], HardState(2, 1, 10))
    wal.save([normal(11)], HardState(2, 1, 11), compact_through=6)
    assert (wal.first_index, wal.last_index) == (7, 11)
    backend, wal = reopen(backend)
    try:
        assert (wal.first_index, wal.last_index) == (7, 11)
        assert [e.index for e in wal.entries(1, 100)] == [7, 8, 9, 10, 11]
    finally:
        backend.close()


def test_extra_writes_share_the_batch(backend: Backend) -> None:
    wal = WAL.open(backend)
    wal.save([normal(1)], HardState(2, 1, 1), extra=lambda batch: batch.put(schema.MEMBERS + b"x", b"y"))
    assert backend.get(schema.MEMBERS + b"x") == b"y"


def test_a_damaged_newest_entry_is_a_torn_tail_and_is_dropped(backend: Backend) -> None:
    wal = WAL.open(backend)
    wal.save([normal(1), normal(2), normal(3)], HardState(2, 1, 3))
    backend.db.put(entry_key(3), backend.get(entry_key(3))[:-2])  # type: ignore[index]
    backend, wal = reopen(backend)
    try:
        assert wal.dropped_tail == 1
        assert wal.last_index == 2
        assert backend.get(entry_key(3)) is None
        wal.save([normal(3, data=b"again")], HardState(2, 1, 3))  # the log continues where it is whole
        assert wal.entries(3, 4) == [normal(3, data=b"again")]
    finally:
        backend.close()


def test_a_damaged_entry_before_the_tail_is_corruption(backend: Backend) -> None:
    wal = WAL.open(backend)
    wal.save([normal(1), normal(2), normal(3)], HardState(2, 1, 3))
    value = bytearray(backend.get(entry_key(2)) or b"")
    value[-1] ^= 0xFF  # flip bits in the data: the checksum no longer matches
    backend.db.put(entry_key(2), bytes(value))
    backend.close()
    reopened = Backend(backend.data_dir)
    try:
        with pytest.raises(WALCorruptError, match="entry 2 is damaged and later entries exist"):
            WAL.open(reopened)
    finally:
        reopened.close()


def test_a_gap_in_the_log_is_corruption(backend: Backend) -> None:
    wal = WAL.open(backend)
    wal.save([normal(1), normal(2), normal(3)], HardState(2, 1, 3))
    backend.db.delete(entry_key(2))
    backend.close()
    reopened = Backend(backend.data_dir)
    try:
        with pytest.raises(WALCorruptError, match="entry 2 missing"):
            WAL.open(reopened)
    finally:
        reopened.close()


def test_an_entry_moved_to_another_index_fails_its_checksum(backend: Backend) -> None:
    wal = WAL.open(backend)
    wal.save([normal(1), normal(2)], HardState(2, 1, 2))
    backend.db.put(entry_key(2), backend.get(entry_key(1)))
    backend, wal = reopen(backend)
    try:
        assert (wal.last_index, wal.dropped_tail) == (1, 1)
    finally:
        backend.close()


CRASHING_WRITER = """
import os, sys
from etcdpy.server.storage.backend import Backend
from etcdpy.server.storage.wal import WAL, Entry, EntryType, HardState
wal = WAL.open(Backend(sys.argv[1]))
for i in range(1, 11):
    wal.save([Entry(i, 2, EntryType.NORMAL, b"x" * 100)], HardState(2, 1, i))
os._exit(0)  # no close: the process dies with LevelDB's log as the only record
"""


def test_a_torn_leveldb_log_record_loses_only_the_last_batch(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(tmp_path)], check=True, env=env)
    logs = sorted((tmp_path / "member" / "db").glob("*.log"))
    assert logs, "LevelDB kept no log file to tear"
    os.truncate(logs[-1], logs[-1].stat().st_size - 20)  # tear the last record, as a crash mid-write would
    backend = Backend(tmp_path)
    try:
        wal = WAL.open(backend)
        assert wal.last_index == 9
        assert wal.hard_state == HardState(2, 1, 9)  # written in the same batch as entry 9, so consistent
        assert [e.index for e in wal.entries(1, 11)] == list(range(1, 10))
    finally:
        backend.close()
