"""Storage failures on the write path: which ones raise NOSPACE or CORRUPT, and what the operator reads."""

from __future__ import annotations

import errno

import plyvel
import pytest

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.server.storage.failure import classify


def _raised_from(cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise RuntimeError("write path") from inner
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        plyvel.IOError(b"IO error: /d/member/db/000012.log: No space left on device"),
        _raised_from(OSError(errno.ENOSPC, "No space left on device")),
    ],
    ids=["oserror", "leveldb", "wrapped"],
)
def test_a_full_disk_raises_nospace_and_says_what_to_do(exc: BaseException) -> None:
    failure = classify(exc, "/data/m1")
    assert failure is not None and failure.alarm == pb.NOSPACE
    assert failure.message.startswith("no space left on device writing the data dir /data/m1")
    assert "nothing it could not save was acknowledged" in failure.message
    assert "etcdpy alarm disarm" in failure.message


def test_leveldb_corruption_raises_corrupt_with_the_recovery_steps() -> None:
    failure = classify(plyvel.CorruptionError(b"Corruption: block checksum mismatch"), "/data/m1")
    assert failure is not None and failure.alarm == pb.CORRUPT
    assert "data dir /data/m1 is corrupt" in failure.message
    assert "etcdpy member remove" in failure.message


@pytest.mark.parametrize(
    "exc",
    [OSError(errno.EIO, "I/O error"), RuntimeError("a bug"), plyvel.IOError(b"IO error: permission denied")],
)
def test_other_failures_raise_no_alarm(exc: BaseException) -> None:
    assert classify(exc, "/data/m1") is None
