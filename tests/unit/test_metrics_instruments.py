"""The counters added beside the registry's: Go-named counters, watch events, file descriptors, NO_METRICS.

In-process (a one-member member of test_metrics_registry.py); what etcd would count is compared with
a live etcd in tests/e2e/test_metrics_counts.py.
"""

from __future__ import annotations

import resource
from pathlib import Path

import pytest
from lease_support import Member as LeaseMember
from prometheus_client.parser import text_string_to_metric_families
from test_metrics_registry import put, run, scrape, value
from test_snapshot_spool import META, spool

from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.server import metrics as m
from etcdpy.server.consensus import snapshots
from etcdpy.server.member import Member
from etcdpy.server.storage import snapshot


def test_go_named_counters_keep_their_name_in_the_text() -> None:
    metrics = m.Metrics()
    metrics.health_success.inc()
    metrics.health_success.inc()
    lines = m.render(metrics).decode().splitlines()
    assert "# TYPE etcd_server_health_success counter" in lines
    assert "etcd_server_health_success 2.0" in lines
    assert "etcd_server_health_failures 0.0" in lines
    assert not any(line.startswith("etcd_server_health_success_total") for line in lines)
    # The whole text still parses (the parser files the sample under <name>_total, as it does etcd's).
    families = {f.name: f for f in text_string_to_metric_families("\n".join(lines) + "\n")}
    assert families["etcd_server_health_success"].type == "counter"


def test_no_metrics_still_counts_nothing_and_exports_nothing() -> None:
    m.NO_METRICS.health_failures.inc()
    m.NO_METRICS.kv.range()
    m.NO_METRICS.lease.revoked(3)
    m.NO_METRICS.snapshot_sent(1, False, 0.0)
    m.NO_METRICS.kv.applied(10.0)
    assert m.NO_METRICS.kv.compaction_step(lambda records: records > 0, 5) is True
    assert m.render(m.NO_METRICS) == b""


def test_a_slow_apply_batch_is_counted() -> None:
    metrics = m.Metrics()
    metrics.kv.applied(m.SLOW_APPLY_SECONDS / 2)
    metrics.kv.applied(m.SLOW_APPLY_SECONDS * 2)
    families = {f.name: f for f in text_string_to_metric_families(m.render(metrics).decode())}
    assert value(families, "etcd_server_slow_apply") == 1


def test_snapshot_transfers_are_counted_per_peer() -> None:
    metrics = m.Metrics()
    metrics.snapshot_sent(0xA1, True, 0.3)
    metrics.snapshot_sent(0xA1, False, 0.0)
    metrics.snapshot_received(0xB2, True, 0.2)
    families = {f.name: f for f in text_string_to_metric_families(m.render(metrics).decode())}
    assert value(families, "etcd_network_snapshot_send_success", To="a1") == 1
    assert value(families, "etcd_network_snapshot_send_failures", To="a1") == 1
    assert value(families, "etcd_network_peer_sent_failures", To="a1") == 1
    seconds = "etcd_network_snapshot_send_total_duration_seconds"
    assert value(families, seconds, seconds + "_count", To="a1") == 1
    assert value(families, "etcd_network_snapshot_receive_success", From="b2") == 1


def test_file_descriptors_are_read_at_scrape(tmp_path: Path) -> None:
    async def scenario(member: Member) -> None:
        before = value(scrape(member), "os_fd_used")
        held = [open(tmp_path / f"held{i}", "w") for i in range(40)]  # noqa: SIM115 (closed below)
        try:
            # At least these (LevelDB's threads may open or close a file meanwhile).
            assert value(scrape(member), "os_fd_used") >= before + 40
        finally:
            for file in held:
                file.close()
        assert value(scrape(member), "os_fd_limit") == resource.getrlimit(resource.RLIMIT_NOFILE)[0]

    run(tmp_path, scenario)


def test_watch_events_are_pending_until_sent_then_counted(tmp_path: Path) -> None:
    async def scenario(member: Member) -> None:
        stream = member.hub.new_stream()
        stream.create(rpc_pb2.WatchCreateRequest(key=b"w"))
        created = await stream.next()
        assert created is not None and created.created
        await put(member, b"w")
        await put(member, b"w")
        queued = scrape(member)
        assert value(queued, "etcd_debugging_mvcc_pending_events_total") == 2
        assert value(queued, "etcd_debugging_mvcc_events") == 0
        events = await stream.next()
        assert events is not None and len(events.events) == 2
        sent = scrape(member)
        assert value(sent, "etcd_debugging_mvcc_pending_events_total") == 0
        assert value(sent, "etcd_debugging_mvcc_events") == 2
        stream.close()

    run(tmp_path, scenario)


class Tally:
    """A counter that only counts."""

    def __init__(self) -> None:
        self.count = 0.0

    def inc(self, amount: float = 1) -> None:
        self.count += amount


def test_a_heartbeat_later_than_two_intervals_in_the_same_term_is_a_send_failure() -> None:
    now = [0.0]
    failures = Tally()
    late = m.LateHeartbeats(failures, 0.1, clock=lambda: now[0])
    for at, peer, term in [
        (0.0, 1, 5),
        (0.15, 1, 5),  # on time (within two intervals)
        (0.2, 2, 5),  # another peer's first
        (0.5, 1, 5),  # 0.35 s after the last one to peer 1: late
        (2.0, 1, 6),  # a new term starts over
        (2.1, 1, 6),
    ]:
        now[0] = at
        late.sent(peer, term)
    assert failures.count == 1


def test_a_snapshot_install_is_in_progress_from_its_start_until_installed(tmp_path: Path) -> None:
    """etcd_server_snapshot_apply_in_progress_total reads `installing`: true across the install's batches."""
    source, target = LeaseMember(tmp_path / "source"), LeaseMember(tmp_path / "target")
    try:
        for i in range(30):
            source.put(b"k%02d" % i, b"v")
        spooled = spool(snapshot.spool_dir(target.backend.data_dir), source.backend, META.index)
        during: list[bool] = []
        received = snapshots.ReceivedSnapshots(
            target.applier, batch_bytes=200, after_batch=lambda n: during.append(received.installing)
        )
        assert received.keep(META.index, spooled)
        assert not received.installing
        with target.backend.batch(sync=True) as batch:
            received.install(META, batch)
        assert len(during) > 1 and all(during)
        assert received.installing  # written, not yet installed
        received.installed(META.index)
        assert not received.installing
    finally:
        source.close()
        target.close()


def test_defrag_is_in_flight_while_it_runs_and_timed_when_it_ends() -> None:
    metrics = m.Metrics()

    def figures() -> tuple[float, float]:
        families = {f.name: f for f in text_string_to_metric_families(m.render(metrics).decode())}
        seconds = "etcd_disk_backend_defrag_duration_seconds"
        return value(families, "etcd_disk_defrag_inflight"), value(families, seconds, seconds + "_count")

    with metrics.defragmenting():
        with metrics.defragmenting():  # a second call waiting for the first
            assert figures() == (1, 0)
        assert figures() == (1, 1)
    assert figures() == (0, 2)
    with pytest.raises(OSError), metrics.defragmenting():
        raise OSError("disk gone")
    assert figures() == (0, 2)  # a failed defrag is not timed, as in etcd
