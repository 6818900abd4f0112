"""/metrics over HTTP on the client URL: etcd 3.4's names, types, help texts and labels, figures that move.

Every scrape is parsed with prometheus-client's parser, as Prometheus reads it.  The reference
etcd's /metrics is the yardstick for the names; a 3-member etcdpy cluster shows the figures
following writes, a leader change and a lost quorum.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cluster_support import ProcCluster, etcdctl, running_cluster
from e2e_support import run_to_exit
from procs import ServerProcess
from prometheus_client.parser import text_string_to_metric_families

from etcdpy.chaos.cluster import wait_until

# The issue's list (counters under the family name Prometheus' parser gives them, without _total).
LISTED = [
    "etcd_server_has_leader",
    "etcd_server_is_leader",
    "etcd_server_leader_changes_seen",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_server_proposals_pending",
    "etcd_server_proposals_failed",
    "etcd_disk_wal_fsync_duration_seconds",
    "etcd_disk_backend_commit_duration_seconds",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_network_peer_round_trip_time_seconds",
    "etcd_network_peer_sent_bytes",
    "etcd_mvcc_put",
    "etcd_debugging_mvcc_keys_total",
    "etcd_debugging_mvcc_watcher_total",
    "etcd_server_quota_backend_bytes",
    "grpc_server_started",
    "grpc_server_handled",
    "etcd_server_version",
    "etcd_cluster_version",
    "process_cpu_seconds",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
    # Beyond the list: what etcd 3.4 exports and etcdpy has a counterpart for.
    "etcd_mvcc_range",
    "etcd_debugging_mvcc_range",
    "etcd_mvcc_delete",
    "etcd_debugging_mvcc_delete",
    "etcd_mvcc_txn",
    "etcd_debugging_mvcc_txn",
    "etcd_debugging_mvcc_put",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_debugging_mvcc_db_total_size_in_bytes",
    "etcd_debugging_mvcc_current_revision",
    "etcd_debugging_mvcc_compact_revision",
    "etcd_debugging_mvcc_slow_watcher_total",
    "etcd_debugging_mvcc_events",
    "etcd_debugging_mvcc_pending_events_total",
    "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
    "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
    "etcd_debugging_lease_granted",
    "etcd_debugging_lease_revoked",
    "etcd_debugging_lease_renewed",
    "etcd_debugging_lease_ttl_total",
    "etcd_debugging_server_lease_expired",
    "etcd_server_health_success",
    "etcd_server_health_failures",
    "etcd_server_slow_apply",
    "etcd_server_read_indexes_failed",
    "etcd_server_heartbeat_send_failures",
    "etcd_server_slow_read_indexes",
    "etcd_server_snapshot_apply_in_progress_total",
    "etcd_server_is_learner",
    "etcd_server_id",
    "etcd_disk_backend_snapshot_duration_seconds",
    "etcd_disk_backend_defrag_duration_seconds",
    "etcd_disk_defrag_inflight",
    "etcd_network_peer_received_bytes",
    "os_fd_used",
    "os_fd_limit",
]
# Families etcd lists once a peer is down (a labelled family has no sample before its first failure).
LISTED_WITH_A_PEER_DOWN = ["etcd_network_peer_sent_failures"]


def get(url: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def scrape(member: ServerProcess) -> dict[str, Any]:
    status, content_type, body = get(f"{member.client_url}/metrics")
    assert status == 200 and content_type.startswith("text/plain"), (status, content_type)
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def value(families: dict[str, Any], sample: str, **labels: str) -> float:
    """One sample's value, by its full name (a counter's with _total) and labels."""
    for family in families.values():
        for s in family.samples:
            if s.name == sample and s.labels == labels:
                return float(s.value)
    raise AssertionError(f"no sample {sample}{labels}")


def shape(family: Any) -> tuple[str, str, frozenset[str]]:
    """What must agree with etcd: type, help text and the label names its samples carry."""
    labels = frozenset(name for s in family.samples for name in s.labels if name != "le")
    return family.type, family.documentation, labels


def test_listed_metrics_have_etcds_names_types_help_and_labels(tmp_path: Path) -> None:
    """Three members each, so the peer metrics exist on both sides (etcd lists a family with samples only)."""
    (tmp_path / "etcd").mkdir()
    (tmp_path / "py").mkdir()
    with (
        running_cluster("etcd", tmp_path / "etcd", 3) as etcd,
        running_cluster("etcdpy", tmp_path / "py", 3) as py,
    ):
        for cluster in (etcd, py):
            etcdctl(cluster.endpoints, "put", "k", "v")
            cluster.wait_leader()
        # etcd lists a family once it has a sample: the peer round trip after its first probe (a few s).
        wait_until(
            lambda: all(name in scrape(etcd.wait_leader()) for name in LISTED),
            30,
            "etcd never listed them all",
        )
        theirs = scrape(etcd.wait_leader())
        ours = scrape(py.wait_leader())
        assert {name: shape(ours[name]) for name in LISTED if name in ours} == {
            name: shape(theirs[name]) for name in LISTED
        }
        ours_started = {
            (s.labels["grpc_service"], s.labels["grpc_method"]) for s in ours["grpc_server_started"].samples
        }
        theirs_started = {
            (s.labels["grpc_service"], s.labels["grpc_method"]) for s in theirs["grpc_server_started"].samples
        }
        # etcdpy's protos add KV.RangeStream (beyond etcd), Maintenance.Downgrade and Auth.AuthStatus
        # (etcd 3.5), and grpcio's health service has List besides Check and Watch.
        beyond_34 = {
            ("etcdserverpb.KV", "RangeStream"),
            ("etcdserverpb.Maintenance", "Downgrade"),
            ("etcdserverpb.Auth", "AuthStatus"),
            ("grpc.health.v1.Health", "List"),
        }
        assert ours_started == theirs_started | beyond_34

        # A follower stopped: the leader's sends to it fail, and both list the failures' family.
        for cluster in (etcd, py):
            leader = cluster.wait_leader()
            next(m for m in cluster.members if m is not leader).stop()
        for cluster in (etcd, py):
            wait_until(
                lambda c=cluster: all(name in scrape(c.wait_leader()) for name in LISTED_WITH_A_PEER_DOWN),
                30,
                f"{cluster.kind} counts the sends that failed",
            )
        theirs, ours = scrape(etcd.wait_leader()), scrape(py.wait_leader())
        assert {name: shape(ours[name]) for name in LISTED_WITH_A_PEER_DOWN} == {
            name: shape(theirs[name]) for name in LISTED_WITH_A_PEER_DOWN
        }


def _writes_move_the_figures(cluster: ProcCluster) -> None:
    leader = cluster.wait_leader()
    before = {m.name: scrape(m) for m in cluster.members}
    for i in range(10):
        etcdctl(leader.endpoint, "put", f"key{i}", "v")
    etcdctl(leader.endpoint, "put", "key0", "again")  # an overwrite: a put, not a new key
    wait_until(
        lambda: all(
            value(scrape(m), "etcd_mvcc_put_total") - value(before[m.name], "etcd_mvcc_put_total") == 11
            for m in cluster.members
        ),
        20,
        "every member applies the eleven puts",
    )
    for m in cluster.members:
        after = scrape(m)
        assert value(after, "etcd_debugging_mvcc_keys_total") == 10
        committed = "etcd_server_proposals_committed_total"
        assert value(after, committed) - value(before[m.name], committed) >= 11
        assert value(after, "etcd_server_is_leader") == (1 if m is leader else 0)
        assert value(after, "etcd_server_has_leader") == 1
        fsyncs = "etcd_disk_wal_fsync_duration_seconds_count"
        assert value(after, fsyncs) > value(before[m.name], fsyncs)
    on_leader = scrape(leader)
    ok_puts = value(
        on_leader,
        "grpc_server_handled_total",
        grpc_code="OK",
        grpc_method="Put",
        grpc_service="etcdserverpb.KV",
        grpc_type="unary",
    )
    assert ok_puts == 11
    for follower in (m for m in cluster.members if m is not leader):
        follower_id = scrape(follower)["etcd_server_id"].samples[0].labels["server_id"]
        sent = "etcd_network_peer_sent_bytes_total"
        assert value(on_leader, sent, To=follower_id) > value(before[leader.name], sent, To=follower_id)
        assert value(on_leader, "etcd_network_peer_round_trip_time_seconds_count", To=follower_id) > 0


def test_figures_follow_writes_a_leader_change_and_a_lost_quorum(tmp_path: Path) -> None:
    with running_cluster("etcdpy", tmp_path, 3) as cluster:
        _writes_move_the_figures(cluster)

        old_leader = cluster.wait_leader()
        survivors = [m for m in cluster.members if m is not old_leader]
        seen = {m.name: value(scrape(m), "etcd_server_leader_changes_seen_total") for m in survivors}
        old_leader.stop()
        new_leader = cluster.wait_leader()
        assert new_leader is not old_leader
        for m in survivors:
            assert value(scrape(m), "etcd_server_leader_changes_seen_total") > seen[m.name]
            healthy = value(scrape(m), "etcd_server_health_success_total")  # the parser's name; see counts
            assert get(f"{m.client_url}/health")[:2] == (200, "text/plain; charset=utf-8")
            assert value(scrape(m), "etcd_server_health_success_total") == healthy + 1

        # One of three left: no quorum, so no leader, and /health says so.
        last = next(m for m in survivors if m is not new_leader)
        new_leader.stop()
        wait_until(
            lambda: value(scrape(last), "etcd_server_has_leader") == 0, 20, "the last member loses its leader"
        )
        assert value(scrape(last), "etcd_server_is_leader") == 0
        failures = value(scrape(last), "etcd_server_health_failures_total")
        assert get(f"{last.client_url}/health") == (503, "text/plain; charset=utf-8", b'{"health":"false"}\n')
        assert value(scrape(last), "etcd_server_health_failures_total") == failures + 1


@pytest.mark.server_flags("--metrics", "extensive")
def test_extensive_adds_grpc_handling_time_histograms(etcdpy_server: ServerProcess) -> None:
    etcdctl(etcdpy_server.endpoint, "put", "k", "v")
    families = scrape(etcdpy_server)
    labels = {"grpc_method": "Put", "grpc_service": "etcdserverpb.KV", "grpc_type": "unary"}
    assert families["grpc_server_handling_seconds"].type == "histogram"
    assert value(families, "grpc_server_handling_seconds_count", **labels) == 1
    assert value(families, "grpc_server_handled_total", grpc_code="OK", **labels) == 1


def test_basic_has_no_grpc_handling_time_histograms(etcdpy_server: ServerProcess) -> None:
    assert "grpc_server_handling_seconds" not in scrape(etcdpy_server)


def test_an_unknown_metrics_level_is_refused_with_one_line(tmp_path: Path) -> None:
    """etcd treats any level but "extensive" as basic; a typo here is refused rather than ignored."""
    result = run_to_exit(ServerProcess("etcdpy", tmp_path / "data", extra_args=["--metrics", "everything"]))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        'etcdpy: error verifying flags, unknown --metrics "everything", use basic or extensive. '
        "See 'etcdpy server --help'."
    )
