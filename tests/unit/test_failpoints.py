"""The failpoint spec parser and the firing rules (index threshold, hit counting)."""

from __future__ import annotations

import errno
from collections.abc import Iterator

import pytest

from etcdpy.server import failpoints


@pytest.fixture(autouse=True)
def disarm() -> Iterator[None]:
    yield
    failpoints.arm("")


def test_parse_reads_actions_thresholds_and_pause_seconds() -> None:
    armed = failpoints.parse("raftAfterSave=crash@120; beforeSendWatchResponse=pause(2.5);beforeApply=enospc")
    assert armed["raftAfterSave"] == failpoints.Failpoint("crash", 120)
    assert armed["beforeSendWatchResponse"] == failpoints.Failpoint("pause", 0, 2.5)
    assert armed["beforeApply"] == failpoints.Failpoint("enospc", 0)


@pytest.mark.parametrize(
    "spec", ["nosuchPoint=crash", "raftAfterSave=explode", "raftAfterSave", "beforeApply=pause"]
)
def test_parse_refuses_unknown_points_and_malformed_entries(spec: str) -> None:
    with pytest.raises(ValueError):
        failpoints.parse(spec)


def test_an_index_point_fires_only_at_or_past_its_index() -> None:
    failpoints.arm("beforeApply=enospc@10")
    failpoints.hit("beforeApply", 9)
    failpoints.hit("afterApply", 50)  # not armed
    with pytest.raises(OSError) as raised:
        failpoints.hit("beforeApply", 10)
    assert raised.value.errno == errno.ENOSPC


def test_a_point_without_an_index_counts_its_hits() -> None:
    failpoints.arm("compactAfterCommitBatch=enospc@3")
    failpoints.hit("compactAfterCommitBatch")
    failpoints.hit("compactAfterCommitBatch")
    with pytest.raises(OSError):
        failpoints.hit("compactAfterCommitBatch")
