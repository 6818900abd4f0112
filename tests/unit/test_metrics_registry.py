"""A member's metrics in-process: etcd's names and types, figures that follow the work, no `_created` series.

The member is a one-member cluster in the test process (no port opened); its /metrics text is
parsed with prometheus-client's own parser, as Prometheus would read it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_etcdserver import hold_writes

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server import metrics as m
from etcdpy.server.config import Config
from etcdpy.server.member import Member, open_member
from etcdpy.server.services.grpc_metrics import ETCD_SERVICES, GO_CODES, GrpcMetrics
from etcdpy.server.storage.backend import Backend


@asynccontextmanager
async def started(tmp_path: Path, **config: Any) -> AsyncIterator[Member]:
    """A started one-member member that has published itself."""
    backend = Backend(tmp_path)
    cfg = Config(
        initial_advertise_peer_urls=("http://127.0.0.1:23800",), heartbeat_interval_ms=10, **config
    ).validate()
    member = await open_member(cfg, backend)
    member.start()
    try:
        await member.server.published.wait()
        yield member
    finally:
        await member.stop()
        backend.close()


def run(tmp_path: Path, scenario: Callable[[Member], Awaitable[None]], **config: Any) -> None:
    async def main() -> None:
        async with started(tmp_path, **config) as member:
            await scenario(member)

    asyncio.run(main())


def scrape(member: Member) -> dict[str, Any]:
    """name -> parsed family of the member's /metrics text."""
    return {f.name: f for f in text_string_to_metric_families(m.render(member.metrics).decode())}


def value(families: dict[str, Any], family: str, sample: str | None = None, **labels: str) -> float:
    """The value of one sample (`sample` defaults to the family's own name, counters' with _total)."""
    fam = families[family]
    wanted = sample or (family + "_total" if fam.type == "counter" else family)
    found = [s.value for s in fam.samples if s.name == wanted and s.labels == labels]
    assert len(found) == 1, f"{wanted}{labels}: {found}"
    return float(found[0])


async def put(member: Member, key: bytes) -> None:
    await member.server.propose(
        raft_internal_pb2.InternalRaftRequest(put=rpc_pb2.PutRequest(key=key, value=b"v"))
    )


async def delete(member: Member, key: bytes) -> None:
    await member.server.propose(
        raft_internal_pb2.InternalRaftRequest(delete_range=rpc_pb2.DeleteRangeRequest(key=key))
    )


# The families of the list, with etcd 3.4's types (what Prometheus' parser reports: a counter's
# family name has no _total).
EXPECTED_TYPES = {
    "etcd_server_has_leader": "gauge",
    "etcd_server_is_leader": "gauge",
    "etcd_server_leader_changes_seen": "counter",
    "etcd_server_proposals_committed_total": "gauge",
    "etcd_server_proposals_applied_total": "gauge",
    "etcd_server_proposals_pending": "gauge",
    "etcd_server_proposals_failed": "counter",
    "etcd_disk_wal_fsync_duration_seconds": "histogram",
    "etcd_disk_backend_commit_duration_seconds": "histogram",
    "etcd_mvcc_db_total_size_in_bytes": "gauge",
    "etcd_network_peer_round_trip_time_seconds": "histogram",
    "etcd_network_peer_sent_bytes": "counter",
    "etcd_mvcc_put": "counter",
    "etcd_debugging_mvcc_keys_total": "gauge",
    "etcd_debugging_mvcc_watcher_total": "gauge",
    "etcd_server_quota_backend_bytes": "gauge",
    "etcd_server_version": "gauge",
    "etcd_cluster_version": "gauge",
    "process_cpu_seconds": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_open_fds": "gauge",
}


def test_metrics_text_parses_with_etcds_names_and_types_and_no_created_series(tmp_path: Path) -> None:
    async def scenario(member: Member) -> None:
        await put(member, b"k")
        text = m.render(member.metrics).decode()
        families = {f.name: f.type for f in text_string_to_metric_families(text)}
        assert {name: families.get(name) for name in EXPECTED_TYPES} == EXPECTED_TYPES
        assert "_created" not in text
        assert value(scrape(member), "etcd_server_version", server_version="3.4.23") == 1
        assert value(scrape(member), "etcd_cluster_version", cluster_version="3.4") == 1
        assert value(scrape(member), "etcd_server_id", server_id=f"{member.cluster.local_id:x}") == 1

    run(tmp_path, scenario)


