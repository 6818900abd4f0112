"""State snapshots: the member's state keyspaces as a stream of records, spooling and installing one.

A snapshot is every key of the database except the raft log (``w``), raft state
(``s``) and what is the receiver's own (its member ID, the format marker, the
install marker): the MVCC keyspaces, leases, auth, members and the applied index,
read from one consistent LevelDB snapshot.  Records are ``len(key) (4) | key |
len(value) (4) | value`` in key order, cut into chunks of about `CHUNK_BYTES`.

Receiving (`Spool`): the chunks go to ``<data-dir>/member/snap/<index>.<token>.incoming``,
which is fsynced and renamed to ``<index>.<token>.snap`` once the stream's checksum
matched; a failed stream deletes its file.  Nothing of the state is held in memory.  Each
stream keeps its token: a second stream of the same index (another leader, a resend) never
replaces the file an install in progress, or its marker, refers to.

Installing (`install_file`), crash-safe in bounded batches::

    1. put the install marker (meta keyspace: file name, its crc32, the snapshot's
       index, term and conf state), synced;
    2. replace the state by the file's records in batches of about `INSTALL_BATCH_BYTES`
       (a merge of two sorted streams: old keys missing from the file are deleted,
       records that differ are put), unsynced;
    3. the caller's batch that records the snapshot point, log and hard state also
       deletes the marker (synced).

A crash before 1 leaves the old state and log; after 3, the new ones.  In between the
marker is there and the state may be a mix, so `finish_interrupted_install` (run at
start, before anything reads the state) replays step 2 from the file, which is kept
until the marker is gone, and then writes step 3 itself.
"""

from __future__ import annotations

import io
import os
import secrets
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.server.storage import schema
from etcdpy.server.storage.backend import Backend, BackendCorruptError, recovery_advice
from etcdpy.server.storage.raftlog import RaftLogStorage

CHUNK_BYTES = 1 << 20
INSTALL_BATCH_BYTES = 4 << 20  # bytes of keys and values written per install batch
MARKER_KEY = schema.META + schema.META_SNAPSHOT_INSTALL
INCOMING_SUFFIX = ".incoming"
SPOOLED_SUFFIX = ".snap"
_LEN = struct.Struct(">I")
_MARKER_HEAD = struct.Struct(">IH")  # crc32 of the file, length of its name; then the name, the metadata
_OP_BYTES = 16  # what a batch spends per operation besides the key and value
_LOCAL_KEYS = frozenset({schema.META + schema.META_MEMBER_ID, schema.META + schema.META_FORMAT, MARKER_KEY})
_LOCAL_PREFIXES = (schema.WAL, schema.RAFT_STATE)


def _is_state(key: bytes) -> bool:
    return not key.startswith(_LOCAL_PREFIXES) and key not in _LOCAL_KEYS


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
        yield from _read_records(io.BytesIO(chunk), "snapshot chunk")


# ---- receiving: the stream spooled to a file ----


def spool_dir(data_dir: str | os.PathLike[str]) -> Path:
    """Where a member keeps received snapshots: ``<data-dir>/member/snap``."""
    return Path(data_dir) / "member" / "snap"


@dataclass(frozen=True, slots=True)
class SpooledSnapshot:
    """A received snapshot's state, checked and durable in `path` (the stream's data, concatenated)."""

    path: Path
    crc: int  # crc32 of the whole file, as the sender computed it
    size: int


class Spool:
    """One incoming snapshot stream being written to its own ``.incoming`` file.

    `finish` (blocking: fsyncs) renames it to ``<index>.<token>.snap``; `discard` deletes it.
    """

    def __init__(self, directory: Path, index: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.index = index
        # A token of its own: two streams of the same index (two leaders) never share a file.
        self._name = f"{index:016x}.{secrets.token_hex(4)}"
        self.path = directory / f"{self._name}{INCOMING_SUFFIX}"
        self._file = self.path.open("xb")
        self.crc = 0
        self.size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)

    def finish(self) -> SpooledSnapshot:
        """Make the file durable under its final name, its own even beside a copy of the same index."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        final = self.directory / f"{self._name}{SPOOLED_SUFFIX}"
        os.replace(self.path, final)
        fsync_dir(self.directory)
        return SpooledSnapshot(final, self.crc, self.size)

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


def fsync_dir(directory: Path) -> None:
    """Make a directory's entries (files created, renamed or removed in it) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_spooled(directory: Path, keep: Path | None = None) -> list[Path]:
    """Delete every received or incoming snapshot file in `directory` but `keep`; return those deleted."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for path in sorted(directory.iterdir()):
        if path != keep and path.name.endswith((INCOMING_SUFFIX, SPOOLED_SUFFIX)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def file_records(path: Path, buffer_bytes: int = CHUNK_BYTES) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) records of a spooled snapshot, read lazily (about `buffer_bytes` at a time)."""
    with path.open("rb", buffering=buffer_bytes) as f:
        yield from _read_records(f, f"snapshot file {path}")


def _read_records(f: Any, source: str) -> Iterator[tuple[bytes, bytes]]:
    """Records from a binary file object, to its end; ValueError if it ends inside one."""
    while head := f.read(_LEN.size):
        key = _read_field(f, head, source)
        value = _read_field(f, f.read(_LEN.size), source)
        yield key, value


def _read_field(f: Any, head: bytes, source: str) -> bytes:
    if len(head) != _LEN.size:
        raise ValueError(f"{source} ends inside a record")
    (length,) = _LEN.unpack(head)
    data: bytes = f.read(length)
    if len(data) != length:
        raise ValueError(f"{source} ends inside a record")
    return data


