"""Table tests for quorum: majority and joint commit indexes and vote results."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etcdpy.raft.quorum import JointConfig, MajorityConfig, VoteResult

NO_CONSTRAINT = (1 << 64) - 1


def acked_from(acks: dict[int, int]):  # type: ignore[no-untyped-def]
    return acks.get


@pytest.mark.parametrize(
    ("voters", "acks", "want"),
    [
        ((), {}, NO_CONSTRAINT),  # an empty config constrains nothing
        ((1,), {}, 0),
        ((1,), {1: 5}, 5),
        ((1, 2), {1: 5, 2: 3}, 3),  # two voters: both needed
        ((1, 2, 3), {1: 5}, 0),
        ((1, 2, 3), {1: 5, 2: 5}, 5),
        ((1, 2, 3), {1: 5, 2: 3, 3: 1}, 3),
        ((1, 2, 3), {1: 5, 2: 3, 4: 9}, 3),  # acks from non-voters do not count
        ((1, 2, 3, 4), {1: 4, 2: 3, 3: 2, 4: 1}, 2),  # four voters: three needed
        ((1, 2, 3, 4, 5), {1: 5, 2: 4, 3: 3, 4: 2, 5: 1}, 3),
        ((1, 2, 3, 4, 5), {1: 9, 2: 9}, 0),
    ],
)
def test_majority_committed_index(voters: tuple[int, ...], acks: dict[int, int], want: int) -> None:
    assert MajorityConfig(voters).committed_index(acked_from(acks)) == want


@pytest.mark.parametrize(
    ("incoming", "outgoing", "acks", "want"),
    [
        ((1, 2, 3), (), {1: 5, 2: 4, 3: 3}, 4),  # not joint: the incoming config alone
        ((1, 2, 3), (1, 2, 3), {1: 5, 2: 4, 3: 3}, 4),
        ((1, 2, 4), (1, 2, 3), {1: 5, 2: 1, 3: 5, 4: 1}, 1),  # old majority 1,3; new has only 1
        ((1, 2, 4), (1, 2, 3), {1: 5, 2: 1, 3: 5, 4: 5}, 5),
        ((4, 5, 6), (1, 2, 3), {1: 7, 2: 7, 3: 7, 4: 2, 5: 2}, 2),  # disjoint halves: the minimum
    ],
)
def test_joint_committed_index(
    incoming: tuple[int, ...], outgoing: tuple[int, ...], acks: dict[int, int], want: int
) -> None:
    assert JointConfig(incoming, outgoing).committed_index(acked_from(acks)) == want


W, L, P = VoteResult.WON, VoteResult.LOST, VoteResult.PENDING


@pytest.mark.parametrize(
    ("voters", "votes", "want"),
    [
        ((), {}, W),
        ((1,), {}, P),
        ((1,), {1: True}, W),
        ((1,), {1: False}, L),
        ((1, 2, 3), {1: True}, P),
        ((1, 2, 3), {1: True, 2: True}, W),
        ((1, 2, 3), {1: True, 2: False}, P),
        ((1, 2, 3), {1: True, 2: False, 3: False}, L),
        ((1, 2, 3), {4: True, 5: True}, P),  # non-voters' votes do not count
        ((1, 2, 3, 4), {1: True, 2: True}, P),
        ((1, 2, 3, 4), {1: True, 2: True, 3: False, 4: False}, L),
    ],
)
def test_majority_vote_result(voters: tuple[int, ...], votes: dict[int, bool], want: VoteResult) -> None:
    assert MajorityConfig(voters).vote_result(votes) is want


@pytest.mark.parametrize(
    ("incoming", "outgoing", "votes", "want"),
    [
        ((1, 2, 3), (), {1: True, 2: True}, W),
        ((1, 2, 3), (3, 4, 5), {1: True, 2: True}, P),  # won the incoming half only
        ((1, 2, 3), (3, 4, 5), {1: True, 2: True, 4: True, 5: True}, W),
        ((1, 2, 3), (3, 4, 5), {1: True, 2: True, 4: False, 5: False}, L),  # lost the outgoing half
        ((1, 2, 3), (3, 4, 5), {1: False, 2: False, 4: True, 5: True}, L),
        ((1, 2, 3), (3, 4, 5), {3: True}, P),
    ],
)
def test_joint_vote_result(
    incoming: tuple[int, ...], outgoing: tuple[int, ...], votes: dict[int, bool], want: VoteResult
) -> None:
    assert JointConfig(incoming, outgoing).vote_result(votes) is want


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.integers(1, 7), st.integers(0, 20), min_size=1))
def test_majority_committed_index_matches_definition(acks: dict[int, int]) -> None:
    """The committed index is the largest i held (acked >= i) by a majority of the voters."""
    voters = MajorityConfig(acks)
    quorum = len(voters) // 2 + 1
    want = max(i for i in range(0, 21) if sum(1 for a in acks.values() if a >= i) >= quorum)
    assert voters.committed_index(acked_from(acks)) == want


@settings(max_examples=200, deadline=None)
@given(
    st.frozensets(st.integers(1, 6), min_size=1),
    st.dictionaries(st.integers(1, 6), st.booleans()),
)
def test_majority_vote_result_matches_definition(voters: frozenset[int], votes: dict[int, bool]) -> None:
    """WON with a majority of yes; LOST once a majority is out of reach; else PENDING."""
    cfg = MajorityConfig(voters)
    yes = sum(1 for v in voters if votes.get(v) is True)
    no = sum(1 for v in voters if votes.get(v) is False)
    quorum = len(voters) // 2 + 1
    want = W if yes >= quorum else (L if len(voters) - no < quorum else P)
    assert cfg.vote_result(votes) is want
