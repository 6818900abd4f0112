"""Member: one etcdpy member's parts, built in dependency order, started and stopped in a fixed order.

`open_member` does three named steps on an open backend::

    recover    the raft log (a torn tail dropped) and an install a crash interrupted
    cluster    the member table: stored, or bootstrapped (a new cluster writes its first
               log), or fetched from the members of the cluster it joins
    build      every part, each through its constructor, each given what it needs:

      headers      ResponseHeaders(cluster, raft log, store)
      lessor       Lessor(backend)                          leases, applied state
      store        KVStore(backend, lessor)                 MVCC on LevelDB
      hub          WatchHub(store, headers)                 watchers read the store
      membership   MembershipApplier(backend, cluster)      member attributes, cluster version
      auth         AuthStore(backend, token provider, lessor's keys)   users, roles, permissions
      gate         AuthGate(auth, --bcrypt-cost)            credentials, checks, password hashing
      applier      Applier(store, events -> hub, handlers of lessor, membership and auth,
                           auth's permission layer, reload -> lessor, hub and auth)
      commits      CommitApplier(applier)                   results back to the proposers
      replication  Replication(raft log, cluster, membership, commits)
                     -> RaftNode and PeerTransport, built inside it
      member_ops   MemberOps(replication)
      server       EtcdServer(applier, commits, headers, replication, member_ops, gate)
      lease_driver LeaseDriver(lessor, server.propose as root, replication.is_leader,
                               ensure_leadership: a ReadIndex round after the loop stalled)
      forwarder    LeaderForwarder(leader's client URLs)
      quota        BackendQuota(backend)                    this member's disk: checked before
                                                            proposing, never while applying

The member's `Metrics` (its own Prometheus registry) is built first and handed to the parts
that count as they work (the applier, replication, the server); what the member knows anyway
(leader, indexes, sizes, watchers) is read at scrape time from the built parts (`figures`).

Nothing is replaced after it is built.  `Member.start` starts the tasks (the
Ready loop first, then publishing, the watch hub, the lease driver);
`Member.stop` stops them in reverse: lease and watch tasks, then the Ready loop
(what it had queued is persisted and applied), then the waiters still left fail.
The client listeners are `main`'s: clients are served once the member published
itself, and stop being served before the member stops.  What they serve is
`Member.services`, built once from the parts above: grpcio and the JSON gateway
call the same servicer objects.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import raft_internal_pb2
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server import config as cfg
from etcdpy.server import raft_requests as kinds
from etcdpy.server.apply import Applier
from etcdpy.server.auth import AuthGate, AuthOptionError, AuthStore, token_provider
from etcdpy.server.commit import CommitApplier
from etcdpy.server.consensus.memberops import MemberOps
from etcdpy.server.consensus.membership import Cluster, MembershipApplier
from etcdpy.server.consensus.node import RaftSettings
from etcdpy.server.consensus.replication import (
    Replication,
    bootstrap_new_cluster,
    fetch_cluster,
    finish_snapshot_install,
    write_joined_cluster,
)
from etcdpy.server.consensus.transport import peer_dialer
from etcdpy.server.etcdserver import EtcdServer
from etcdpy.server.headers import ResponseHeaders
from etcdpy.server.lease import LeaseDriver, Lessor, min_lease_ttl
from etcdpy.server.lease.forward import LeaderForwarder
from etcdpy.server.metrics import Figures, MemberFigures, Metrics, StoreCounts
from etcdpy.server.mvcc.kvstore import KVStore
from etcdpy.server.quota import BackendQuota
from etcdpy.server.services import Service, ServiceParts, build_services
from etcdpy.server.storage.backend import Backend, BackendError, recovery_advice
from etcdpy.server.storage.raftlog import RaftLogCorruptError, RaftLogStorage
from etcdpy.server.tls import client_dialer
from etcdpy.server.watch import WatchHub

log = logging.getLogger("etcdpy.server")


class StartupError(Exception):
    """The member cannot start with this config and data dir; the message says why."""


@dataclass
class Member:
    """Member holds one member's parts, in the order they were built (see the module docstring)."""

    config: cfg.Config
    backend: Backend
    raftlog: RaftLogStorage
    cluster: Cluster
    headers: ResponseHeaders
    lessor: Lessor
    store: KVStore
    hub: WatchHub
    membership: MembershipApplier
    auth: AuthStore
    gate: AuthGate
    applier: Applier
    commits: CommitApplier
    replication: Replication
    member_ops: MemberOps
    server: EtcdServer
    lease_driver: LeaseDriver
    forwarder: LeaderForwarder
    quota: BackendQuota
    metrics: Metrics
    _replicating: asyncio.Task[None] | None = field(default=None, init=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, init=False)

    def start(self) -> asyncio.Task[None]:
        """Start the member's tasks; return the Ready loop's, which ends on `stop` or a failed write path."""
        assert self._replicating is None, "a member starts once"
        loop = asyncio.get_running_loop()
        self._replicating = loop.create_task(self.replication.run(), name="etcdpy-raft")
        self.server.start(
            self.config.name, list(self.config.advertise_client_urls), auto_promote=self.config.auto_promote
        )
        self._tasks = [
            loop.create_task(self.hub.run(), name="etcdpy-watch"),
            loop.create_task(self.lease_driver.run(), name="etcdpy-leases"),
        ]
        return self._replicating

    async def stop(self) -> None:
        """Stop in reverse order of starting: leases and watchers, the Ready loop, then the waiters left.

        Idempotent; safe on a member that never started.
        """
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await self.forwarder.close()
        await self.replication.stop()
        if self._replicating is not None:
            # The Ready loop's worker thread must be done with LevelDB before the database closes.
            await asyncio.wait([self._replicating])
        await self.server.stop()
        self.gate.close()

    @functools.cached_property
    def services(self) -> tuple[Service, ...]:
        """Every etcd service of this member, built once: grpcio and the JSON gateway serve these objects."""
        return build_services(
            ServiceParts(
                server=self.server,
                hub=self.hub,
                lessor=self.lessor,
                lease_driver=self.lease_driver,
                forwarder=self.forwarder,
                quota=self.quota,
                max_txn_ops=self.config.max_txn_ops,
                max_request_bytes=self.config.max_request_bytes,
                auth=self.gate,
                client_certs=self.config.client_tls.requires_client_cert,
            )
        )