def file_crc(path: Path, block_bytes: int = CHUNK_BYTES) -> int:
    crc = 0
    with path.open("rb", buffering=0) as f:
        while block := f.read(block_bytes):
            crc = zlib.crc32(block, crc)
    return crc


# ---- installing in bounded batches, and finishing an interrupted install ----


@dataclass(frozen=True, slots=True)
class InstallMarker:
    """What the marker records: the file (name in the spool dir, crc32) and the snapshot it holds."""

    name: str
    crc: int
    meta: pb.SnapshotMetadata

    def encode(self) -> bytes:
        name = self.name.encode()
        return _MARKER_HEAD.pack(self.crc, len(name)) + name + self.meta.SerializeToString()

    @classmethod
    def decode(cls, raw: bytes) -> InstallMarker:
        crc, length = _MARKER_HEAD.unpack_from(raw)
        start = _MARKER_HEAD.size
        name = raw[start : start + length].decode()
        return cls(name, crc, pb.SnapshotMetadata.FromString(raw[start + length :]))


def read_marker(backend: Backend) -> InstallMarker | None:
    raw = backend.get(MARKER_KEY)
    return InstallMarker.decode(raw) if raw is not None else None


AfterBatch = Callable[[int], None]
"""Called after each install batch is written, with the count so far (tests inject crashes there)."""


def install_file(
    backend: Backend,
    spooled: SpooledSnapshot,
    meta: pb.SnapshotMetadata,
    *,
    batch_bytes: int = INSTALL_BATCH_BYTES,
    after_batch: AfterBatch | None = None,
) -> int:
    """Steps 1 and 2 of an install: the synced marker, then the state replaced in bounded batches.

    The caller's batch that records the snapshot point must delete `MARKER_KEY` (step 3).
    Returns the number of state batches written.  A file that no longer matches its checksum is
    refused before anything is written (ValueError): the old state stays whole.
    """
    if file_crc(spooled.path) != spooled.crc:
        raise ValueError(f"snapshot file {spooled.path} no longer matches its checksum; not installed")
    marker = InstallMarker(spooled.path.name, spooled.crc, meta)
    backend.db.put(MARKER_KEY, marker.encode(), sync=True)
    return replace_state(
        backend, file_records(spooled.path), batch_bytes=batch_bytes, after_batch=after_batch
    )


def replace_state(
    backend: Backend,
    records: Iterable[tuple[bytes, bytes]],
    *,
    batch_bytes: int = INSTALL_BATCH_BYTES,
    after_batch: AfterBatch | None = None,
) -> int:
    """Make the state keyspaces hold exactly `records` (in key order), in unsynced batches of bounded size.

    Repeating it (after a crash part way) gives the same result.  Returns the batches written.
    """
    wb = backend.db.write_batch()
    pending = 0
    written = 0

    def flush() -> None:
        nonlocal pending, written
        wb.write()
        wb.clear()
        pending = 0
        written += 1
        if after_batch is not None:
            after_batch(written)

    def added(op_bytes: int) -> None:
        nonlocal pending
        pending += op_bytes + _OP_BYTES
        if pending >= batch_bytes:
            flush()

    # The iterator reads the store as it was when it was created, whatever the batches write meanwhile.
    old = backend.db.iterator()
    current = _next_state(old)

    def delete_old_before(limit: bytes | None) -> None:
        """Delete the old state keys below `limit` (all that are left if None)."""
        nonlocal current
        while current is not None and (limit is None or current[0] < limit):
            wb.delete(current[0])
            added(len(current[0]))
            current = _next_state(old)

    try:
        previous: bytes | None = None
        for key, value in records:
            if not _is_state(key):
                continue
            if previous is not None and key <= previous:
                raise ValueError(f"snapshot records out of key order at {key!r}")
            previous = key
            delete_old_before(key)
            if current is not None and current[0] == key:
                unchanged = current[1] == value
                current = _next_state(old)
                if unchanged:
                    continue
            wb.put(key, value)
            added(len(key) + len(value))
        delete_old_before(None)
        if pending:
            flush()
    finally:
        old.close()
    return written


def _next_state(iterator: Any) -> tuple[bytes, bytes] | None:
    for key, value in iterator:
        if _is_state(key):
            return key, value
    return None


def finish_interrupted_install(backend: Backend, raftlog: RaftLogStorage) -> pb.SnapshotMetadata | None:
    """At start, before the state is read: finish an install a crash interrupted; drop leftover files.

    With a marker, the state is replaced again from its file and the snapshot point recorded
    with the marker deleted, in the one synced batch the install's caller would have written
    (the log dropped; the hard state keeps its term and vote unless the snapshot's term is
    newer, and commits at least the snapshot index).  Returns the snapshot finished, if any.
    """
    directory = spool_dir(backend.data_dir)
    marker = read_marker(backend)
    meta: pb.SnapshotMetadata | None = None
    if marker is not None:
        path = directory / marker.name
        if not path.is_file() or file_crc(path) != marker.crc:
            raise BackendCorruptError(
                f"data dir {backend.data_dir}: installing snapshot {marker.meta.index} was interrupted and "
                f"its file {path} is missing or damaged, so the state is part old, part new; "
                + recovery_advice(backend.data_dir)
            )
        replace_state(backend, file_records(path))
        meta = marker.meta
        hs = raftlog.hard_state
        term = max(hs.term, meta.term)
        # Nothing that depends on the lost Ready's hard state was sent (votes and acks wait for it).
        hard_state = pb.HardState(
            term=term, vote=hs.vote if term == hs.term else 0, commit=max(hs.commit, meta.index)
        )
        prepared = raftlog.prepare(snapshot=meta, hard_state=hard_state)
        prepared.batch.delete(MARKER_KEY)
        raftlog.write(prepared)
    remove_spooled(directory)
    return meta
