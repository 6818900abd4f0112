"""MemberOps: the Cluster service's membership changes and MoveLeader, with etcd's checks.

Each change is one raft ConfChange (v1, the Member as its context, as etcd
proposes them) and returns once this member applied it.  The checks, in etcd's
order and with its errors:

- add: peer URLs not used by another member (ErrPeerURLExist); learners at most
  ``max_learners`` (ErrTooManyLearners); strict check: the started voters must
  stay a quorum of the voters after adding one (ErrMemberNotEnoughStarted);
- remove: the member exists (ErrMemberNotFound); strict check: the started
  voters left must be a quorum of the voters left (ErrMemberNotEnoughStarted),
  and the members this one hears from must stay a quorum (ErrUnhealthy);
- promote: a learner (ErrMemberNotLearner) that the leader sees within 10% of
  its commit index (ErrLearnerNotReady); a follower forwards the request to the leader;
- move leader: only the leader (ErrNotLeader), to a voter (ErrBadLeaderTransferee);
  returns once the transferee leads (ErrTimeout if it does not within the request timeout).

A "started" member is one that published its name (etcd's rule).
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

import grpc

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.api.raftpb import peer_pb2, peer_pb2_grpc
from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft import NONE, ProposalDropped
from etcdpy.server.consensus.replication import Replication
from etcdpy.server.consensus.transport import peer_channel

HEALTH_INTERVAL = 5.0  # etcd: a peer counts as healthy once connected this many seconds
LEARNER_READY_PERCENT = 0.9  # etcd: a learner within 90% of the leader's commit index may be promoted


def _check_urls(peer_urls: list[str]) -> None:
    """Peer URLs must be http(s)://host:port, as etcd's types.NewURLs requires (ErrMemberBadURLs)."""
    if not peer_urls:
        raise errors.ErrMemberBadURLs()
    for url in peer_urls:
        try:
            parsed = urlsplit(url)
            port = parsed.port
        except ValueError:
            raise errors.ErrMemberBadURLs() from None
        if parsed.scheme not in ("http", "https") or not parsed.hostname or port is None or parsed.path:
            raise errors.ErrMemberBadURLs()


def new_member_id(peer_urls: Iterable[str], cluster_token: str) -> int:
    """An ID for a member being added: peer URLs, token and the time, hashed (etcd's NewMember)."""
    digest = hashlib.sha1(("".join(sorted(peer_urls)) + cluster_token + str(time.time())).encode()).digest()
    return int(struct.unpack_from(">Q", digest)[0])