async def open_member(config: cfg.Config, backend: Backend) -> Member:
    """Recover the raft log, load (or create, or join) the cluster, and build the member."""
    raftlog = recover(config, backend)
    cluster = await load_cluster(config, backend, raftlog)
    return build(config, backend, raftlog, cluster)


def recover(config: cfg.Config, backend: Backend) -> RaftLogStorage:
    """Open the raft log and finish what a crash interrupted, before anything reads the state."""
    raftlog = RaftLogStorage.open(backend, sync=not config.unsafe_no_fsync)
    finish_snapshot_install(backend, raftlog)
    if raftlog.dropped_tail:
        log.warning("dropped a torn entry at the tail of the raft log (it was never acknowledged)")
    return raftlog


async def load_cluster(config: cfg.Config, backend: Backend, raftlog: RaftLogStorage) -> Cluster:
    """The stored member table; on first boot, a new cluster's (bootstrapped) or the joined one's."""
    cluster = Cluster.load(backend)
    if cluster is None:
        if raftlog.last_index() > 0:
            raise BackendError(f"data dir {config.data_dir} has a raft log but no cluster membership")
        if config.initial_cluster_state == "existing":
            cluster = await join_cluster(config)
            write_joined_cluster(backend, cluster)
        else:
            cluster = Cluster.from_config(config)
            bootstrap_new_cluster(raftlog, cluster)
    elif config.initial_cluster:
        log.info(
            "data dir %s already holds member %x: ignoring the --initial-* flags",
            config.data_dir,
            cluster.local_id,
        )
    if cluster.local_id not in cluster.members:
        raise StartupError(
            f"member {cluster.local_id:x} has been removed from cluster {cluster.cluster_id:x}: "
            f"wipe {config.data_dir} and add it again to rejoin"
        )
    return cluster


