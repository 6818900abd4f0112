"""Replication: a member's RaftNode, PeerTransport, membership and snapshots, wired together.

It is what EtcdServer proposes to and reads commit points from:
``propose(bytes)``, ``run()``/``stop()``, ``term``, ``commit_index``,
``leader_id``, ``is_leader()``, ``leader_changes``, plus
``read_index()``/``wait_applied()`` for linearizable reads.  Runs of committed
entries go to the ``apply_entries`` it is built with (the member's
CommitApplier); conf change entries update raft, the member table and the
transport here, then reach ``apply_entries`` too so the applied index moves
past them.  Snapshots received, installed and sent go through `snapshots.py`
(`ReceivedSnapshots`, `snapshot_to_send`), the code the simulator runs too.

Bootstrap (etcd's raft indexes): a new cluster's members each write the same
log: one committed ConfChangeAddNode per initial member, in member ID order,
term 1, the Member as the change's context.  A member joining an existing
cluster writes nothing: the leader sends it the log (or a snapshot).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

import grpc

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.api.raftpb import peer_pb2, peer_pb2_grpc
from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.server.apply import Applier
from etcdpy.server.consensus import snapshots
from etcdpy.server.consensus.membership import Cluster, MembershipApplier
from etcdpy.server.consensus.node import RaftNode, RaftSettings
from etcdpy.server.consensus.transport import PeerService, PeerTransport, peer_channel
from etcdpy.server.metrics import NO_METRICS, Metrics
from etcdpy.server.storage import schema, snapshot
from etcdpy.server.storage.backend import Backend
from etcdpy.server.storage.raftlog import PreparedWrite, RaftLogStorage
from etcdpy.server.tls import PLAINTEXT, Dialer, explain_failure

log = logging.getLogger("etcdpy.server.consensus.replication")

BOOTSTRAP_TERM = 1
REMOVED_PREFIX = schema.META + b"removed/"  # + member ID: members removed from the cluster


def bootstrap_new_cluster(raftlog: RaftLogStorage, cluster: Cluster) -> None:
    """Write a new member's first log (one committed AddNode per initial member) and the member table.

    One synced batch: a crash leaves a fresh data dir or a bootstrapped one.
    """
    entries = []
    for index, mid in enumerate(sorted(cluster.members), start=1):
        cc = pb.ConfChange(
            type=pb.ConfChangeAddNode, node_id=mid, context=cluster.members[mid].SerializeToString()
        )
        entries.append(
            pb.Entry(index=index, term=BOOTSTRAP_TERM, type=pb.EntryConfChange, data=cc.SerializeToString())
        )
    prepared = raftlog.prepare(
        entries=tuple(entries), hard_state=pb.HardState(term=BOOTSTRAP_TERM, commit=len(entries))
    )
    cluster.write(prepared.batch)
    raftlog.write(prepared)


def write_joined_cluster(backend: Backend, cluster: Cluster) -> None:
    """Store the member table of the cluster a new member joins (learned from a peer); synced."""
    with backend.batch(sync=True) as wb:
        cluster.write(wb)


def finish_snapshot_install(backend: Backend, raftlog: RaftLogStorage) -> None:
    """At start, before anything reads the state: finish a snapshot install a crash interrupted.

    Also deletes received snapshot files no install needs (see `snapshot.finish_interrupted_install`).
    """
    meta = snapshot.finish_interrupted_install(backend, raftlog)
    if meta is not None:
        log.warning("finished installing snapshot %d (a crash interrupted it)", meta.index)


async def fetch_cluster(
    peer_urls: Iterable[str], dialer: Dialer, timeout: float = 5.0
) -> peer_pb2.MembersResponse:
    """Ask the first peer that answers for the cluster ID and members (joining an existing cluster)."""
    last_error = "no peer URLs given"
    for url in peer_urls:
        try:
            channel = await peer_channel(dialer, [url])
        except OSError as exc:  # an auto-tls dial could not fetch the peer's certificate
            last_error = f"{url}: {exc}"
            continue
        async with channel:
            stub = peer_pb2_grpc.PeerStub(channel)  # type: ignore[no-untyped-call]
            try:
                response: peer_pb2.MembersResponse = await stub.Members(
                    peer_pb2.MembersRequest(), timeout=timeout
                )
                return response
            except grpc.aio.AioRpcError as exc:
                last_error = f"{url}: {exc.code().name} {explain_failure(url, exc.details() or '')}"
    raise ConnectionError(f"cannot fetch the cluster from its members: {last_error}")


class Replication:
    """The replicated log of one member; lives on the member's event loop."""

    def __init__(
        self,
        *,
        backend: Backend,
        applier: Applier,
        cluster: Cluster,
        raftlog: RaftLogStorage,
        settings: RaftSettings,
        membership: MembershipApplier,
        apply_entries: Callable[[list[pb.Entry]], None],
        dialer: Dialer = PLAINTEXT,
        metrics: Metrics = NO_METRICS,
        peer_protocol: str = "grpc",
    ) -> None:
        self.backend = backend
        self.applier = applier
        self.cluster = cluster
        self.raftlog = raftlog
        self.membership = membership
        self._apply_run = apply_entries
        self.removed = False  # this member was removed from the cluster: it must stop
        self.removed_event = asyncio.Event()
        self.snapshots_installed = 0  # snapshots received from a leader in this life (tests, status)
        # Received (spooled) snapshot files, until an install is done with them.
        self.received_snapshots = snapshots.ReceivedSnapshots(applier)
        # The transport tells this object what arrives (PeerEvents), which hands it to the node;
        # the node is built last, with the transport's send.
        self.transport = PeerTransport(
            local_id=cluster.local_id,
            cluster_id=cluster.cluster_id,
            events=self,
            snapshot_dir=snapshot.spool_dir(backend.data_dir),
            dialer=dialer,
            metrics=metrics,
            protocol=peer_protocol,
        )
        self.node = RaftNode(
            node_id=cluster.local_id,
            storage=raftlog,
            settings=settings,
            state=self,
            send=self.transport.send,
            metrics=metrics,
        )
        self._load_removed()
        self._cc_ids = itertools.count(1)
        self._cc_waiters: dict[int, asyncio.Future[None]] = {}  # conf change id -> applied

    # ---- the seam EtcdServer uses ----

    @property
    def term(self) -> int:
        return self.node.term

    @property
    def commit_index(self) -> int:
        return self.node.commit_index

    @property
    def leader_id(self) -> int:
        return self.node.leader_id

    @property
    def leader_changes(self) -> int:
        """How often the leader this member knows has changed (a request that saw it change fails)."""
        return self.node.leader_changes

    @property
    def cluster_version(self) -> str:
        return self.membership.cluster_version

    def is_leader(self) -> bool:
        """Whether this member leads (as far as it knows: a partitioned leader learns it last)."""
        return self.node.is_leader()

    def stalled_lately(self) -> bool:
        """Whether this member's loop stopped for a while lately (see RaftNode.stalled_lately)."""
        return self.node.stalled_lately()

    async def wait_leader_change(self) -> None:
        """Return at the next change of the leader this member knows."""
        await self.node.wait_leader_change()

    async def wait_leader_is(self, member_id: int) -> None:
        """Return once `member_id` is the leader this member knows."""
        await self.node.wait_leader_is(member_id)

    def transfer_leader(self, member_id: int) -> None:
        """Ask raft to hand leadership to `member_id` (only a leader can)."""
        self.node.transfer_leader(member_id)

    def match_indexes(self) -> dict[int, int]:
        """Member ID -> the last log index known to be on it; empty unless this member leads."""
        return {mid: progress.match for mid, progress in self.node.status().progress.items()}

    def peer_connected_since(self, member_id: int) -> float | None:
        """Monotonic time since which the connection to a peer has been up (None: it is down)."""
        return self.transport.active_since(member_id)

    def fail_pending(self, exc: BaseException) -> None:
        """Fail every read still waiting (at shutdown)."""
        self.node.fail_pending(exc)

    def propose(self, data: bytes) -> None:
        self.node.propose(data)

    async def read_index(self) -> int:
        return await self.node.read_index()

    async def wait_applied(self, index: int) -> None:
        await self.node.wait_applied(index)

    async def change_membership(self, cc: pb.ConfChange) -> None:
        """Propose a conf change and return once this member applied it (raises ProposalDropped).

        The caller bounds the wait: raft may replace the change with an empty entry
        (another change pending), and then it never applies.
        """
        cc.id = ((self.cluster.local_id & 0xFFFFFFFF) << 32) | (next(self._cc_ids) & 0xFFFFFFFF)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._cc_waiters[cc.id] = waiter
        try:
            self.node.propose_conf_change(cc)
            await waiter
        finally:
            self._cc_waiters.pop(cc.id, None)

    def register(self, server: grpc.aio.Server, *, promote: Callable[[int], Awaitable[None]]) -> None:
        """Serve the Peer service (on the peer listeners); `promote` serves a follower's Promote."""
        peer_pb2_grpc.add_PeerServicer_to_server(_Peers(self, promote), server)  # type: ignore[no-untyped-call]

    async def run(self) -> None:
        for member in self.cluster.members.values():
            self.transport.set_peer(member.ID, member.peerURLs)
        try:
            await self.node.run()
        finally:
            await self.transport.stop()

    async def stop(self) -> None:
        await self.node.stop()

    # ---- PeerEvents: what the transport reports ----

    def step(self, message: pb.Message) -> None:
        self.node.step(message)

    def report_unreachable(self, peer_id: int) -> None:
        self.node.report_unreachable(peer_id)

    def report_snapshot(self, peer_id: int, ok: bool) -> None:
        self.node.report_snapshot(peer_id, ok)

    def removed_by_peers(self) -> None:
        if not self.removed:
            log.warning("member %x: %s", self.cluster.local_id, "removed from the cluster; stopping")
        self.removed = True
        self.removed_event.set()

    def _load_removed(self) -> None:
        self.transport.removed = {
            int.from_bytes(key[len(REMOVED_PREFIX) :], "big")
            for key in self.backend.db.iterator(prefix=REMOVED_PREFIX, include_value=False)
        }

    # ---- applying: the node's state machine (ready.StateMachine) ----

    def applied_index(self) -> int:
        return self.applier.applied_index

    def apply_entries(self, entries: list[pb.Entry]) -> None:
        self._apply_run(entries)

    def conf_change_applied(self, entry: pb.Entry, change: pb.ConfChangeV2, conf_state: pb.ConfState) -> None:
        if entry.index <= self.applier.applied_index:
            return  # replayed after a restart: the member table already holds it
        context = change.context
        if entry.type == pb.EntryConfChange:
            v1 = pb.ConfChange.FromString(entry.data)
            context = v1.context
            waiter = self._cc_waiters.get(v1.id)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        cluster = self.cluster
        with self.backend.batch(sync=False) as wb:
            for single in change.changes:
                mid = single.node_id
                if single.type in (
                    pb.ConfChangeAddNode,
                    pb.ConfChangeAddLearnerNode,
                    pb.ConfChangeUpdateNode,
                ):
                    member = rpc_pb2.Member.FromString(context) if context else rpc_pb2.Member(ID=mid)
                    existing = cluster.members.get(mid)
                    if existing is not None:
                        if single.type == pb.ConfChangeUpdateNode:
                            del existing.peerURLs[:]
                            existing.peerURLs.extend(member.peerURLs)
                        else:  # a promotion (learner -> voter) or a replayed add
                            existing.isLearner = single.type == pb.ConfChangeAddLearnerNode
                        member = existing
                    else:
                        member.isLearner = single.type == pb.ConfChangeAddLearnerNode
                        cluster.members[mid] = member
                    wb.put(schema.MEMBERS + mid.to_bytes(8, "big"), member.SerializeToString())
                    self.transport.set_peer(mid, member.peerURLs)
                elif single.type == pb.ConfChangeRemoveNode:
                    cluster.members.pop(mid, None)
                    wb.delete(schema.MEMBERS + mid.to_bytes(8, "big"))
                    wb.put(REMOVED_PREFIX + mid.to_bytes(8, "big"), b"")
                    self.transport.remove_peer(mid)
                    self.transport.removed.add(mid)
                    if mid == cluster.local_id:
                        self.removed_by_peers()

    # ---- snapshots ----

    def snapshot_to_send(self, message: pb.Message) -> tuple[pb.Message, Iterator[bytes]] | None:
        """The state as it is now, with the MsgSnap relabelled to the index, term and conf it holds.

        See `snapshots.snapshot_to_send`: None while replaying after a restart (raft hears the
        send failed and tries again later).
        """
        return snapshots.snapshot_to_send(self.backend, message, self.node, self.raftlog.term)

    async def snapshot_received(self, message: pb.Message, spooled: snapshot.SpooledSnapshot) -> None:
        self.received_snapshots.keep(message.snapshot.metadata.index, spooled)
        self.node.step(message)

    def install_state(self, received: pb.Snapshot, write: PreparedWrite) -> None:
        """Replace the state by the received snapshot's, in bounded batches (on the raft log's worker thread).

        The caller's `write` records the snapshot point, log and hard state; it also deletes
        the install marker, so a crash before it is written is finished at the next start.
        Meanwhile reads (ranges, hashes, watch history) are served from the old state, pinned.
        """
        self.received_snapshots.install(received.metadata, write.batch)

    def state_installed(self, received: pb.Snapshot) -> None:
        meta = received.metadata
        self.snapshots_installed += 1
        self.received_snapshots.installed(meta.index)  # the applier reloads: unpins the store's reads
        self.membership.reload()
        self._load_removed()
        for mid in list(self.transport.peers):
            if mid not in self.cluster.members:
                self.transport.remove_peer(mid)
        for member in self.cluster.members.values():
            self.transport.set_peer(member.ID, member.peerURLs)
        log.info(
            "member %x: installed snapshot %d (applied %d)",
            self.cluster.local_id,
            meta.index,
            self.applier.applied_index,
        )


class _Peers(PeerService):
    """The Peer service with Members answered from this member's table."""

    def __init__(self, replication: Replication, promote: Callable[[int], Awaitable[None]]) -> None:
        super().__init__(replication.transport)
        self.replication = replication
        self.promote = promote

    async def Members(self, request: peer_pb2.MembersRequest, context: Any) -> peer_pb2.MembersResponse:
        cluster = self.replication.cluster
        return peer_pb2.MembersResponse(cluster_id=cluster.cluster_id, members=cluster.member_list())

    async def Promote(self, request: peer_pb2.PromoteRequest, context: Any) -> peer_pb2.PromoteResponse:
        try:
            await self.promote(request.member_id)
        except errors.EtcdError as exc:
            await context.abort(exc.code, exc.text)
        return peer_pb2.PromoteResponse()
