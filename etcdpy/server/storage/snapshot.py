"""State snapshots: the member's state keyspaces as a stream of records, and installing one.

A snapshot is every key of the database except the raft log (``w``), raft state
(``s``) and what is the receiver's own (its member ID, the format marker): the
MVCC keyspaces, leases, auth, members and the applied index, read from one
consistent LevelDB snapshot.  Records are ``len(key) (4) | key | len(value) (4) |
value``, cut into chunks of about `CHUNK_BYTES`.

`install` adds the replacement of the state to the caller's write batch (the one
that also records the snapshot point in the raft log), so a crash leaves the old
state or the new one, never a mix; the caller then reloads the applier.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Any

from etcdpy.server.storage import schema
from etcdpy.server.storage.backend import Backend

CHUNK_BYTES = 1 << 20
_LEN = struct.Struct(">I")
_LOCAL_KEYS = frozenset({schema.META + schema.META_MEMBER_ID, schema.META + schema.META_FORMAT})
_LOCAL_PREFIXES = (schema.WAL, schema.RAFT_STATE)


def _is_state(key: bytes) -> bool:
    return not key.startswith(_LOCAL_PREFIXES) and key not in _LOCAL_KEYS


def state_chunks(backend: Backend, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The state keyspaces from one consistent snapshot, as chunks of encoded records."""
    return _chunks(backend.db.snapshot(), chunk_bytes)


def open_state(backend: Backend, chunk_bytes: int = CHUNK_BYTES) -> tuple[int, Iterator[bytes]]:
    """Take a consistent snapshot now: (the applied index it holds, its chunks).

    The stream a follower installs must be labelled with the index of the state it
    holds, not with the (older) raft snapshot point: a follower that recorded the
    older index would find its store ahead of its log after a crash.
    """
    snap = backend.db.snapshot()
    raw = snap.get(schema.META + schema.META_APPLIED_INDEX)
    return (int.from_bytes(raw, "big") if raw is not None else 0), _chunks(snap, chunk_bytes)


def _chunks(snap: Any, chunk_bytes: int) -> Iterator[bytes]:
    try:
        parts: list[bytes] = []
        size = 0
        for key, value in snap.iterator():
            if not _is_state(key):
                continue
            parts += (_LEN.pack(len(key)), key, _LEN.pack(len(value)), value)
            size += 8 + len(key) + len(value)
            if size >= chunk_bytes:
                yield b"".join(parts)
                parts, size = [], 0
        if parts:
            yield b"".join(parts)
    finally:
        snap.close()


def decode_records(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) records of a chunk stream (a record never spans chunks)."""
    for chunk in chunks:
        view = memoryview(chunk)
        pos = 0
        while pos < len(view):
            (klen,) = _LEN.unpack_from(view, pos)
            key = bytes(view[pos + 4 : pos + 4 + klen])
            pos += 4 + klen
            (vlen,) = _LEN.unpack_from(view, pos)
            value = bytes(view[pos + 4 : pos + 4 + vlen])
            pos += 4 + vlen
            yield key, value


def install(backend: Backend, chunks: Iterable[bytes], batch: Any) -> None:
    """Add the replacement of every state key by the snapshot's to `batch` (the caller writes it)."""
    for key in backend.db.iterator(include_value=False):
        if _is_state(key):
            batch.delete(key)
    for key, value in decode_records(chunks):
        if _is_state(key):
            batch.put(key, value)