class MemberOps:
    """Membership changes proposed through one member's replication."""

    def __init__(
        self,
        replication: Replication,
        *,
        strict_reconfig_check: bool,
        max_learners: int,
        request_timeout: float,
        cluster_token: str,
    ) -> None:
        self.repl = replication
        self.strict = strict_reconfig_check
        self.max_learners = max_learners
        self.request_timeout = request_timeout
        self.cluster_token = cluster_token

    @property
    def members(self) -> dict[int, rpc_pb2.Member]:
        return self.repl.cluster.members

    def _active(self, member_id: int, for_interval: float = HEALTH_INTERVAL) -> bool:
        """Whether this member has been connected to `member_id` for `for_interval` s (itself: always)."""
        if member_id == self.repl.cluster.local_id:
            return True
        since = self.repl.peer_connected_since(member_id)
        return since is not None and since <= time.monotonic() - for_interval

    def _started_voters(self, ids: Iterable[int]) -> int:
        return sum(1 for i in ids if self.members[i].name and not self.members[i].isLearner)

    async def add(self, peer_urls: list[str], is_learner: bool) -> rpc_pb2.Member:
        _check_urls(peer_urls)
        used = {u for m in self.members.values() for u in m.peerURLs}
        if used & set(peer_urls):
            raise errors.ErrPeerURLExist()
        if is_learner and sum(1 for m in self.members.values() if m.isLearner) >= self.max_learners:
            raise errors.ErrTooManyLearners()
        if self.strict:
            voters = [i for i, m in self.members.items() if not m.isLearner]
            started, after = self._started_voters(voters), len(voters) + 1
            # etcd lets a one-member cluster grow to two (restoring a cluster from one member's data).
            if not is_learner and not (started == 1 and after == 2) and started < after // 2 + 1:
                raise errors.ErrMemberNotEnoughStarted()
            if not all(self._active(i) for i in voters):
                raise errors.ErrUnhealthy()
        member = rpc_pb2.Member(
            ID=new_member_id(peer_urls, self.cluster_token), peerURLs=sorted(peer_urls), isLearner=is_learner
        )
        kind = pb.ConfChangeAddLearnerNode if is_learner else pb.ConfChangeAddNode
        await self._change(pb.ConfChange(type=kind, node_id=member.ID, context=member.SerializeToString()))
        return member

    async def remove(self, member_id: int) -> None:
        member = self.members.get(member_id)
        if member is None:
            raise errors.ErrMemberNotFound()
        if self.strict and not member.isLearner:
            voters = [i for i, m in self.members.items() if not m.isLearner and i != member_id]
            if self._started_voters(voters) < len(voters) // 2 + 1:
                raise errors.ErrMemberNotEnoughStarted()
            # A member that is down is safe to remove: it is not part of the active quorum.
            if self._active(member_id, for_interval=0):
                all_voters = [i for i, m in self.members.items() if not m.isLearner]
                active = sum(1 for i in all_voters if self._active(i))
                if active - 1 < 1 + (len(all_voters) - 1) // 2:
                    raise errors.ErrUnhealthy()
        await self._change(pb.ConfChange(type=pb.ConfChangeRemoveNode, node_id=member_id))

    async def update(self, member_id: int, peer_urls: list[str]) -> None:
        _check_urls(peer_urls)
        member = self.members.get(member_id)
        if member is None:
            raise errors.ErrMemberNotFound()
        used = {u for i, m in self.members.items() if i != member_id for u in m.peerURLs}
        if used & set(peer_urls):
            raise errors.ErrPeerURLExist()
        updated = rpc_pb2.Member(ID=member_id, peerURLs=sorted(peer_urls), isLearner=member.isLearner)
        await self._change(
            pb.ConfChange(
                type=pb.ConfChangeUpdateNode, node_id=member_id, context=updated.SerializeToString()
            )
        )

    async def promote(self, member_id: int) -> None:
        """Promote a learner; a follower asks the leader, which alone knows the learner's progress."""
        if not self.repl.is_leader():
            await self._forward_promote(member_id)
            return
        member = self.members.get(member_id)
        if member is None:
            raise errors.ErrMemberNotFound()
        if not member.isLearner:
            raise errors.ErrMemberNotLearner()
        matches = self.repl.match_indexes()
        leader_match = matches.get(self.repl.cluster.local_id, 0)
        if member_id not in matches or matches[member_id] < leader_match * LEARNER_READY_PERCENT:
            raise errors.ErrLearnerNotReady()
        promoted = rpc_pb2.Member()
        promoted.CopyFrom(member)
        promoted.isLearner = False
        await self._change(
            pb.ConfChange(type=pb.ConfChangeAddNode, node_id=member_id, context=promoted.SerializeToString())
        )

    async def _forward_promote(self, member_id: int) -> None:
        leader = self.members.get(self.repl.leader_id)
        if leader is None:
            raise errors.ErrNoLeader()
        try:
            channel = await peer_channel(self.repl.transport.dialer, leader.peerURLs)
        except OSError:  # a TLS file unreadable right now, or an auto-tls leader that showed no certificate
            raise errors.ErrNoLeader() from None
        async with channel:
            stub = peer_pb2_grpc.PeerStub(channel)  # type: ignore[no-untyped-call]
            try:
                await stub.Promote(peer_pb2.PromoteRequest(member_id=member_id), timeout=self.request_timeout)
            except grpc.aio.AioRpcError as exc:
                raise errors.from_status(exc.code(), exc.details() or "") from None

    async def _change(self, cc: pb.ConfChange) -> None:
        try:
            await asyncio.wait_for(self.repl.change_membership(cc), self.request_timeout)
        except ProposalDropped:
            raise errors.ErrNoLeader() from None
        except TimeoutError:
            raise (errors.ErrNoLeader() if self.repl.leader_id == NONE else errors.ErrTimeout()) from None

    async def move_leader(self, target: int) -> None:
        if not self.repl.is_leader():
            raise errors.ErrNotLeader()
        member = self.members.get(target)
        if member is None or member.isLearner:
            raise errors.ErrBadLeaderTransferee()
        if target == self.repl.cluster.local_id:
            return
        self.repl.transfer_leader(target)
        try:
            await asyncio.wait_for(self.repl.wait_leader_is(target), self.request_timeout)
        except TimeoutError:
            raise errors.ErrTimeout() from None
