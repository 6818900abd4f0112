"""The counters etcd moves as clients work (mvcc ranges, deletes, txns; leases; snapshot, defrag; /health),
moved by the same etcdctl commands on a reference etcd 3.4 and on etcdpy, and compared.

etcd counts each Range, Put and DeleteRange of an mvcc transaction and a txn for a transaction
doing more than one (a put with --prev-kv reads first: a range and a txn more); the same script
of commands must move etcdpy's figures by as much as etcd's.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from typing import Any

import grpc
from cluster_support import etcdctl, running_cluster
from procs import ETCDCTL_BIN, ServerProcess
from test_metrics import get, scrape, value

from etcdpy.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.chaos.cluster import wait_until
from etcdpy.client import Client

# Samples whose change the script below must reproduce (full sample names, as the text format has them).
COUNTED = [
    "etcd_mvcc_range_total",
    "etcd_debugging_mvcc_range_total",
    "etcd_mvcc_put_total",
    "etcd_mvcc_delete_total",
    "etcd_debugging_mvcc_delete_total",
    "etcd_mvcc_txn_total",
    "etcd_debugging_mvcc_txn_total",
    "etcd_debugging_lease_granted_total",
    "etcd_debugging_lease_revoked_total",
    "etcd_debugging_lease_renewed_total",
    "etcd_debugging_lease_ttl_total_count",
    "etcd_debugging_lease_ttl_total_sum",
    "etcd_debugging_server_lease_expired_total",
    "etcd_disk_backend_snapshot_duration_seconds_count",
    "etcd_disk_backend_defrag_duration_seconds_count",
    "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds_count",
]


def sample(families: dict[str, Any], name: str) -> float:
    """The value of the sample `name` (no labels) in a parsed scrape."""
    for family in families.values():
        for s in family.samples:
            if s.name == name and not s.labels:
                return float(s.value)
    raise AssertionError(f"no sample {name}")


def txn(endpoint: str, script: str) -> str:
    """etcdctl txn, its compares and branches read from stdin (non-interactive)."""
    assert ETCDCTL_BIN is not None
    return subprocess.run(
        [ETCDCTL_BIN, "--endpoints", endpoint, "txn"],
        input=script,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        env={"ETCDCTL_API": "3"},
    ).stdout


def lease_id(output: str) -> str:
    found = re.search(r"lease ([0-9a-f]+) granted", output)
    assert found is not None, output
    return found.group(1)


def run_script(server: ServerProcess, tmp: str) -> None:
    """The same client work on either server: each command moves some of the COUNTED samples."""
    ep = server.endpoint
    etcdctl(ep, "put", "a", "1")
    etcdctl(ep, "put", "--prev-kv", "a", "2")  # a range before the put: one txn
    etcdctl(ep, "put", "b", "1")
    etcdctl(ep, "get", "a")
    etcdctl(ep, "get", "--consistency=s", "a", "z")
    etcdctl(ep, "del", "nothing")  # a delete that deletes nothing counts all the same
    etcdctl(ep, "del", "--prev-kv", "b")
    assert txn(ep, 'mod("a") > "0"\n\nput a 3\nget a\ndel c\n\nput never 1\n\n').startswith("SUCCESS")
    assert txn(ep, 'value("a") = "nope"\nversion("a") > "0"\n\nput never 1\n\nget a\nget b\n\n').startswith(
        "FAILURE"
    )
    assert txn(ep, 'create("a") > "0"\n\nget a\nget b\n\n\n').startswith("SUCCESS")  # served as a read
    revision = re.search(r"\"revision\":(\d+)", etcdctl(ep, "get", "a", "-w", "json").stdout)
    assert revision is not None
    etcdctl(ep, "compaction", revision.group(1))
    granted = lease_id(etcdctl(ep, "lease", "grant", "600").stdout)
    etcdctl(ep, "put", "--lease", granted, "leased1", "v")
    etcdctl(ep, "put", "--lease", granted, "leased2", "v")
    etcdctl(ep, "lease", "keep-alive", "--once", granted)
    etcdctl(ep, "lease", "revoke", granted)  # two attached keys: two deletes in one txn
    etcdctl(ep, "snapshot", "save", f"{tmp}/{server.kind}.db")
    etcdctl(ep, "defrag")
    short = lease_id(etcdctl(ep, "lease", "grant", "2").stdout)
    etcdctl(ep, "put", "--lease", short, "expiring", "v")
    wait_until(
        lambda: sample(scrape(server), "etcd_debugging_server_lease_expired_total") == 1,
        30,
        f"{server.kind}'s leader revokes the expired lease",
    )


def moves(server: ServerProcess, work: Callable[[], None]) -> dict[str, float]:
    before = scrape(server)
    work()
    after = scrape(server)
    return {name: sample(after, name) - sample(before, name) for name in COUNTED}


def test_the_same_commands_move_the_counters_as_on_etcd(
    etcd_server: ServerProcess, etcdpy_server: ServerProcess, tmp_path: Any
) -> None:
    theirs = moves(etcd_server, lambda: run_script(etcd_server, str(tmp_path)))
    ours = moves(etcdpy_server, lambda: run_script(etcdpy_server, str(tmp_path)))
    assert all(theirs[name] > 0 for name in COUNTED), theirs  # the script moves every one of them
    assert ours == theirs


def health_lines(server: ServerProcess) -> dict[str, str]:
    """The raw /metrics lines about etcd_server_health_*: TYPE line or sample name -> the rest of the line.

    Read as text: prometheus-client's parser renames a counter's sample to <name>_total.
    """
    status, _, body = get(f"{server.client_url}/metrics")
    assert status == 200
    found = {}
    for line in body.decode().splitlines():
        if line.startswith("# TYPE etcd_server_health_"):
            found[line.rsplit(" ", 1)[0]] = line.rsplit(" ", 1)[1]
        elif line.startswith("etcd_server_health_"):
            name, value = line.split(" ")
            found[name] = value
    return found


def test_health_checks_are_counted_under_etcds_exact_names(
    etcd_server: ServerProcess, etcdpy_server: ServerProcess
) -> None:
    """etcd's two health counters have no _total: neither in the TYPE line nor in the sample's name."""
    for server in (etcd_server, etcdpy_server):
        before = health_lines(server)
        assert get(f"{server.client_url}/health")[0] == 200
        assert get(f"{server.client_url}/health?exclude=NOSPACE")[0] == 200
        after = health_lines(server)
        assert sorted(after) == [
            "# TYPE etcd_server_health_failures",
            "# TYPE etcd_server_health_success",
            "etcd_server_health_failures",
            "etcd_server_health_success",
        ], server.kind
        assert after["# TYPE etcd_server_health_success"] == "counter"
        assert after["# TYPE etcd_server_health_failures"] == "counter"
        assert float(after["etcd_server_health_success"]) - float(before["etcd_server_health_success"]) == 2
        assert after["etcd_server_health_failures"] == before["etcd_server_health_failures"]


def op(**request: Any) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(**request)


def grpc_work(server: ServerProcess) -> None:
    """Requests etcdctl cannot make: nested txns, ignore_value, a txn with ranges only on one branch."""
    Put, Range, Delete, Txn = (
        rpc_pb2.PutRequest,
        rpc_pb2.RangeRequest,
        rpc_pb2.DeleteRangeRequest,
        rpc_pb2.TxnRequest,
    )
    with grpc.insecure_channel(server.endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)  # type: ignore[no-untyped-call]
        kv.Put(Put(key=b"g1", value=b"1"))
        kv.Put(Put(key=b"g1", ignore_value=True))  # reads the old value first: a range and a txn
        exists = rpc_pb2.Compare(
            key=b"g1", target=rpc_pb2.Compare.VERSION, result=rpc_pb2.Compare.GREATER, version=0
        )
        missing = rpc_pb2.Compare(
            key=b"g1", target=rpc_pb2.Compare.VERSION, result=rpc_pb2.Compare.EQUAL, version=0
        )
        inner = Txn(
            compare=[exists, exists],
            success=[
                op(request_put=Put(key=b"g2", value=b"2", prev_kv=True)),
                op(request_range=Range(key=b"g1")),
            ],
            failure=[op(request_delete_range=Delete(key=b"g1"))],
        )
        kv.Txn(
            Txn(compare=[exists], success=[op(request_txn=inner), op(request_delete_range=Delete(key=b"g9"))])
        )
        failing_inner = Txn(
            compare=[missing], failure=[op(request_delete_range=Delete(key=b"g2", prev_kv=True))]
        )
        kv.Txn(Txn(compare=[missing, exists], failure=[op(request_txn=failing_inner)]))
        kv.Txn(Txn(success=[op(request_range=Range(key=b"g1", serializable=True))]))  # no compare, one read
        kv.Txn(
            Txn(compare=[exists], success=[op(request_txn=Txn(success=[op(request_range=Range(key=b"g"))]))])
        )


def test_txns_nested_and_with_checks_count_as_on_etcd(
    etcd_server: ServerProcess, etcdpy_server: ServerProcess
) -> None:
    theirs = moves(etcd_server, lambda: grpc_work(etcd_server))
    ours = moves(etcdpy_server, lambda: grpc_work(etcdpy_server))
    mvcc = [name for name in COUNTED if re.search("_mvcc_(range|put|delete|txn)_total$", name)]
    assert all(theirs[name] > 0 for name in mvcc), theirs
    assert {name: ours[name] for name in mvcc} == {name: theirs[name] for name in mvcc}


def test_a_follower_caught_up_by_a_raft_snapshot_moves_the_snapshot_transfer_counters(tmp_path: Any) -> None:
    """The leader's log no longer reaches a follower that was down: it sends the state as a snapshot."""
    with running_cluster(
        "etcdpy", tmp_path, 3, extra_args=["--snapshot-count", "20", "--snapshot-catchup-entries", "5"]
    ) as cluster:
        leader = cluster.wait_leader()
        behind = next(m for m in cluster.members if m is not leader)
        leader_id = scrape(leader)["etcd_server_id"].samples[0].labels["server_id"]
        behind_id = scrape(behind)["etcd_server_id"].samples[0].labels["server_id"]
        behind.stop()
        with Client([leader.endpoint], command_timeout=30.0) as client:
            for i in range(60):
                client.put(f"/snap/{i:02d}".encode(), b"v")
        # Messages to a member that is down are dropped, and counted.
        assert value(scrape(leader), "etcd_network_peer_sent_failures_total", To=behind_id) > 0
        behind.start()
        wait_until(
            lambda: (
                "etcd_network_snapshot_receive_success" in scrape(behind)
                and "etcd_network_snapshot_send_success" in scrape(leader)
            ),
            60,
            "the follower receives a snapshot, and the leader hears it did",
        )
        received = scrape(behind)
        assert value(received, "etcd_network_snapshot_receive_success_total", From=leader_id) == 1
        seconds = "etcd_network_snapshot_receive_total_duration_seconds_count"
        assert value(received, seconds, From=leader_id) == 1
        sent = scrape(leader)
        assert value(sent, "etcd_network_snapshot_send_success_total", To=behind_id) == 1
        assert value(sent, "etcd_network_snapshot_send_total_duration_seconds_count", To=behind_id) == 1
