"""Metrics: one member's Prometheus metrics, with etcd 3.4's names, types, help texts and labels.

Each member has its own `CollectorRegistry` (two members in one process never share a
figure) holding three kinds of metric:

* instruments updated where the work happens: the raft log's fsync and the apply batch's
  commit (histograms), failed proposals, puts, ranges, deletes and txns (`KvCounts`), leases
  (`LeaseCounts`), read indexes, late heartbeats, snapshots and defrags, compactions, peer
  bytes, failures, snapshot transfers and round trips.  `Metrics` owns them; the member hands
  it by constructor to the parts that update them (`RaftNode`, `Applier`, `Lessor`,
  `EtcdServer`, `PeerTransport`, the gRPC interceptors), each update one call.
* figures the member knows anyway (leader, indexes, sizes, watchers and their events, the
  quota, a snapshot install): read at scrape time by `MemberFigures`, a custom collector, so
  the write path never keeps them; `OsFds` likewise.
* the process collector (CPU, memory, descriptors: the same `process_*` names as Go's).

Two of etcd's counters have no ``_total`` (`etcd_server_health_success`, `_failures`), which
prometheus-client cannot name: they are `GoNamedCounter`s outside the registry, which `render`
writes after it.

`NO_METRICS` is a Metrics whose instruments do nothing: parts built without a member (unit
tests, the simulator, the bench's baseline) take it by default.

`render` writes the text format as etcd's /metrics does.  prometheus-client adds a
``<name>_created`` series to every counter and histogram (an OpenMetrics idea); Go's client,
and so etcd, has none, so `render` leaves them out rather than switching them off for the
whole process.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.version import ETCD_RELEASE

__all__ = [
    "CONTENT_TYPE",
    "NO_METRICS",
    "GoNamedCounter",
    "KvCounts",
    "LeaseCounts",
    "MemberFigures",
    "Metrics",
    "StoreCounts",
    "render",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what etcd's promhttp answers a plain scrape
METRICS_MODES = ("basic", "extensive")
SLOW_APPLY_SECONDS = 0.1  # etcd's warnApplyDuration: an apply slower than this is counted slow


def exponential_buckets(start: float, factor: float, count: int) -> list[float]:
    """Upper bounds start, start*factor, ... (`count` of them), as Go's prometheus.ExponentialBuckets."""
    assert start > 0 and factor > 1 and count >= 1
    return [start * factor**i for i in range(count)]


# Go's prometheus.DefBuckets: go-grpc-prometheus's handling-time histogram uses them.
DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]


