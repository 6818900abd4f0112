"""Flow control: Progress states and the inflight window."""

from __future__ import annotations

import pytest

from etcdpy.raft.inflights import Inflights
from etcdpy.raft.progress import Progress, ProgressState


def progress(state: ProgressState, match: int, next_index: int, window: int = 3) -> Progress:
    pr = Progress(next_index, Inflights(window), match=match)
    if state is ProgressState.REPLICATE:
        pr.become_replicate()
        pr.next = next_index
    elif state is ProgressState.SNAPSHOT:
        pr.become_snapshot(next_index - 1)
    return pr


def test_inflight_window() -> None:
    w = Inflights(3)
    for i in (5, 7, 9):
        assert not w.full()
        w.add(i)
    assert w.full()
    with pytest.raises(AssertionError):
        w.add(11)
    w.free_le(6)  # acknowledges the message ending at 5
    assert (w.count(), w.full()) == (2, False)
    w.free_first_one()
    assert w.count() == 1
    w.free_le(100)
    assert w.count() == 0


def test_inflight_byte_limit() -> None:
    w = Inflights(10, max_bytes=100)
    w.add(1, 60)
    assert not w.full()
    w.add(2, 60)
    assert w.full()
    w.free_le(1)
    assert not w.full()


def test_probe_sends_one_message_at_a_time() -> None:
    pr = progress(ProgressState.PROBE, 3, 4)
    assert not pr.is_paused()
    pr.sent_entries(6, 0)
    assert pr.is_paused() and pr.next == 4  # probing does not advance next optimistically
    assert pr.maybe_update(6)
    assert not pr.is_paused() and (pr.match, pr.next) == (6, 7)


def test_replicate_pipelines_until_the_window_is_full() -> None:
    pr = progress(ProgressState.REPLICATE, 3, 4)
    for last in (5, 7, 9):
        assert not pr.is_paused()
        pr.sent_entries(last, 0)
        assert pr.next == last + 1  # optimistic
    assert pr.is_paused()
    pr.maybe_update(5)
    pr.inflights.free_le(5)
    assert not pr.is_paused()


def test_snapshot_state_pauses_and_resumes_after_the_snapshot() -> None:
    pr = progress(ProgressState.SNAPSHOT, 3, 11)  # snapshot at 10 in flight
    assert pr.is_paused() and pr.pending_snapshot == 10
    pr.become_probe()
    assert (pr.state, pr.next) == (ProgressState.PROBE, 11)  # resume after the snapshot


@pytest.mark.parametrize(
    ("state", "match", "next_index", "rejected", "hint", "ok", "want_next"),
    [
        # Replicate: a rejection at or below match is stale; otherwise fall back to match+1.
        (ProgressState.REPLICATE, 5, 10, 5, 5, False, 10),
        (ProgressState.REPLICATE, 5, 10, 9, 9, True, 6),
        # Probe: only the rejection of the probe just sent (at next-1) counts.
        (ProgressState.PROBE, 0, 10, 5, 5, False, 10),
        (ProgressState.PROBE, 0, 10, 9, 9, True, 9),
        (ProgressState.PROBE, 0, 10, 9, 4, True, 5),  # the follower's hint skips ahead
        (ProgressState.PROBE, 3, 10, 9, 0, True, 4),  # never below match+1
    ],
)
def test_maybe_decr_to(
    state: ProgressState, match: int, next_index: int, rejected: int, hint: int, ok: bool, want_next: int
) -> None:
    pr = progress(state, match, next_index)
    assert pr.maybe_decr_to(rejected, hint) is ok
    assert pr.next == want_next
