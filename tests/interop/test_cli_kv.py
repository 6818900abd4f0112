"""put, get and del through the CLI against a real etcd: exact output, errors and exit codes."""

from __future__ import annotations

import pytest
from procs import ServerProcess
from test_cli_support import ids, invoke

pytestmark = pytest.mark.interop


def test_put_get_del_simple_output(etcd_server: ServerProcess) -> None:
    ep = f"--endpoints={etcd_server.endpoint}"
    assert invoke(ep, "put", "foo", "bar").text == "OK\n"
    assert invoke(ep, "put", "foo", "baz", "--prev-kv").text == "OK\nfoo\nbar\n"
    assert invoke(ep, "put", "fob", stdin=b"from\nstdin").text == "OK\n"
    assert invoke(ep, "get", "fo", "--prefix").stdout == b"fob\nfrom\nstdin\nfoo\nbaz\n"
    assert invoke(ep, "get", "fo", "--prefix", "--print-value-only", "--limit=1").stdout == b"from\nstdin\n"
    assert invoke(ep, "get", "fo", "--prefix", "--keys-only", "--order=DESCEND").stdout == b"foo\n\nfob\n\n"
    assert invoke(ep, "get", "foo", "--rev=2").text == "foo\nbar\n"
    assert invoke(ep, "get", "foo", "--consistency=s", "--hex").text == "\\x66\\x6f\\x6f\n\\x62\\x61\\x7a\n"
    assert invoke(ep, "del", "fob", "--prev-kv").stdout == b"1\nfob\nfrom\nstdin\n"
    assert invoke(ep, "del", "fob").text == "0\n"
    assert invoke(ep, "del", "", "--from-key").text == "1\n"
    assert invoke(ep, "get", "", "--from-key").text == ""


def test_json_and_fields_output_match_etcdctl_byte_for_byte(etcd_server: ServerProcess) -> None:
    ep = f"--endpoints={etcd_server.endpoint}"
    cluster, member = ids(etcd_server.endpoint)
    header = f'"header":{{"cluster_id":{cluster},"member_id":{member},"revision":%d,"raft_term":2}}'
    assert invoke(ep, "-w", "json", "put", "k", "v").text == "{" + header % 2 + "}\n"
    assert invoke(ep, "put", "k", "w", "--prev-kv", "-w", "json").text == (
        "{" + header % 3 + ',"prev_kv":{"key":"aw==","create_revision":2,"mod_revision":2,"version":1,'
        '"value":"dg=="}}\n'
    )
    assert invoke(ep, "-w", "json", "get", "nothing").text == "{" + header % 3 + "}\n"
    assert invoke(ep, "-w", "fields", "get", "k").text == (
        f'"ClusterID" : {cluster}\n"MemberID" : {member}\n"Revision" : 3\n"RaftTerm" : 2\n'
        '"Key" : "k"\n"CreateRevision" : 2\n"ModRevision" : 3\n"Version" : 2\n"Value" : "w"\n'
        '"Lease" : 0\n"More" : false\n"Count" : 1\n'
    )
    assert invoke(ep, "-w", "fields", "get", "k", "--count-only").text == (
        f'"ClusterID" : {cluster}\n"MemberID" : {member}\n"Revision" : 3\n"RaftTerm" : 2\n'
        '"More" : false\n"Count" : 1\n'
    )
    assert invoke(ep, "-w", "json", "del", "k").text == "{" + header % 4 + ',"deleted":1}\n'


def test_errors_that_follow_the_request(etcd_server: ServerProcess) -> None:
    ep = f"--endpoints={etcd_server.endpoint}"
    assert invoke(ep, "put", "k", "v").code == 0
    table = invoke(ep, "-w", "table", "put", "k", "v2")
    assert (table.code, table.stderr) == (4, "Error: table not supported as output format\n")
    assert invoke(ep, "get", "k", "--print-value-only").text == "v2\n"  # the put happened before the error
    json_value_only = invoke(ep, "-w", "json", "get", "k", "--print-value-only")
    assert (json_value_only.code, json_value_only.stderr) == (
        128,
        "Error: print-value-only is only for `--write-out=simple`\n",
    )
    future = invoke(ep, "get", "k", "--rev=99")
    assert (future.code, future.stderr) == (
        1,
        "Error: etcdserver: mvcc: required revision is a future revision\n",
    )
    missing = invoke(ep, "put", "nokey", "--ignore-value")
    assert (missing.code, missing.stderr) == (1, "Error: etcdserver: key not found\n")
    lease = invoke(ep, "put", "k", "v", "--lease=123")
    assert (lease.code, lease.stderr) == (1, "Error: etcdserver: requested lease not found\n")


def test_get_table_and_decode_are_etcdpy_extras(etcd_server: ServerProcess) -> None:
    ep = f"--endpoints={etcd_server.endpoint}"
    invoke(ep, "put", "key", "välue")
    assert invoke(ep, "-w", "table", "get", "key").text == (
        "+-------+---------+-------------------+----------------+-----------+---------+\n"
        "| KEY   | VALUE   | CREATE REVISION   | MOD REVISION   | VERSION   | LEASE   |\n"
        "|-------+---------+-------------------+----------------+-----------+---------|\n"
        "| key   | välue   | 2                 | 2              | 1         |         |\n"
        "+-------+---------+-------------------+----------------+-----------+---------+\n"
    )
    decoded = invoke(ep, "-w", "json", "--decode", "get", "key").text
    assert '"key": "key"' in decoded and '"value": "välue"' in decoded