async def join_cluster(config: cfg.Config) -> Cluster:
    """The cluster this new member joins (--initial-cluster-state=existing), as its members know it.

    The member must have been added first (`member add`): it finds itself by its peer URLs.
    """
    own = set(config.initial_advertise_peer_urls)
    peers = [url for _name, url in config.initial_cluster if url not in own]
    if not peers:
        raise StartupError(
            "--initial-cluster-state=existing needs peers to join: --initial-cluster names no other member"
        )
    try:
        remote = await fetch_cluster(peers, peer_dialer(config.peer_tls))
    except ConnectionError as exc:
        raise StartupError(f"cannot join the cluster: {exc}") from None
    for member in remote.members:
        if set(member.peerURLs) == own:
            members = {m.ID: m for m in remote.members}
            return Cluster(cluster_id=remote.cluster_id, local_id=member.ID, members=members)
    raise StartupError(
        f"cannot join cluster {remote.cluster_id:x}: no member has peer URLs {','.join(sorted(own))} "
        "(add it with `member add` first, or use --initial-cluster-state=new for a new cluster)"
    )


def raft_settings(config: cfg.Config) -> RaftSettings:
    """The Raft parameters the flags give (times in heartbeat ticks, as etcd counts them)."""
    heartbeat = config.heartbeat_interval_ms
    return RaftSettings(
        tick_seconds=heartbeat / 1000,
        election_tick=max(2, config.election_timeout_ms // heartbeat),
        pre_vote=config.pre_vote,
        snapshot_count=max(1, config.snapshot_count),
        catchup_entries=config.snapshot_catchup_entries,
    )


def lease_keys_of(lessor: Lessor) -> Callable[[int], Iterable[bytes]]:
    """The keys attached to a lease (none if there is no such lease), for auth's check of a revoke."""

    def keys(lease_id: int) -> Iterable[bytes]:
        lease = lessor.lookup(lease_id)
        return sorted(lease.keys) if lease is not None else ()

    return keys


def build(
    config: cfg.Config,
    backend: Backend,
    raftlog: RaftLogStorage,
    cluster: Cluster,
    metrics: Metrics | None = None,
) -> Member:
    """Build every part of the member, in dependency order (see the module docstring).

    `metrics` defaults to a registry of the member's own at the --metrics level.
    """
    if metrics is None:
        metrics = Metrics(
            extensive=config.metrics == "extensive", heartbeat_seconds=config.heartbeat_interval_ms / 1000
        )
    lessor = Lessor(backend, min_ttl=min_lease_ttl(config.election_timeout_ms), counts=metrics.lease)
    store = KVStore(backend, leases=lessor)
    lessor.restore_keys(store.leased_keys())
    headers = ResponseHeaders(cluster, raftlog, store)
    hub = WatchHub(store, fill_header=headers.fill)
    membership = MembershipApplier(backend, cluster)
    try:
        tokens = token_provider(config.auth_token, float(config.auth_token_ttl))
    except AuthOptionError as exc:
        raise StartupError(f"--auth-token {config.auth_token}: {exc}") from None
    auth = AuthStore(backend, tokens, lease_keys=lease_keys_of(lessor))
    gate = AuthGate(auth, bcrypt_cost=config.bcrypt_cost)
    store_counts = StoreCounts(metrics, count_store=lambda: count_live_keys(store))

    def reload_beside_store() -> None:
        """A raft snapshot replaced the database: leases, watchers and auth follow it."""
        lessor.reload()
        lessor.restore_keys(store.leased_keys())
        hub.restore(store.current_revision)
        auth.reload()
        store_counts.reset()

    def on_events(rev: int, events: Sequence[kv_pb2.Event]) -> None:
        store_counts.on_events(events)
        hub.on_events(rev, events)

    applier = Applier(
        backend,
        store=store,
        on_events=on_events if metrics.enabled else hub.on_events,
        handlers={
            **lessor.handlers(),
            kinds.MEMBER_ATTRIBUTES: membership.apply_member_attributes,
            kinds.CLUSTER_VERSION_SET: membership.apply_cluster_version,
            **auth.handlers(),
        },
        layers=[auth.layer],
        on_reload=[reload_beside_store],
        commit_seconds=metrics.backend_commit_seconds,
        kv_counts=metrics.kv,
    )
    log_end = max(raftlog.last_index(), raftlog.snapshot_meta.index)
    if applier.applied_index > log_end:
        # Entries after the log's end would reuse applied indexes and be skipped: refuse instead.
        raise RaftLogCorruptError(
            f"data dir {config.data_dir}: the store applied index {applier.applied_index} "
            f"but the raft log ends at {log_end}; " + recovery_advice(backend.data_dir)
        )
    commits = CommitApplier(applier)
    replication = Replication(
        backend=backend,
        applier=applier,
        cluster=cluster,
        raftlog=raftlog,
        settings=raft_settings(config),
        membership=membership,
        apply_entries=commits.apply_entries,
        dialer=peer_dialer(config.peer_tls),
        metrics=metrics,
        peer_protocol=config.experimental_peer_protocol,
    )
    member_ops = MemberOps(
        replication,
        strict_reconfig_check=config.strict_reconfig_check,
        max_learners=config.max_learners,
        request_timeout=config.request_timeout,
        cluster_token=config.initial_cluster_token,
    )
    server = EtcdServer(
        cluster=cluster,
        applier=applier,
        commits=commits,
        headers=headers,
        replication=replication,
        member_ops=member_ops,
        max_request_bytes=config.max_request_bytes,
        request_timeout=config.request_timeout,
        auth=gate,
        metrics=metrics,
    )

    def propose_as_root(request: raft_internal_pb2.InternalRaftRequest) -> Awaitable[Any]:
        """Expiry revokes are the member's own: they pass auth as root (etcd's WithRoot)."""
        return gate.as_root(server.propose(request))

    async def ensure_leadership() -> None:
        """etcd's ensureLeadership: after this member's loop stalled (a pause, a stuck disk) it may have
        been deposed without knowing it yet, so a ReadIndex round confirms a quorum still follows it
        (on a deposed leader the round fails: leader changed) before it renews a lease."""
        if replication.stalled_lately():
            await server.linearizable_barrier()
            if not replication.is_leader():
                raise errors.ErrLeaderChanged()

    lease_driver = LeaseDriver(
        lessor, propose_as_root, is_leader=replication.is_leader, ensure_leadership=ensure_leadership
    )

    def leader_client_urls() -> list[str]:
        leader = cluster.members.get(replication.leader_id)
        return list(leader.clientURLs) if leader is not None else []

    quota = BackendQuota(backend, config.quota_backend_bytes)
    metrics.register(
        MemberFigures(
            Figures(
                member_id=cluster.local_id,
                leader_id=lambda: replication.leader_id,
                is_leader=replication.is_leader,
                is_learner=server.is_learner,
                leaders_seen=lambda: replication.node.leaders_seen,
                committed_index=lambda: replication.commit_index,
                applied_index=lambda: applier.applied_index,
                pending_proposals=lambda: commits.pending,
                snapshot_installing=lambda: replication.received_snapshots.installing,
                quota_bytes=lambda: quota.quota_bytes,
                db_size_bytes=backend.size_bytes,
                current_revision=lambda: store.current_revision,
                compact_revision=lambda: store.compact_revision,
                live_keys=store_counts.live_keys,
                watchers=lambda: hub.watcher_count,
                slow_watchers=lambda: hub.unsynced_count,
                events_sent=lambda: hub.events_sent,
                pending_events=lambda: hub.pending_events,
                cluster_version=lambda: ".".join(replication.cluster_version.split(".")[:2]),
            )
        )
    )
    return Member(
        config=config,
        backend=backend,
        raftlog=raftlog,
        cluster=cluster,
        headers=headers,
        lessor=lessor,
        store=store,
        hub=hub,
        membership=membership,
        auth=auth,
        gate=gate,
        applier=applier,
        commits=commits,
        replication=replication,
        member_ops=member_ops,
        server=server,
        lease_driver=lease_driver,
        forwarder=LeaderForwarder(leader_client_urls, client_dialer(config.client_tls)),
        quota=quota,
        metrics=metrics,
    )


def count_live_keys(store: KVStore) -> int:
    """The keys alive in the store now (one walk of the live-key keyspace)."""
    with store.read() as reader:
        return reader.count(b"", b"", reader.rev)
