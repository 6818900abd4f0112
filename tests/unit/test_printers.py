"""Printers reproduce etcdctl's bytes: Go quoting, Go JSON, tablewriter tables, field lines."""

from __future__ import annotations

import io

import pytest

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.cli.errors import CliError
from etcdpy.cli.printers import EndpointHashKV, EndpointHealth, EndpointStatus, Output, make_printer
from etcdpy.cli.printers.goformat import go_json, go_json_string, go_quote
from etcdpy.cli.printers.rows import human_bytes
from etcdpy.cli.printers.table import render_table

HEADER = pb.ResponseHeader(
    cluster_id=7801232528081817440, member_id=13458989633860879742, revision=4, raft_term=2
)
KV = kv_pb2.KeyValue(key=b"foo", create_revision=2, mod_revision=2, version=1, value=b"bar")


def capture(
    fmt: str, call: str, *args: object, hex_bytes: bool = False, decode: bool = False
) -> tuple[bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    printer = make_printer(fmt, Output(out, err), hex_bytes=hex_bytes, decode=decode)
    getattr(printer, call)(*args)
    return out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("raw", "quoted"),
    [
        (b"plain", '"plain"'),
        (b'q"b\\', '"q\\"b\\\\"'),
        (b"\n\t\r\x07\x08\x0c\x0b", '"\\n\\t\\r\\a\\b\\f\\v"'),
        (b"\x00\x1f\x7f", '"\\x00\\x1f\\x7f"'),
        (b"\xff\xfe", '"\\xff\\xfe"'),
        ("é✓".encode(), '"é✓"'),
        ("\u00a0\u200b".encode(), '"\\u00a0\\u200b"'),
        ("\U0001f600".encode(), '"\U0001f600"'),
    ],
)
def test_go_quote_matches_go_percent_q(raw: bytes, quoted: str) -> None:
    assert go_quote(raw) == quoted


def test_go_json_string_escapes_html_characters_like_encoding_json() -> None:
    assert go_json_string('a<b>&"\\\n\x01\u2028') == '"a\\u003cb\\u003e\\u0026\\"\\\\\\n\\u0001\\u2028"'


def test_go_json_omits_zero_fields_and_keeps_proto_names_and_order() -> None:
    response = pb.RangeResponse(header=HEADER, kvs=[KV], count=1)
    assert go_json(response) == (
        '{"header":{"cluster_id":7801232528081817440,"member_id":13458989633860879742,"revision":4,'
        '"raft_term":2},"kvs":[{"key":"Zm9v","create_revision":2,"mod_revision":2,"version":1,'
        '"value":"YmFy"}],"count":1}'
    )
    assert go_json(pb.RangeResponse()) == "{}"


def test_go_json_wraps_oneofs_like_go_structs() -> None:
    response = pb.TxnResponse(
        header=HEADER,
        succeeded=True,
        responses=[pb.ResponseOp(response_put=pb.PutResponse(header=pb.ResponseHeader(revision=4)))],
    )
    assert go_json(response).endswith(
        '"succeeded":true,"responses":[{"Response":{"ResponsePut":{"header":{"revision":4}}}}]}'
    )


def test_go_json_of_present_but_empty_message_is_an_empty_object() -> None:
    assert go_json(pb.PutResponse(header=pb.ResponseHeader())) == '{"header":{}}'


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (9, "9 B"),
        (10, "10 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (20480, "20 kB"),
        (1_500_000, "1.5 MB"),
    ],
)
def test_human_bytes_matches_go_humanize(size: int, text: str) -> None:
    assert human_bytes(size) == text


def test_render_table_is_tablewriter_layout() -> None:
    table = (["endpoint", "hash"], [["127.0.0.1:23791", "3891955120"]])
    assert render_table(table) == (
        "+-----------------+------------+\n"
        "|    ENDPOINT     |    HASH    |\n"
        "+-----------------+------------+\n"
        "| 127.0.0.1:23791 | 3891955120 |\n"
        "+-----------------+------------+\n"
    )


def test_simple_put_get_delete_txn() -> None:
    assert capture("simple", "put", pb.PutResponse(header=HEADER, prev_kv=KV)) == (b"OK\nfoo\nbar\n", b"")
    assert capture("simple", "get", pb.RangeResponse(kvs=[KV, KV]))[0] == b"foo\nbar\nfoo\nbar\n"
    assert (
        capture("simple", "delete", pb.DeleteRangeResponse(deleted=1, prev_kvs=[KV]))[0] == b"1\nfoo\nbar\n"
    )
    txn = pb.TxnResponse(
        succeeded=False,
        responses=[
            pb.ResponseOp(response_put=pb.PutResponse()),
            pb.ResponseOp(response_range=pb.RangeResponse(kvs=[KV])),
        ],
    )
    assert capture("simple", "txn", txn)[0] == b"FAILURE\n\nOK\n\nfoo\nbar\n"