def test_a_lone_member_leads_and_has_seen_one_leader(tmp_path: Path) -> None:
    async def scenario(member: Member) -> None:
        families = scrape(member)
        assert value(families, "etcd_server_has_leader") == 1
        assert value(families, "etcd_server_is_leader") == 1
        assert value(families, "etcd_server_is_learner") == 0
        assert value(families, "etcd_server_leader_changes_seen") == 1

    run(tmp_path, scenario)


def test_writes_move_puts_keys_indexes_and_the_disk_histograms(tmp_path: Path) -> None:
    async def scenario(member: Member) -> None:
        await put(member, b"before")
        before = scrape(member)
        for key in (b"a", b"b", b"c"):
            await put(member, key)
        await put(member, b"a")  # an overwrite: a put, not a new key
        await delete(member, b"b")
        after = scrape(member)

        def moved(family: str, sample: str | None = None) -> float:
            return value(after, family, sample) - value(before, family, sample)

        assert moved("etcd_mvcc_put") == 4
        assert moved("etcd_debugging_mvcc_put") == 4
        assert value(before, "etcd_debugging_mvcc_keys_total") == 1
        assert value(after, "etcd_debugging_mvcc_keys_total") == 3  # before, a, c
        assert moved("etcd_server_proposals_committed_total") == 5
        assert moved("etcd_server_proposals_applied_total") == 5
        assert value(after, "etcd_server_proposals_applied_total") == member.applier.applied_index
        assert value(after, "etcd_server_proposals_pending") == 0
        assert moved("etcd_debugging_mvcc_current_revision") == 5
        # One synced raft log write and one apply batch per write at least (one writer at a time here).
        assert (
            moved("etcd_disk_wal_fsync_duration_seconds", "etcd_disk_wal_fsync_duration_seconds_count") >= 5
        )
        assert (
            moved(
                "etcd_disk_backend_commit_duration_seconds", "etcd_disk_backend_commit_duration_seconds_count"
            )
            >= 5
        )
        assert value(after, "etcd_mvcc_db_total_size_in_bytes") == member.backend.size_bytes()

    run(tmp_path, scenario)


def test_the_quota_gauge_is_the_configured_quota(tmp_path: Path) -> None:
    async def scenario(member: Member) -> None:
        assert value(scrape(member), "etcd_server_quota_backend_bytes") == 123456789

    run(tmp_path, scenario, quota_backend_bytes=123456789)


def test_watchers_are_counted_while_they_watch(tmp_path: Path) -> None:
    async def scenario(member: Member) -> None:
        stream = member.hub.new_stream()
        request = rpc_pb2.WatchCreateRequest(key=b"w")
        stream.create(request)
        assert value(scrape(member), "etcd_debugging_mvcc_watcher_total") == 1
        stream.close()
        assert value(scrape(member), "etcd_debugging_mvcc_watcher_total") == 0

    run(tmp_path, scenario)


def test_a_proposal_that_times_out_is_counted_failed_and_pending_while_it_waits(tmp_path: Path) -> None:
    async def scenario(member: Member) -> None:
        while not member.replication.cluster_version:  # the member's own last proposal at start
            await member.replication.wait_applied(member.applier.applied_index + 1)
        release = threading.Event()
        write_started = asyncio.Event()
        hold_writes(member.server, release, write_started)
        waiting = asyncio.create_task(
            member.server.propose(
                raft_internal_pb2.InternalRaftRequest(put=rpc_pb2.PutRequest(key=b"t", value=b"v")),
                timeout=0.5,
            )
        )
        try:
            await write_started.wait()
            assert value(scrape(member), "etcd_server_proposals_pending") == 1
            with pytest.raises(errors.ErrTimeout):
                await waiting
        finally:
            release.set()
        families = scrape(member)
        assert value(families, "etcd_server_proposals_failed") == 1
        assert value(families, "etcd_server_proposals_pending") == 0

    run(tmp_path, scenario)


