"""Backend: the member's one LevelDB (plyvel) under ``<data-dir>/member/db``.

It owns opening (with clear errors for a data dir held by another process or a
foreign/corrupt one), the data-dir format marker, write batches and snapshots.
Raft log writes are synced (``sync=True``); apply batches are not, because the
raft log is the durability point and LevelDB's own log keeps batches ordered.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import plyvel

from etcdpy.server.storage import schema


class BackendError(Exception):
    """The data directory cannot be used; the message says why and what to do."""


class Backend:
    """One open LevelDB plus helpers for the keyspaces declared in `schema`."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / "member" / "db"
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self.db: Any = plyvel.DB(str(self.path), create_if_missing=True, paranoid_checks=True)
        except plyvel.IOError as exc:
            if "lock" in str(exc).lower():
                raise BackendError(
                    f"data dir {self.data_dir} is in use by another running server (LevelDB lock held)"
                ) from exc
            raise BackendError(f"cannot open data dir {self.data_dir}: {exc}") from exc
        except plyvel.CorruptionError as exc:
            raise BackendError(f"data dir {self.data_dir} is corrupt: {exc}") from exc
        self._check_format()

    def _check_format(self) -> None:
        key = schema.META + schema.META_FORMAT
        found = self.db.get(key)
        if found is None:
            if any(True for _ in self.db.iterator(include_value=False)):
                raise BackendError(
                    f"data dir {self.data_dir} holds a foreign LevelDB (no etcdpy format marker)"
                )
            self.db.put(key, schema.FORMAT_VERSION, sync=True)
        elif found != schema.FORMAT_VERSION:
            raise BackendError(
                f"data dir {self.data_dir} has format {found!r}, this etcdpy reads {schema.FORMAT_VERSION!r}"
            )

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.db.get(key)
        return value

    @contextmanager
    def batch(self, *, sync: bool) -> Iterator[Any]:
        """Yield a write batch committed atomically on exit (synced if asked)."""
        with self.db.write_batch(sync=sync, transaction=True) as wb:
            yield wb

    def snapshot(self) -> Any:
        """A consistent read view; call ``.close()`` (or use as a context manager) when done."""
        return self.db.snapshot()

    def size_bytes(self) -> int:
        """Bytes the database occupies on disk."""
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())

    def close(self) -> None:
        if not self.db.closed:
            self.db.close()
