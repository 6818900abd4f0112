"""txn and compaction through the CLI against a real etcd."""

from __future__ import annotations

import pytest
from procs import ServerProcess
from test_cli_support import ids, invoke

pytestmark = pytest.mark.interop

TXN = b'mod("a") > "0"\n\nput a "new a"\nget a\ndel b --prev-kv\n\nput c else\n\n'


def test_txn_success_and_failure_branches(etcd_server: ServerProcess) -> None:
    ep = f"--endpoints={etcd_server.endpoint}"
    invoke(ep, "put", "a", "1")
    invoke(ep, "put", "b", "2")
    assert invoke(ep, "txn", stdin=TXN).text == "SUCCESS\n\nOK\n\na\nnew a\n\n1\nb\n2\n"
    failing = b'val("a") = "1"\n\nput a x\n\nput c "else branch"\nget c\n\n'
    assert invoke(ep, "txn", stdin=failing).text == "FAILURE\n\nOK\n\nc\nelse branch\n"
    assert invoke(ep, "txn", "-i", stdin=b"\n\n\n").text == (
        "compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\nSUCCESS\n"
    )


def test_txn_json_and_fields(etcd_server: ServerProcess) -> None:
    ep = f"--endpoints={etcd_server.endpoint}"
    cluster, member = ids(etcd_server.endpoint)
    invoke(ep, "put", "a", "1")
    run = invoke(ep, "-w", "json", "txn", stdin=b'ver("a") = "1"\n\nput a 2\nget a --keys-only\n\n\n')
    assert run.text == (
        f'{{"header":{{"cluster_id":{cluster},"member_id":{member},"revision":3,"raft_term":2}},'
        '"succeeded":true,"responses":[{"Response":{"ResponsePut":{"header":{"revision":3}}}},'
        '{"Response":{"ResponseRange":{"header":{"revision":3},"kvs":[{"key":"YQ==","create_revision":2,'
        '"mod_revision":3,"version":2}],"count":1}}}]}\n'
    )
    fields = invoke(ep, "-w", "fields", "txn", stdin=b'val("a") = "nope"\n\n\ndel a\n\n').text
    assert fields == (
        f'"ClusterID" : {cluster}\n"MemberID" : {member}\n"Revision" : 4\n"RaftTerm" : 2\n'
        '"Succeeded" : false\n"ClusterID" : 0\n"MemberID" : 0\n"Revision" : 4\n"RaftTerm" : 0\n'
        '"Deleted" : 1\n'
    )


def test_txn_input_errors_exit_3_before_any_request(etcd_server: ServerProcess) -> None:
    ep = f"--endpoints={etcd_server.endpoint}"
    for stdin, error in [
        (b"", "EOF"),
        (b"xx\n\n", "malformed comparison: xx"),
        (b"\nput\n\n\n", "invalid txn compare request: put"),
        (b'val("a") = "1"\n\nput a x', "EOF"),
    ]:
        run = invoke(ep, "txn", stdin=stdin)
        assert (run.code, run.stderr) == (3, f"Error: {error}\n")
    assert invoke(ep, "get", "a").text == ""
    extra = invoke(ep, "txn", "arg")
    assert (extra.code, extra.stderr) == (128, "Error: txn command does not accept argument\n")
    duplicate = invoke(ep, "txn", stdin=b"\nput d 1\nput d 2\n\n\n")
    assert (duplicate.code, duplicate.stderr) == (
        1,
        "Error: etcdserver: duplicate key given in txn request\n",
    )


def test_compaction(etcd_server: ServerProcess) -> None:
    ep = f"--endpoints={etcd_server.endpoint}"
    for value in "123":
        invoke(ep, "put", "c", value)
    assert invoke(ep, "compaction", "3").text == "compacted revision 3\n"
    assert invoke(ep, "-w", "json", "compaction", "--physical", "4").text == "compacted revision 4\n"
    compacted = invoke(ep, "get", "c", "--rev=3")
    assert (compacted.code, compacted.stderr) == (
        1,
        "Error: etcdserver: mvcc: required revision has been compacted\n",
    )
    again = invoke(ep, "compaction", "2")
    assert again.stderr == "Error: etcdserver: mvcc: required revision has been compacted\n"
    bad = invoke(ep, "compaction", "abc")
    assert (bad.code, bad.stderr) == (1, 'Error: strconv.ParseInt: parsing "abc": invalid syntax\n')
    missing = invoke(ep, "compaction")
    assert (missing.code, missing.stderr) == (128, "Error: compaction command needs 1 argument\n")
