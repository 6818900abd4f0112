"""watch and lease commands: etcdctl's argument errors, and their results byte for byte in each format."""

from __future__ import annotations

import io

import pytest
from click.testing import CliRunner

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.cli import cli
from etcdpy.cli.printers import Output, leasewatch, make_printer

HEADER = pb.ResponseHeader(
    cluster_id=14841639068965178418, member_id=10276657743932975437, revision=3, raft_term=2
)
LEASE = 0x694DA2260D6AEB05


def printed(fmt: str, show: object, *args: object) -> bytes:
    out = io.BytesIO()
    printer = make_printer(fmt, Output(out, io.BytesIO()))
    show(printer, *args)  # type: ignore[operator]
    return out.getvalue()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["watch"], "Error: bad number of arguments"),
        (["watch", "--prefix", "a", "b"], "Error: `range_end` and `--prefix` are mutually exclusive"),
        (["watch", "a", "--"], "Error: bad number of arguments (found separator --, but no commands)"),
        (["lease", "grant"], "Error: lease grant command needs TTL argument"),
        (["lease", "grant", "x"], 'Error: bad TTL (strconv.ParseInt: parsing "x": invalid syntax)'),
        (["lease", "revoke"], "Error: lease revoke command needs 1 argument"),
        (
            ["lease", "revoke", "zz"],
            'Error: bad lease ID arg (strconv.ParseInt: parsing "zz": invalid syntax), expecting ID in Hex',
        ),
        (["lease", "timetolive"], "Error: lease timetolive command needs lease ID as argument"),
        (["lease", "keep-alive"], "Error: lease keep-alive command needs lease ID as argument"),
        (["put", "--ttl", "5", "--lease", "1", "k", "v"], "Error: `--ttl` cannot be combined with"),
    ],
)
def test_argument_errors_exit_128_before_connecting(argv: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["--endpoints=127.0.0.1:1", *argv], env={"ETCDCTL_WATCH_KEY": None})
    assert result.exit_code == 128
    assert result.stderr.startswith(message)


def test_watch_key_from_the_environment_conflicts_with_an_argument() -> None:
    result = CliRunner().invoke(cli, ["watch", "k"], env={"ETCDCTL_WATCH_KEY": "k"})
    assert (result.exit_code, result.stderr) == (
        128,
        "Error: bad number of arguments (found conflicting environment key)\n",
    )


def test_lease_results_in_each_format() -> None:
    grant = pb.LeaseGrantResponse(header=HEADER, ID=LEASE, TTL=100)
    assert (
        printed("simple", leasewatch.lease_grant, grant) == b"lease 694da2260d6aeb05 granted with TTL(100s)\n"
    )
    assert printed("json", leasewatch.lease_grant, grant) == (
        b'{"cluster_id":14841639068965178418,"member_id":10276657743932975437,"revision":3,"raft_term":2,'
        b'"ID":7587899231506721541,"TTL":100,"Error":""}\n'
    )
    assert printed("protobuf", leasewatch.lease_grant, grant) == HEADER.SerializeToString()
    ttl = pb.LeaseTimeToLiveResponse(header=HEADER, ID=LEASE, TTL=96, grantedTTL=100, keys=[b"k1", b"k0"])
    assert printed("simple", leasewatch.lease_time_to_live, ttl, True) == (
        b"lease 694da2260d6aeb05 granted with TTL(100s), remaining(96s), attached keys([k1 k0])\n"
    )
    assert printed("json", leasewatch.lease_time_to_live, ttl, True).endswith(
        b'"id":7587899231506721541,"ttl":96,"granted-ttl":100,"keys":["azE=","azA="]}\n'
    )
    assert printed("fields", leasewatch.lease_time_to_live, ttl, True).endswith(
        b'"ID" : 7587899231506721541\n"TTL" : 96\n"GrantedTTL" : 100\n"Key" : "k1"\n"Key" : "k0"\n'
    )
    gone = pb.LeaseTimeToLiveResponse(header=HEADER, ID=LEASE, TTL=-1)
    assert printed("simple", leasewatch.lease_time_to_live, gone, False) == (
        b"lease 694da2260d6aeb05 already expired\n"
    )
    listed = pb.LeaseLeasesResponse(header=HEADER, leases=[pb.LeaseStatus(ID=LEASE)])
    assert printed("simple", leasewatch.lease_leases, listed) == b"found 1 leases\n694da2260d6aeb05\n"
    assert printed("json", leasewatch.lease_leases, listed).endswith(
        b'"leases":[{"id":7587899231506721541}]}\n'
    )
    with pytest.raises(Exception, match="table not supported"):
        printed("table", leasewatch.lease_leases, listed)


def test_watch_events_in_each_format() -> None:
    prev = kv_pb2.KeyValue(key=b"wk", create_revision=5, mod_revision=5, version=1, value=b"v1")
    events = [
        kv_pb2.Event(
            kv=kv_pb2.KeyValue(key=b"wk", create_revision=5, mod_revision=6, version=2, value=b"v2"),
            prev_kv=prev,
        ),
        kv_pb2.Event(type=kv_pb2.Event.DELETE, kv=kv_pb2.KeyValue(key=b"wk", mod_revision=7)),
    ]
    response = pb.WatchResponse(header=HEADER, events=events)
    assert printed("simple", leasewatch.watch_response, response) == b"PUT\nwk\nv1\nwk\nv2\nDELETE\nwk\n\n"
    assert printed("json", leasewatch.watch_response, response) == (
        b'{"Header":{"cluster_id":14841639068965178418,"member_id":10276657743932975437,"revision":3,"raft_term":2},'
        b'"Events":[{"kv":{"key":"d2s=","create_revision":5,"mod_revision":6,"version":2,"value":"djI="},'
        b'"prev_kv":{"key":"d2s=","create_revision":5,"mod_revision":5,"version":1,"value":"djE="}},'
        b'{"type":1,"kv":{"key":"d2s=","mod_revision":7}}],"CompactRevision":0,"Canceled":false,"Created":false}\n'
    )
    fields = printed("fields", leasewatch.watch_response, response)
    assert b'"Type" : PUT\n"PrevKey" : "wk"\n' in fields and b'"Type" : DELETE\n"Key" : "wk"\n' in fields
