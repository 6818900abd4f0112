"""Lessor: grant, revoke and checkpoint applied in the batch, persisted, counted down with fake time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from lease_support import Member

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server.lease import MAX_LEASE_TTL, LeaseDriver, min_lease_ttl

pb = rpc_pb2


@pytest.fixture
def member(tmp_path: Path) -> Member:
    m = Member(tmp_path)
    m.lessor.promote()
    return m


def driver(m: Member, *, leading: bool = True) -> LeaseDriver:
    return LeaseDriver(m.lessor, m.propose, is_leader=lambda: leading, checkpoint_interval=60.0)


def test_min_ttl_is_one_and_a_half_election_timeouts_rounded_up() -> None:
    assert min_lease_ttl(1000) == 2
    assert min_lease_ttl(2000) == 3
    assert min_lease_ttl(100) == 1


def test_grant_raises_a_short_ttl_to_the_minimum(member: Member) -> None:
    resp = member.grant(7, 1)
    assert resp.ID == 7
    assert resp.TTL == 2  # the fixture's minimum
    assert member.lessor.time_to_live(7, keys=False).grantedTTL == 2


def test_grant_refuses_too_large_ttl_and_existing_id(member: Member) -> None:
    with pytest.raises(errors.ErrLeaseTTLTooLarge):
        member.grant(7, MAX_LEASE_TTL + 1)
    with pytest.raises(errors.ErrLeaseTTLTooLarge):  # also at apply, for a request proposed elsewhere
        member.apply(lease_grant=pb.LeaseGrantRequest(ID=7, TTL=MAX_LEASE_TTL + 1))
    member.grant(7, 10)
    with pytest.raises(errors.ErrLeaseExist):
        member.grant(7, 10)
    with pytest.raises(errors.ErrLeaseExist):
        member.apply(lease_grant=pb.LeaseGrantRequest(ID=7, TTL=10))


def test_put_with_unknown_lease_fails_and_writes_nothing(member: Member) -> None:
    with pytest.raises(errors.ErrLeaseNotFound):
        member.put(b"a", lease=99)
    assert member.get(b"a") is None


def test_revoke_deletes_every_attached_key_in_one_revision(member: Member) -> None:
    member.grant(7, 10)
    member.put(b"b", lease=7)
    member.put(b"a", lease=7)
    member.put(b"c")  # no lease: survives
    rev = member.applier.current_revision
    member.events.clear()
    resp = member.apply(lease_revoke=pb.LeaseRevokeRequest(ID=7))
    assert resp.header.revision == rev + 1
    assert [(r, [(e.type, e.kv.key, e.prev_kv.value) for e in evs]) for r, evs in member.events] == [
        (rev + 1, [(kv_pb2.Event.DELETE, b"a", b"v"), (kv_pb2.Event.DELETE, b"b", b"v")])
    ]
    assert member.get(b"a") is None and member.get(b"b") is None and member.get(b"c") is not None
    assert member.lessor.time_to_live(7, keys=True).TTL == -1
    with pytest.raises(errors.ErrLeaseNotFound):
        member.apply(lease_revoke=pb.LeaseRevokeRequest(ID=7))


def test_revoking_a_lease_without_keys_takes_no_revision(member: Member) -> None:
    member.grant(7, 10)
    rev = member.applier.current_revision
    member.apply(lease_revoke=pb.LeaseRevokeRequest(ID=7))
    assert member.applier.current_revision == rev and not member.lessor.exists(7)


def test_keys_follow_puts_and_deletes(member: Member) -> None:
    member.grant(7, 10)
    member.grant(8, 10)
    member.put(b"a", lease=7)
    member.put(b"b", lease=7)
    member.put(b"a", lease=8)  # moves a to lease 8
    member.apply(delete_range=pb.DeleteRangeRequest(key=b"b"))
    assert list(member.lessor.time_to_live(7, keys=True).keys) == []
    assert list(member.lessor.time_to_live(8, keys=True).keys) == [b"a"]
    assert list(member.lessor.time_to_live(8, keys=False).keys) == []


def test_leases_and_keys_survive_a_restart(member: Member) -> None:
    member.grant(7, 30)
    member.grant(9, 40)
    member.put(b"k", lease=9)
    member.reopen()
    assert [s.ID for s in member.lessor.leases().leases] == [7, 9]
    ttl = member.lessor.time_to_live(9, keys=True)
    assert (ttl.grantedTTL, list(ttl.keys)) == (40, [b"k"])
    member.apply(lease_revoke=pb.LeaseRevokeRequest(ID=9))
    assert member.get(b"k") is None


def test_time_to_live_counts_down_and_truncates(member: Member) -> None:
    member.grant(7, 10)
    member.clock.advance(2.5)
    assert member.lessor.time_to_live(7, keys=False).TTL == 7


def test_expired_lease_is_revoked_through_a_proposal_not_before(member: Member) -> None:
    member.grant(7, 5)
    member.put(b"a", lease=7)
    d = driver(member)
    member.clock.advance(4.9)
    asyncio.run(d.step())
    assert member.get(b"a") is not None
    member.clock.advance(0.2)

    async def expire() -> None:
        await d.step()
        await asyncio.gather(*d._revokes)

    asyncio.run(expire())
    assert member.get(b"a") is None and not member.lessor.exists(7)
    assert member.events[-1][1][0].type == kv_pb2.Event.DELETE


def test_followers_never_revoke(member: Member) -> None:
    member.grant(7, 5)
    member.clock.advance(60)
    asyncio.run(driver(member, leading=False).step())
    assert member.lessor.exists(7) and not member.lessor.is_primary


def test_keep_alive_restarts_the_countdown(member: Member) -> None:
    member.grant(7, 5)
    d = driver(member)
    member.clock.advance(4)
    assert asyncio.run(d.keep_alive(7)) == 5
    member.clock.advance(4)
    assert member.lessor.expired(3.0, 10) == []
    member.clock.advance(1.5)
    assert member.lessor.expired(3.0, 10) == [7]


def test_keep_alive_renews_only_after_leadership_is_ensured(member: Member) -> None:
    member.grant(7, 5)
    asked: list[int] = []

    async def deposed() -> None:  # a ReadIndex round on a leader that was deposed while it stalled
        asked.append(7)
        raise errors.ErrLeaderChanged()

    d = LeaseDriver(member.lessor, member.propose, is_leader=lambda: True, ensure_leadership=deposed)
    member.clock.advance(4)
    with pytest.raises(errors.ErrLeaderChanged):
        asyncio.run(d.keep_alive(7))
    assert asked == [7]
    member.clock.advance(1.5)
    assert member.lessor.expired(3.0, 10) == [7], "the refused keep-alive renewed nothing"


def test_keep_alive_of_expired_or_unknown_lease_is_not_found(member: Member) -> None:
    member.grant(7, 5)
    member.clock.advance(6)
    with pytest.raises(errors.ErrLeaseNotFound):
        member.lessor.renew(7)
    with pytest.raises(errors.ErrLeaseNotFound):
        member.lessor.renew(8)


def test_only_the_leader_renews(tmp_path: Path) -> None:
    m = Member(tmp_path)
    m.grant(7, 5)
    with pytest.raises(errors.ErrNotLeader):
        m.lessor.renew(7)


def test_a_new_leader_counts_down_from_the_checkpoint(member: Member) -> None:
    member.grant(7, 10)
    member.put(b"a", lease=7)
    member.clock.advance(6)
    asyncio.run(driver(member).propose_checkpoints())
    assert member.lessor.lookup(7) is not None and member.lessor.lookup(7).remaining_ttl == 4  # type: ignore[union-attr]
    member.reopen()  # leadership lost with the process; the next leader promotes
    member.lessor.promote()
    member.clock.advance(3.9)
    assert member.lessor.expired(3.0, 10) == []
    member.clock.advance(0.2)
    assert member.lessor.expired(3.0, 10) == [7]


def test_keep_alive_clears_the_checkpoint_through_the_log(member: Member) -> None:
    member.grant(7, 10)
    d = driver(member)
    member.clock.advance(6)
    asyncio.run(d.propose_checkpoints())
    asyncio.run(d.keep_alive(7))
    member.reopen()
    member.lessor.promote()
    member.clock.advance(9.9)
    assert member.lessor.expired(3.0, 10) == []


def test_checkpoints_are_proposed_on_the_interval(member: Member) -> None:
    member.grant(7, 100)
    d = driver(member)
    asyncio.run(d.step())
    member.clock.advance(61)
    asyncio.run(d.step())
    lease = member.lessor.lookup(7)
    assert lease is not None and lease.remaining_ttl == 39


def test_an_expired_revoke_is_reproposed_only_after_the_retry_interval(member: Member) -> None:
    member.grant(7, 5)
    member.clock.advance(5)
    assert member.lessor.expired(3.0, 10) == [7]
    member.clock.advance(1)
    assert member.lessor.expired(3.0, 10) == []
    member.clock.advance(2.5)
    assert member.lessor.expired(3.0, 10) == [7]
