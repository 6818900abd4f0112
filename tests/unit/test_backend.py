"""Backend: opening rules for data dirs, atomic batches, snapshots."""

from __future__ import annotations

from pathlib import Path

import plyvel
import pytest

from etcdpy.server.storage import schema
from etcdpy.server.storage.backend import Backend, BackendError


def test_a_new_data_dir_gets_the_format_marker_and_reopens(tmp_path: Path) -> None:
    backend = Backend(tmp_path)
    assert (tmp_path / "member" / "db").is_dir()
    assert backend.get(schema.META + schema.META_FORMAT) == schema.FORMAT_VERSION
    backend.db.put(b"x", b"1")
    backend.close()
    again = Backend(tmp_path)
    assert again.get(b"x") == b"1"
    again.close()


def test_a_data_dir_in_use_is_refused(tmp_path: Path) -> None:
    backend = Backend(tmp_path)
    with pytest.raises(BackendError, match="in use"):
        Backend(tmp_path)
    backend.close()


def test_a_foreign_leveldb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "member" / "db"
    path.mkdir(parents=True)
    foreign = plyvel.DB(str(path), create_if_missing=True)
    foreign.put(b"someone", b"else")
    foreign.close()
    with pytest.raises(BackendError, match="foreign"):
        Backend(tmp_path)


def test_another_format_version_is_refused(tmp_path: Path) -> None:
    backend = Backend(tmp_path)
    backend.db.put(schema.META + schema.META_FORMAT, b"etcdpy-data-v999")
    backend.close()
    with pytest.raises(BackendError, match="format"):
        Backend(tmp_path)


def test_a_batch_is_all_or_nothing(tmp_path: Path) -> None:
    backend = Backend(tmp_path)
    with backend.batch(sync=False) as wb:
        wb.put(b"a", b"1")
        wb.put(b"b", b"2")
    assert (backend.get(b"a"), backend.get(b"b")) == (b"1", b"2")
    with pytest.raises(RuntimeError), backend.batch(sync=True) as wb:
        wb.put(b"c", b"3")
        raise RuntimeError("crash inside the batch")
    assert backend.get(b"c") is None
    backend.close()


def test_a_snapshot_does_not_see_later_writes(tmp_path: Path) -> None:
    backend = Backend(tmp_path)
    backend.db.put(b"k", b"old")
    snapshot = backend.snapshot()
    backend.db.put(b"k", b"new")
    assert snapshot.get(b"k") == b"old" and backend.get(b"k") == b"new"
    snapshot.close()
    assert backend.size_bytes() > 0
    backend.close()