def test_simple_hex_escapes_every_byte() -> None:
    assert capture("simple", "get", pb.RangeResponse(kvs=[KV]), hex_bytes=True)[0] == (
        b"\\x66\\x6f\\x6f\n\\x62\\x61\\x72\n"
    )


def test_fields_get_prints_every_field_with_go_quoting() -> None:
    binary = kv_pb2.KeyValue(key=b"k\n", value=b"\xff", lease=5)
    assert capture("fields", "get", pb.RangeResponse(header=HEADER, kvs=[binary], count=1))[0].decode() == (
        '"ClusterID" : 7801232528081817440\n"MemberID" : 13458989633860879742\n"Revision" : 4\n'
        '"RaftTerm" : 2\n"Key" : "k\\n"\n"CreateRevision" : 0\n"ModRevision" : 0\n"Version" : 0\n'
        '"Value" : "\\xff"\n"Lease" : 5\n"More" : false\n"Count" : 1\n'
    )


def test_endpoint_results_in_each_format() -> None:
    status = pb.StatusResponse(
        header=HEADER, version="3.4.23", dbSize=20480, leader=HEADER.member_id, raftIndex=11, raftTerm=2
    )
    statuses = [EndpointStatus("127.0.0.1:2379", status)]
    assert capture("simple", "endpoint_status", statuses)[0] == (
        b"127.0.0.1:2379, bac7efc361f1457e, 3.4.23, 20 kB, true, false, 2, 11, 0, \n"
    )
    hashes = [EndpointHashKV("e", pb.HashKVResponse(header=HEADER, hash=7, compact_revision=-1))]
    assert capture("json", "endpoint_hashkv", hashes)[0].endswith(b'"hash":7,"compact_revision":-1}}]\n')
    healths = [
        EndpointHealth("e1", True, "1.5ms"),
        EndpointHealth("e2", False, "5s", "context deadline exceeded"),
    ]
    out, err = capture("simple", "endpoint_health", healths)
    assert out == b""
    assert err == (
        b"e1 is healthy: successfully committed proposal: took = 1.5ms\n"
        b"e2 is unhealthy: failed to commit proposal: context deadline exceeded\n"
    )
    assert capture("json", "endpoint_health", healths)[0] == (
        b'[{"endpoint":"e1","health":true,"took":"1.5ms"},'
        b'{"endpoint":"e2","health":false,"took":"5s","error":"context deadline exceeded"}]\n'
    )


def test_protobuf_writes_the_wire_bytes() -> None:
    response = pb.PutResponse(header=HEADER)
    assert capture("protobuf", "put", response)[0] == response.SerializeToString()


@pytest.mark.parametrize(
    ("fmt", "call"), [("table", "put"), ("table", "txn"), ("protobuf", "endpoint_health")]
)
def test_unsupported_combinations_fail_with_exit_4(fmt: str, call: str) -> None:
    with pytest.raises(CliError) as info:
        capture(fmt, call, pb.PutResponse() if call != "endpoint_health" else [])
    assert (info.value.exit_code, info.value.message) == (4, f"{fmt} not supported as output format")


def test_unknown_format_is_exit_4() -> None:
    with pytest.raises(CliError) as info:
        make_printer("yaml", Output(io.BytesIO(), io.BytesIO()))
    assert (info.value.exit_code, info.value.message) == (4, "unsupported output format")


def test_get_table_and_decoded_json_are_etcdpy_extras() -> None:
    response = pb.RangeResponse(
        header=HEADER, kvs=[KV, kv_pb2.KeyValue(key=b"bin", value=b"\xff", lease=255)]
    )
    assert capture("table", "get", response)[0].decode() == (
        "+-------+---------+-------------------+----------------+-----------+---------+\n"
        "| KEY   | VALUE   | CREATE REVISION   | MOD REVISION   | VERSION   | LEASE   |\n"
        "|-------+---------+-------------------+----------------+-----------+---------|\n"
        "| foo   | bar     | 2                 | 2              | 1         |         |\n"
        "| bin   | \\xff    | 0                 | 0              | 0         | ff      |\n"
        "+-------+---------+-------------------+----------------+-----------+---------+\n"
    )
    decoded = capture("json", "get", response, decode=True)[0].decode()
    assert '"key": "foo"' in decoded and '"value": "bar"' in decoded
    assert '"value": "/w=="' in decoded  # not UTF-8: stays base64
    assert decoded.startswith("{\n  ")