def test_extensive_adds_the_grpc_handling_histogram_and_every_method_starts_at_zero(tmp_path: Path) -> None:
    async def scenario(member: Member) -> None:
        basic = m.Metrics()
        GrpcMetrics(basic)
        extensive = m.Metrics(extensive=True)
        grpc_metrics = GrpcMetrics(extensive)
        basic_names = {f.name for f in text_string_to_metric_families(m.render(basic).decode())}
        families = {f.name: f for f in text_string_to_metric_families(m.render(extensive).decode())}
        assert "grpc_server_handling_seconds" not in basic_names
        assert families["grpc_server_handling_seconds"].type == "histogram"
        started = families["grpc_server_started"].samples
        labels = {(s.labels["grpc_service"], s.labels["grpc_method"]): s.labels["grpc_type"] for s in started}
        assert labels[("etcdserverpb.KV", "Range")] == "unary"
        assert labels[("etcdserverpb.Watch", "Watch")] == "bidi_stream"
        assert labels[("etcdserverpb.Lease", "LeaseKeepAlive")] == "bidi_stream"
        assert labels[("grpc.health.v1.Health", "Check")] == "unary"
        assert {service for service, _ in labels} == set(ETCD_SERVICES)
        assert all(s.value == 0 for s in started)
        handled = families["grpc_server_handled"].samples
        assert len(handled) == len(started) * len(GO_CODES)
        assert {s.labels["grpc_code"] for s in handled} >= {"OK", "Canceled", "OutOfRange", "Unavailable"}
        # Election (registered after the metrics in etcd) gets its series at its first call, a code at a time.
        assert grpc_metrics.method("/nosuch.Service/Call") is None
        observe = grpc_metrics.method("/v3electionpb.Election/Observe")
        assert observe is not None and grpc_metrics.method("/v3electionpb.Election/Observe") is observe
        observe.started.inc()
        observe.ended(grpc.StatusCode.CANCELLED, 0.0)
        after = {f.name: f for f in text_string_to_metric_families(m.render(extensive).decode())}
        lazily = [
            s
            for s in after["grpc_server_handled"].samples
            if s.labels["grpc_service"] == "v3electionpb.Election"
        ]
        assert [(s.labels["grpc_type"], s.labels["grpc_code"], s.value) for s in lazily] == [
            ("server_stream", "Canceled", 1.0)
        ]

    run(tmp_path, scenario)


def test_two_members_in_one_process_keep_their_own_figures() -> None:
    first, second = m.Metrics(), m.Metrics()
    first.proposals_failed.inc()
    parsed = {f.name: f for f in text_string_to_metric_families(m.render(second).decode())}
    assert parsed["etcd_server_proposals_failed"].samples[0].value == 0


def test_no_metrics_counts_nothing_and_exports_nothing() -> None:
    m.NO_METRICS.proposals_failed.inc()
    m.NO_METRICS.wal_fsync_seconds.observe(1.0)
    assert m.render(m.NO_METRICS) == b""


def test_live_keys_are_counted_once_then_moved_by_events_and_recounted_after_a_reset() -> None:
    stored = [5]
    counts = m.StoreCounts(m.Metrics(), count_store=lambda: stored[0])
    created = kv_pb2.Event(type=kv_pb2.Event.PUT, kv=kv_pb2.KeyValue(key=b"n", version=1))
    overwritten = kv_pb2.Event(type=kv_pb2.Event.PUT, kv=kv_pb2.KeyValue(key=b"o", version=3))
    deleted = kv_pb2.Event(type=kv_pb2.Event.DELETE, kv=kv_pb2.KeyValue(key=b"d"))
    counts.on_events([created])  # before the first read: the count will include it
    stored[0] = 6
    assert counts.live_keys() == 6
    counts.on_events([created, created, overwritten, deleted])
    assert counts.live_keys() == 7
    stored[0] = 40  # a snapshot installed another store
    counts.reset()
    assert counts.live_keys() == 40
