"""endpoint status/hashkv/health and member list through the CLI against a real etcd.

Piped, every format is etcdctl's; on a terminal (rich's TTY_COMPATIBLE=1 stands for one) with no
``-w``, ``endpoint status`` is a rich table marking the leader and learners.
"""

from __future__ import annotations

import re
import time

import pytest
from procs import ServerProcess
from test_cli_support import TERMINAL, ids, invoke, plain_lines

pytestmark = pytest.mark.interop


def test_member_list_in_every_format(etcd_server: ServerProcess) -> None:
    ep = f"--endpoints={etcd_server.endpoint}"
    cluster, member = ids(etcd_server.endpoint)
    peer, client = etcd_server.peer_url, etcd_server.client_url
    assert invoke(ep, "member", "list").text == f"{member:x}, started, default, {peer}, {client}, false\n"
    assert invoke(ep, "-w", "json", "member", "list").text == (
        f'{{"header":{{"cluster_id":{cluster},"member_id":{member},"raft_term":2}},'
        f'"members":[{{"ID":{member},"name":"default","peerURLs":["{peer}"],"clientURLs":["{client}"]}}]}}\n'
    )
    assert invoke(ep, "-w", "fields", "member", "list").text == (
        f'"ClusterID" : {cluster}\n"MemberID" : {member}\n"Revision" : 0\n"RaftTerm" : 2\n'
        f'"ID" : {member}\n"Name" : "default"\n"PeerURL" : "{peer}"\n"ClientURL" : "{client}"\n'
        '"IsLearner" : false\n\n'
    )
    table = invoke(ep, "-w", "table", "member", "list").text.splitlines()
    assert re.fullmatch(
        r"\|\s+ID\s+\|\s+STATUS\s+\|\s+NAME\s+\|\s+PEER ADDRS\s+\|\s+CLIENT ADDRS\s+\|\s+IS LEARNER \|",
        table[1],
    )
    assert table[3] == f"| {member:x} | started | default | {peer} | {client} |      false |"


def test_endpoint_status_and_hashkv(etcd_server: ServerProcess) -> None:
    ep = f"--endpoints={etcd_server.endpoint}"
    _, member = ids(etcd_server.endpoint)
    status = invoke(ep, "endpoint", "status").text
    assert re.fullmatch(
        rf"{etcd_server.endpoint}, {member:x}, 3\.4\.\d+, \d+ kB, true, false, 2, (\d+), \1, \n", status
    )
    cluster_status = invoke(ep, "endpoint", "status", "--cluster", "-w", "json").text
    assert cluster_status.startswith(f'[{{"Endpoint":"{etcd_server.client_url}","Status":{{"header":')
    hashes = invoke(ep, "endpoint", "hashkv").text
    assert re.fullmatch(rf"{etcd_server.endpoint}, \d+\n", hashes)
    assert invoke(ep, "endpoint", "--cluster", "hashkv").text.startswith(etcd_server.client_url + ", ")
    future = invoke(ep, "endpoint", "hashkv", "--rev=100")
    assert future.code == 1
    assert future.stderr.splitlines() == [
        f"Failed to get the hash of endpoint {etcd_server.endpoint} "
        "(etcdserver: mvcc: required revision is a future revision)",
        "Error: etcdserver: mvcc: required revision is a future revision",
    ]


def test_endpoint_health_reports_on_stderr_and_fails_for_dead_endpoints(etcd_server: ServerProcess) -> None:
    healthy = invoke(f"--endpoints={etcd_server.endpoint}", "endpoint", "health")
    assert healthy.code == 0 and healthy.stdout == b""
    assert re.fullmatch(
        rf"{etcd_server.endpoint} is healthy: successfully committed proposal: took = [\d.]+(ns|µs|ms|s)\n",
        healthy.stderr,
    )
    both = invoke(
        f"--endpoints={etcd_server.endpoint},127.0.0.1:1",
        "--command-timeout=1s",
        "-w",
        "json",
        "endpoint",
        "health",
    )
    assert both.code == 1 and both.stderr == "Error: unhealthy cluster\n"
    assert re.fullmatch(
        rf'\[{{"endpoint":"{etcd_server.endpoint}","health":true,"took":"[^"]+"}},'
        r'{"endpoint":"127.0.0.1:1","health":false,"took":"[^"]+","error":"context deadline exceeded"}\]\n',
        both.text,
    )


def test_status_of_a_dead_endpoint_is_reported_and_exits_1(etcd_server: ServerProcess) -> None:
    run = invoke(
        f"--endpoints=127.0.0.1:1,{etcd_server.endpoint}", "--command-timeout=1s", "endpoint", "status"
    )
    assert run.code == 1
    assert run.stderr == "Failed to get the status of endpoint 127.0.0.1:1 (context deadline exceeded)\n"
    assert run.text.startswith(f"{etcd_server.endpoint}, ")
    cluster = invoke("--endpoints=127.0.0.1:1", "--command-timeout=200ms", "endpoint", "status", "--cluster")
    assert (cluster.code, cluster.stderr) == (
        1,
        "Error: failed to fetch endpoints from etcd cluster member list: context deadline exceeded\n",
    )


def test_endpoint_status_on_a_terminal_is_a_rich_table_marking_the_leader(etcd_server: ServerProcess) -> None:
    ep = f"--endpoints={etcd_server.endpoint}"
    _, member = ids(etcd_server.endpoint)
    run = invoke(ep, "endpoint", "status", env=TERMINAL)
    assert run.code == 0
    assert "\x1b[" in run.text  # coloured, for a terminal
    lines = plain_lines(run.text)
    assert lines[0] == "endpoint status"
    assert lines[1].split() == ["endpoint", "ID", "role", "version", "size", "term", "index", "applied"]
    row = lines[3]
    assert re.fullmatch(
        rf"{re.escape(etcd_server.endpoint)}\s+{member:x}\s+★ leader\s+3\.4\.\d+\s+\d+ kB\s+2\s+(\d+)\s+\1",
        row,
    ), row


def test_endpoint_status_with_a_format_chosen_stays_etcdctls_on_a_terminal(
    etcd_server: ServerProcess,
) -> None:
    ep = f"--endpoints={etcd_server.endpoint}"

    def outputs() -> tuple[list[str], list[str]]:
        simple = [
            invoke(ep, "endpoint", "status").text,
            invoke(ep, "endpoint", "status", env={"TTY_COMPATIBLE": "0"}).text,
            invoke(ep, "-w", "simple", "endpoint", "status", env=TERMINAL).text,
            invoke(ep, "endpoint", "status", "-w", "simple", env=TERMINAL).text,
            invoke(ep, "endpoint", "status", env={**TERMINAL, "ETCDCTL_WRITE_OUT": "simple"}).text,
        ]
        table = [
            invoke(ep, "-w", "table", "endpoint", "status", env=TERMINAL).text,
            invoke(ep, "-w", "table", "endpoint", "status").text,
        ]
        return simple, table

    # A fresh etcd may still append its own entries (member attributes, cluster version) between two of
    # these calls, moving the index columns: take the outputs again until one round saw a still index.
    for _ in range(5):
        simple, table = outputs()
        if len(set(simple)) == 1 and len(set(table)) == 1:
            break
        time.sleep(1)
    assert simple == [simple[0]] * len(simple)
    assert table == [table[0]] * len(table)
    assert table[0].startswith("+---") and "\x1b[" not in table[0] and "★" not in table[0]