class Count(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class Observe(Protocol):
    def observe(self, amount: float) -> None: ...


class Setting(Protocol):
    def set(self, value: float) -> None: ...


class Labelled(Protocol):
    """A metric with labels: `labels(...)` is the child to update."""

    def labels(self, *values: str) -> Any: ...


class _Null:
    """An instrument that does nothing (the instruments of `NO_METRICS`)."""

    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass

    def labels(self, *values: str) -> _Null:
        return self

    def set(self, value: float) -> None:
        pass


_NULL = _Null()


class GoNamedCounter:
    """A counter exposed under exactly its name, as Go's client does, without the ``_total`` suffix.

    prometheus-client names every counter's sample and HELP/TYPE lines ``<name>_total``; etcd 3.4
    has two counters without it (``etcd_server_health_success`` and ``_failures``).  `render`
    writes these after the registry's text, in the same format Go writes them.
    """

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help_text = help_text
        self._value = 0.0
        self._lock = threading.Lock()

    def inc(self, amount: float = 1) -> None:
        with self._lock:
            self._value += amount

    @property
    def value(self) -> float:
        return self._value

    def text(self) -> str:
        return (
            f"# HELP {self.name} {self.help_text}\n# TYPE {self.name} counter\n"
            f"{self.name} {self._value!r}\n"  # as prometheus-client prints its values
        )


class KvCounts:
    """KvCounts moves etcd_mvcc_range_total, _delete_total and _txn_total (and their etcd_debugging_ twins).

    etcd counts per mvcc transaction: each Range, Put and DeleteRange done in it, and one txn when a
    transaction did more than one of them.  Its applier reads the previous value of a put with
    prev_kv, ignore_value or ignore_lease and of a delete with prev_kv (a range more, hence a txn);
    a Txn request evaluates its compares (and checks its ignore_* puts) in a read transaction, then
    runs the ops of the branches it took in a write transaction (one transaction when it only reads).
    The methods replay that from the request (and, for a txn, the branches its response took), so
    the counts follow etcd's without touching the store.  Puts are counted from the applied events
    (`StoreCounts`).
    """

    def __init__(
        self,
        ranges: Sequence[Count],
        deletes: Sequence[Count],
        txns: Sequence[Count],
        slow: Count = _NULL,
        compaction_ms: tuple[Observe, Observe] = (_NULL, _NULL),
    ) -> None:
        self._ranges = ranges
        self._deletes = deletes
        self._txns = txns
        self._slow = slow
        self._compaction_pause_ms, self._compaction_total_ms = compaction_ms

    def compaction_step(self, step: Callable[[int], bool], records: int) -> bool:
        """Run one physical compaction step `step(records)` and return whether the compaction is done.

        As etcd, a step that leaves more to do is timed (the pause), the last one is not.
        """
        started = time.perf_counter()
        done = step(records)
        if not done:
            self._compaction_pause_ms.observe(int((time.perf_counter() - started) * 1000))  # whole ms, as Go
        return done

    def compacted(self, seconds: float) -> None:
        """A physical compaction ran to its end in `seconds` (its steps and the pauses between them)."""
        self._compaction_total_ms.observe(int(seconds * 1000))

    def applied(self, seconds: float) -> None:
        """An apply batch took `seconds`: over etcd's 100 ms it counts in etcd_server_slow_apply_total."""
        if seconds > SLOW_APPLY_SECONDS:
            self._slow.inc()

    def _add(self, counters: Sequence[Count], amount: int) -> None:
        if amount:
            for counter in counters:
                counter.inc(amount)

    def range(self) -> None:
        """A Range request served (or applied) on its own."""
        self._add(self._ranges, 1)

    def put(self, req: rpc_pb2.PutRequest) -> None:
        """A Put request applied on its own (the put itself is counted from its event)."""
        if req.prev_kv or req.ignore_value or req.ignore_lease:
            self._add(self._ranges, 1)
            self._add(self._txns, 1)

    def delete(self, req: rpc_pb2.DeleteRangeRequest) -> None:
        """A DeleteRange request applied on its own."""
        self._add(self._deletes, 1)
        if req.prev_kv:
            self._add(self._ranges, 1)
            self._add(self._txns, 1)

    def deletes(self, keys: int) -> None:
        """A lease revoke: one delete per attached key, in one transaction."""
        self._add(self._deletes, keys)
        self._add(self._txns, keys > 1)

    def txn(self, req: rpc_pb2.TxnRequest, resp: rpc_pb2.TxnResponse, *, writes: bool) -> rpc_pb2.TxnResponse:
        """A Txn request done (`writes`: applied through the log; else served as a read); returns `resp`."""
        if not self._txns:
            return resp
        work = TxnWork()
        work.add(req, resp)
        # etcd takes a txn for a write unless every op of both branches is a range (a nested txn is not).
        writes = writes or any(
            op.WhichOneof("request") != "request_range" for op in (*req.success, *req.failure)
        )
        self._add(self._ranges, work.checks + work.ranges)
        self._add(self._deletes, work.deletes)
        if writes:  # the compares' read transaction, then the write transaction
            self._add(self._txns, (work.checks > 1) + (work.ranges + work.puts + work.deletes > 1))
        else:
            self._add(self._txns, work.checks + work.ranges > 1)
        return resp


class TxnWork:
    """What etcd's applier does in its mvcc transactions for a txn, along the branches the txn took.

    `checks`: ranges of the compares and of the puts' ignore_value/ignore_lease checks (etcd reads
    them in a transaction before the one that writes).  etcd stops at the first false compare; the
    response does not say which one it was, so a txn whose compares failed counts one (exact when
    it has one compare, or its first one failed).
    """

    def __init__(self) -> None:
        self.checks = self.ranges = self.puts = self.deletes = 0

    def add(self, req: rpc_pb2.TxnRequest, resp: rpc_pb2.TxnResponse) -> None:
        self.checks += len(req.compare) if resp.succeeded else min(len(req.compare), 1)
        for op, out in zip(req.success if resp.succeeded else req.failure, resp.responses, strict=False):
            kind = op.WhichOneof("request")
            if kind == "request_range":
                self.ranges += 1
            elif kind == "request_put":
                put = op.request_put
                self.puts += 1
                self.checks += put.ignore_value or put.ignore_lease
                self.ranges += put.prev_kv or put.ignore_value or put.ignore_lease
            elif kind == "request_delete_range":
                self.deletes += 1
                self.ranges += op.request_delete_range.prev_kv
            elif kind == "request_txn":
                self.add(op.request_txn, out.response_txn)


class LeaseCounts:
    """LeaseCounts moves the etcd_debugging_lease_* metrics and etcd_debugging_server_lease_expired_total.

    Grants and revokes are counted where they are applied (every member), renewals on the leader
    that renews, expiries on the leader whose revoke of an expired lease was applied.
    """

    def __init__(
        self,
        granted: Count,
        revoked: Count,
        renewed_: Count,
        expired_: Count,
        ttls: Observe,
        kv: KvCounts,
    ) -> None:
        self._granted = granted
        self._revoked = revoked
        self._renewed = renewed_
        self._expired = expired_
        self._ttls = ttls
        self._kv = kv

    def granted(self, ttl: int) -> None:
        self._ttls.observe(ttl)
        self._granted.inc()

    def revoked(self, keys: int) -> None:
        """A lease revoked with its `keys` attached keys (deleted in one mvcc transaction, as etcd)."""
        self._revoked.inc()
        self._kv.deletes(keys)

    def renewed(self) -> None:
        self._renewed.inc()

    def expired(self) -> None:
        self._expired.inc()


class LateHeartbeats:
    """etcd's heartbeat timeout detector: etcd_server_heartbeat_send_failures_total.

    The leader sends each follower a heartbeat every heartbeat interval; one sent more than twice
    the interval after the previous one to the same peer, in the same term, is counted: the leader
    was too busy (slow disk, overload) to send it on time.  A new term (a new leadership) starts over.
    """

    def __init__(self, failures: Count, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._failures = failures
        self._clock = clock
        self._longest = 2 * interval
        self._last: dict[int, tuple[int, float]] = {}  # peer -> (term, time of its last heartbeat)

    def sent(self, peer_id: int, term: int) -> None:
        now = self._clock()
        last = self._last.get(peer_id)
        self._last[peer_id] = (term, now)
        if last is not None and last[0] == term and now - last[1] > self._longest:
            self._failures.inc()


class Metrics:
    """Metrics holds one member's registry and the instruments its parts update.

    `extensive` is etcd's ``--metrics extensive``: the gRPC handling-time histograms too;
    `heartbeat_seconds` is the member's heartbeat interval (late heartbeats are counted against it).
    """

    def __init__(
        self, *, extensive: bool = False, enabled: bool = True, heartbeat_seconds: float = 0.1
    ) -> None:
        self.extensive = extensive
        self.enabled = enabled
        self.registry = CollectorRegistry(auto_describe=True)
        if not enabled:
            self.wal_fsync_seconds: Observe = _NULL
            self.backend_commit_seconds: Observe = _NULL
            self.proposals_failed: Count = _NULL
            self.puts: Sequence[Count] = ()
            self.peer_sent_bytes: Labelled = _NULL
            self.peer_received_bytes: Labelled = _NULL
            self.peer_round_trip_seconds: Labelled = _NULL
            self.peer_sent_failures: Labelled = _NULL
            self.peer_received_failures: Labelled = _NULL
            self.snapshot_sends: tuple[Labelled, Labelled, Labelled] = (_NULL, _NULL, _NULL)
            self.snapshot_receives: tuple[Labelled, Labelled, Labelled] = (_NULL, _NULL, _NULL)
            self.read_indexes_failed: Count = _NULL
            self.slow_read_indexes: Count = _NULL
            self.slow_applies: Count = _NULL
            self.snapshot_seconds: Observe = _NULL
            self.defrag_seconds: Observe = _NULL
            self.defrag_inflight: Setting = _NULL
            self._defrags = 0
            self.kv = KvCounts((), (), ())
            self.lease = LeaseCounts(_NULL, _NULL, _NULL, _NULL, _NULL, self.kv)
            self.health_success = self.health_failures = GoNamedCounter("", "")
            self.go_named: tuple[GoNamedCounter, ...] = ()
            self.heartbeats = LateHeartbeats(_NULL, heartbeat_seconds)
            return
        r = self.registry
        ProcessCollector(registry=r)
        # Buckets from 1 ms to 8.192 s, as etcd's wal/metrics.go and mvcc/backend/metrics.go.
        self.wal_fsync_seconds = Histogram(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
            buckets=exponential_buckets(0.001, 2, 14),
            registry=r,
        )
        self.backend_commit_seconds = Histogram(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
            buckets=exponential_buckets(0.001, 2, 14),
            registry=r,
        )
        self.proposals_failed = Counter(
            "etcd_server_proposals_failed_total", "The total number of failed proposals seen.", registry=r
        )
        # etcd 3.4 counts each under etcd_ and (until 3.5) etcd_debugging_ alike.
        self.puts = (
            Counter("etcd_mvcc_put_total", "Total number of puts seen by this member.", registry=r),
            Counter("etcd_debugging_mvcc_put_total", "Total number of puts seen by this member.", registry=r),
        )
        self.peer_sent_bytes = Counter(
            "etcd_network_peer_sent_bytes_total",
            "The total number of bytes sent to peers.",
            ["To"],
            registry=r,
        )
        self.peer_received_bytes = Counter(
            "etcd_network_peer_received_bytes_total",
            "The total number of bytes received from peers.",
            ["From"],
            registry=r,
        )
        # From 0.1 ms to 3.2768 s, as etcd's rafthttp/metrics.go.
        self.peer_round_trip_seconds = Histogram(
            "etcd_network_peer_round_trip_time_seconds",
            "Round-Trip-Time histogram between peers",
            ["To"],
            buckets=exponential_buckets(0.0001, 2, 16),
            registry=r,
        )
        self.peer_sent_failures = Counter(
            "etcd_network_peer_sent_failures_total",
            "The total number of send failures from peers.",
            ["To"],
            registry=r,
        )
        self.peer_received_failures = Counter(
            "etcd_network_peer_received_failures_total",
            "The total number of receive failures from peers.",
            ["From"],
            registry=r,
        )
        # (successes, failures, seconds of the successful ones) per peer, as etcd's rafthttp counts them.
        self.snapshot_sends = _snapshot_transfers(r, "send", "To")
        self.snapshot_receives = _snapshot_transfers(r, "receive", "From")
        self.read_indexes_failed = Counter(
            "etcd_server_read_indexes_failed_total",
            "The total number of failed read indexes seen.",
            registry=r,
        )
        self.slow_read_indexes = Counter(
            "etcd_server_slow_read_indexes_total",
            "The total number of pending read indexes not in sync with leader's "
            "or timed out read index requests.",
            registry=r,
        )
        self.slow_applies = Counter(
            "etcd_server_slow_apply_total",
            "The total number of slow apply requests (likely overloaded from slow disk).",
            registry=r,
        )
        # From 10 ms to 655.36 s and from 100 ms to 409.6 s, as etcd's mvcc/backend/metrics.go.
        self.snapshot_seconds = Histogram(
            "etcd_disk_backend_snapshot_duration_seconds",
            "The latency distribution of backend snapshots.",
            buckets=exponential_buckets(0.01, 2, 17),
            registry=r,
        )
        self.defrag_inflight = Gauge(
            "etcd_disk_defrag_inflight",
            "Whether or not defrag is active on the member. 1 means active, 0 means not.",
            registry=r,
        )
        self._defrags = 0  # Defragment calls running or waiting for the running one
        self.defrag_seconds = Histogram(
            "etcd_disk_backend_defrag_duration_seconds",
            "The latency distribution of backend defragmentation.",
            buckets=exponential_buckets(0.1, 2, 13),
            registry=r,
        )

        def twins(name: str, help_text: str) -> tuple[Counter, Counter]:
            """etcd 3.4 counts each mvcc operation under etcd_ and (until 3.5) etcd_debugging_ alike."""
            return (
                Counter(f"etcd_mvcc_{name}", help_text, registry=r),
                Counter(f"etcd_debugging_mvcc_{name}", help_text, registry=r),
            )

        self.kv = KvCounts(
            twins("range_total", "Total number of ranges seen by this member."),
            twins("delete_total", "Total number of deletes seen by this member."),
            twins("txn_total", "Total number of txns seen by this member."),
            self.slow_applies,
            (
                # From 1 ms to 4.096 s and from 100 ms to 819.2 s, as etcd's mvcc/metrics.go.
                Histogram(
                    "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
                    "Bucketed histogram of db compaction pause duration.",
                    buckets=exponential_buckets(1, 2, 13),
                    registry=r,
                ),
                Histogram(
                    "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
                    "Bucketed histogram of db compaction total duration.",
                    buckets=exponential_buckets(100, 2, 14),
                    registry=r,
                ),
            ),
        )
        self.lease = LeaseCounts(
            Counter("etcd_debugging_lease_granted_total", "The total number of granted leases.", registry=r),
            Counter("etcd_debugging_lease_revoked_total", "The total number of revoked leases.", registry=r),
            Counter(
                "etcd_debugging_lease_renewed_total",
                "The number of renewed leases seen by the leader.",
                registry=r,
            ),
            Counter(
                "etcd_debugging_server_lease_expired_total", "The total number of expired leases.", registry=r
            ),
            Histogram(
                "etcd_debugging_lease_ttl_total",
                "Bucketed histogram of lease TTLs.",
                buckets=exponential_buckets(1, 2, 24),
                registry=r,
            ),
            self.kv,
        )
        self.health_success = GoNamedCounter(
            "etcd_server_health_success", "The total number of successful health checks"
        )
        self.health_failures = GoNamedCounter(
            "etcd_server_health_failures", "The total number of failed health checks"
        )
        self.go_named = (self.health_success, self.health_failures)
        self.heartbeats = LateHeartbeats(
            Counter(
                "etcd_server_heartbeat_send_failures_total",
                "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
                registry=r,
            ),
            heartbeat_seconds,
        )
        r.register(OsFds())

    @contextmanager
    def defragmenting(self) -> Iterator[None]:
        """A Defragment call (on the event loop): etcd_disk_defrag_inflight meanwhile, then its duration."""
        self._defrags += 1
        self.defrag_inflight.set(1)
        started = time.perf_counter()
        try:
            yield
            self.defrag_seconds.observe(time.perf_counter() - started)
        finally:
            self._defrags -= 1
            self.defrag_inflight.set(1 if self._defrags else 0)

    def snapshot_sent(self, peer_id: int, ok: bool, seconds: float) -> None:
        """A snapshot stream to `peer_id` ended: delivered in `seconds`, or failed (a sent failure too)."""
        self._snapshot_done(self.snapshot_sends, f"{peer_id:x}", ok, seconds)
        if not ok:
            self.peer_sent_failures.labels(f"{peer_id:x}").inc()

    def snapshot_received(self, peer_id: int, ok: bool, seconds: float) -> None:
        """A raft snapshot stream from `peer_id` ended: received and checked in `seconds`, or failed."""
        self._snapshot_done(self.snapshot_receives, f"{peer_id:x}", ok, seconds)

    @staticmethod
    def _snapshot_done(
        instruments: tuple[Labelled, Labelled, Labelled], peer: str, ok: bool, seconds: float
    ) -> None:
        success, failures, durations = instruments
        if ok:
            success.labels(peer).inc()
            durations.labels(peer).observe(seconds)
        else:
            failures.labels(peer).inc()

    def register(self, collector: Collector) -> None:
        """Add a collector read at every scrape (`MemberFigures`, the gRPC metrics)."""
        if self.enabled:
            self.registry.register(collector)


NO_METRICS = Metrics(enabled=False)


class _WithoutCreated:
    """The registry's metrics without prometheus-client's ``_created`` series (etcd has none)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self.registry.collect():
            metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric


def render(metrics: Metrics) -> bytes:
    """The member's metrics in Prometheus' text format (version 0.0.4), as etcd's /metrics serves them."""
    exact = "".join(counter.text() for counter in metrics.go_named).encode()
    return generate_latest(_WithoutCreated(metrics.registry)) + exact


class OsFds:
    """os_fd_used and os_fd_limit, read at each scrape (etcd samples them every ten minutes)."""

    def collect(self) -> Iterator[Metric]:
        try:
            used = len(os.listdir("/proc/self/fd"))
        except OSError:
            return  # not Linux: etcd gives up on them likewise
        yield _gauge("os_fd_used", "The number of used file descriptors.", used)
        yield _gauge(
            "os_fd_limit", "The file descriptor limit.", resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        )


class StoreCounts:
    """StoreCounts counts the applied puts and the keys alive in the store, from the applied events.

    Every put makes one PUT event (etcd_mvcc_put_total counts puts).  The live keys
    (etcd_debugging_mvcc_keys_total) are not scanned at every scrape: the first read counts
    the store once, and afterwards the events move the figure, a put that creates a key
    (version 1) adding one and a delete removing one.  A snapshot install replaces the
    store: `reset` makes the next read count it again.
    """

    def __init__(self, metrics: Metrics, count_store: Callable[[], int]) -> None:
        self._puts = metrics.puts
        self._count_store = count_store
        self._keys: int | None = None  # None: not counted since the start or the last reset

    def on_events(self, events: Iterable[kv_pb2.Event]) -> None:
        puts = created = deleted = 0
        for event in events:
            if event.type == kv_pb2.Event.DELETE:
                deleted += 1
            else:
                puts += 1
                created += event.kv.version == 1
        for counter in self._puts if puts else ():
            counter.inc(puts)
        if self._keys is not None:
            self._keys += created - deleted

    def reset(self) -> None:
        self._keys = None

    def live_keys(self) -> int:
        # Below zero only if a count raced an apply batch (a scrape off the member's loop): count again
        # rather than fail the apply path over a figure.
        if self._keys is None or self._keys < 0:
            self._keys = self._count_store()
        return self._keys


@dataclass(frozen=True)
class Figures:
    """What `MemberFigures` reads at scrape time, each a cheap call on the member's parts."""

    member_id: int
    leader_id: Callable[[], int]
    is_leader: Callable[[], bool]
    is_learner: Callable[[], bool]
    leaders_seen: Callable[[], int]
    committed_index: Callable[[], int]
    applied_index: Callable[[], int]
    pending_proposals: Callable[[], int]
    snapshot_installing: Callable[[], bool]
    quota_bytes: Callable[[], int]
    db_size_bytes: Callable[[], int]
    current_revision: Callable[[], int]
    compact_revision: Callable[[], int]
    live_keys: Callable[[], int]
    watchers: Callable[[], int]
    slow_watchers: Callable[[], int]
    events_sent: Callable[[], int]
    pending_events: Callable[[], int]
    cluster_version: Callable[[], str]


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def _one(name: str, help_text: str, label: str, label_value: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=[label])
    family.add_metric([label_value], 1)
    return family


class MemberFigures:
    """MemberFigures is the collector of what the member already knows, read at each scrape."""

    def __init__(self, figures: Figures) -> None:
        self.f = figures

    def collect(self) -> Iterator[Metric]:
        f = self.f
        yield _gauge(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            f.leader_id() != 0,
        )
        yield _gauge(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            f.is_leader(),
        )
        yield _gauge(
            "etcd_server_is_learner",
            "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            f.is_learner(),
        )
        yield CounterMetricFamily(
            "etcd_server_leader_changes_seen_total",
            "The number of leader changes seen.",
            value=f.leaders_seen(),
        )
        # Gauges in etcd despite the _total (set to the raft indexes).
        yield _gauge(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            f.committed_index(),
        )
        yield _gauge(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            f.applied_index(),
        )
        yield _gauge(
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
            f.pending_proposals(),
        )
        yield _gauge(
            "etcd_server_snapshot_apply_in_progress_total",
            "1 if the server is applying the incoming snapshot. 0 if none.",
            f.snapshot_installing(),
        )
        yield _gauge(
            "etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.", f.quota_bytes()
        )
        yield _one(
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version.",
            "server_version",
            ETCD_RELEASE,
        )
        yield _one(
            "etcd_server_id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
            "server_id",
            f"{f.member_id:x}",
        )
        version = f.cluster_version()
        if version:
            yield _one(
                "etcd_cluster_version",
                "Which version is running. 1 for 'cluster_version' label with current cluster version",
                "cluster_version",
                version,
            )
        size = f.db_size_bytes()
        for name in ("etcd_mvcc_db_total_size_in_bytes", "etcd_debugging_mvcc_db_total_size_in_bytes"):
            yield _gauge(name, "Total size of the underlying database physically allocated in bytes.", size)
        # LevelDB keeps no free-page list: until compaction reclaims it, every byte on disk is in use.
        yield _gauge(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            size,
        )
        yield _gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.", f.live_keys())
        yield _gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", f.watchers())
        yield _gauge(
            "etcd_debugging_mvcc_slow_watcher_total",
            "Total number of unsynced slow watchers.",
            f.slow_watchers(),
        )
        yield CounterMetricFamily(
            "etcd_debugging_mvcc_events_total",
            "Total number of events sent by this member.",
            value=f.events_sent(),
        )
        yield _gauge(
            "etcd_debugging_mvcc_pending_events_total",
            "Total number of pending events to be sent.",
            f.pending_events(),
        )
        yield _gauge(
            "etcd_debugging_mvcc_current_revision", "The current revision of store.", f.current_revision()
        )
        yield _gauge(
            "etcd_debugging_mvcc_compact_revision",
            "The revision of the last compaction in store.",
            f.compact_revision(),
        )


def _snapshot_transfers(r: CollectorRegistry, verb: str, label: str) -> tuple[Counter, Counter, Histogram]:
    """etcd's rafthttp counters of raft snapshot sends or receives per peer: successes, failures, seconds."""
    return (
        Counter(
            f"etcd_network_snapshot_{verb}_success",
            f"Total number of successful snapshot {verb}s",
            [label],
            registry=r,
        ),
        Counter(
            f"etcd_network_snapshot_{verb}_failures",
            f"Total number of snapshot {verb} failures",
            [label],
            registry=r,
        ),
        Histogram(
            f"etcd_network_snapshot_{verb}_total_duration_seconds",
            f"Total latency distributions of v3 snapshot {verb}s",
            [label],
            buckets=exponential_buckets(0.1, 2, 10),
            registry=r,
        ),
    )
