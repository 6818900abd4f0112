"""The txn grammar accepts what etcdctl accepts and rejects the rest with etcdctl's texts and codes."""

from __future__ import annotations

import io

import pytest

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.cli.errors import CliError
from etcdpy.cli.txn_grammar import (
    argify,
    parse_compare,
    parse_request,
    read_compares,
    read_requests,
    scan_quoted,
)

C = pb.Compare


@pytest.mark.parametrize(
    ("line", "target", "result", "field", "value"),
    [
        ('mod("k") > "0"', C.MOD, C.GREATER, "mod_revision", 0),
        ('m("k") < "5"', C.MOD, C.LESS, "mod_revision", 5),
        ('create("k") = "2"', C.CREATE, C.EQUAL, "create_revision", 2),
        ('c("k") != "-1"', C.CREATE, C.NOT_EQUAL, "create_revision", -1),
        ('ver("k") = "+3"', C.VERSION, C.EQUAL, "version", 3),
        ('version("k") > "1"', C.VERSION, C.GREATER, "version", 1),
        ('val("k") = "a b"', C.VALUE, C.EQUAL, "value", b"a b"),
        ('value("k") != "x\\ny\\x00\\u00e9"', C.VALUE, C.NOT_EQUAL, "value", b"x\ny\x00\xc3\xa9"),
        ('lease("k") = "7587"', C.LEASE, C.EQUAL, "lease", 7587),
        ('mod(  "k")   >    "0"', C.MOD, C.GREATER, "mod_revision", 0),
        ("val(`raw\\n`) = `v`", C.VALUE, C.EQUAL, "value", b"v"),
    ],
)
def test_valid_compares(line: str, target: int, result: int, field: str, value: object) -> None:
    cmp = parse_compare(line)
    assert (cmp.target, cmp.result, getattr(cmp, field)) == (target, result, value)
    assert cmp.WhichOneof("target_union") == field
    assert cmp.key in (b"k", b"raw\\n")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("xx", "malformed comparison: xx"),
        ('mod("k") >', 'malformed comparison: mod("k") >; got mod("k") > ""'),
        ('mod("k") > ', 'malformed comparison: mod("k") > ; got mod("k") > ""'),
        ('mod(k) > "1"', 'malformed comparison: mod(k) > "1"; got mod("")  ""'),
        ('mod("k" > "1"', 'malformed comparison: mod("k" > "1"; got mod("k")  ""'),
        ('mod("k") > "a"', 'invalid txn compare request: mod("k") > "a"'),
        ('ver("k") = "1.5"', 'invalid txn compare request: ver("k") = "1.5"'),
        ('foo("k") > "1"', 'malformed comparison: foo("k") > "1" (unknown target foo)'),
        ('val("k") >= "1"', 'malformed comparison: val("k") >= "1" (unknown operator >=)'),
        ('val("a\\q") = "1"', 'malformed comparison: val("a\\q") = "1"; got val("")  ""'),
    ],
)
def test_invalid_compares_use_etcdctls_texts_and_exit_3(line: str, message: str) -> None:
    with pytest.raises(CliError) as info:
        parse_compare(line)
    assert (info.value.exit_code, info.value.message) == (3, message)


def test_scan_quoted_handles_go_escapes() -> None:
    assert scan_quoted('  "a\\t\\"b\\101\\U0001F600" rest', 0) == (b'a\t"bA' + "\U0001f600".encode(), 24)
    assert scan_quoted('"unterminated', 0) is None
    assert scan_quoted("bare", 0) is None


def test_argify_splits_and_unquotes() -> None:
    assert argify("put \"key one\" 'raw value' --prev-kv") == ["put", "key one", "raw value", "--prev-kv"]
    assert argify('put k "a\\nb"') == ["put", "k", "a\nb"]


def test_request_lines_build_the_same_requests_as_the_commands() -> None:
    put = parse_request("put k v --prev-kv --lease=1f")
    assert put.request_put == pb.PutRequest(key=b"k", value=b"v", prev_kv=True, lease=0x1F)
    get = parse_request("get k --prefix --limit 2 --keys-only --order=DESCEND --sort-by=MODIFY")
    assert get.request_range == pb.RangeRequest(
        key=b"k", range_end=b"l", limit=2, keys_only=True, sort_order=pb.RangeRequest.DESCEND, sort_target=3
    )
    delete = parse_request("del a c --prev-kv")
    assert delete.request_delete_range == pb.DeleteRangeRequest(key=b"a", range_end=b"c", prev_kv=True)
    everything = parse_request("del '' --from-key")
    assert everything.request_delete_range == pb.DeleteRangeRequest(key=b"\0", range_end=b"\0")


@pytest.mark.parametrize(
    ("line", "code", "message"),
    [
        ("put", 3, "invalid txn compare request: put"),
        ("bad a b", 3, "invalid txn request: bad a b"),
        ("get a --nope", 3, "invalid txn request: get a --nope"),
        ("put a", 128, "put command needs 1 argument and input from stdin or 2 arguments"),
        (
            "put a b --lease=zz",
            128,
            'bad lease ID (strconv.ParseInt: parsing "zz": invalid syntax), expecting ID in Hex',
        ),
        (
            "get a --prefix --from-key",
            128,
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ),
        ("get a --order=up", 4, "bad sort order up"),
    ],
)
def test_invalid_request_lines(line: str, code: int, message: str) -> None:
    with pytest.raises(CliError) as info:
        parse_request(line)
    assert (info.value.exit_code, info.value.message) == (code, message)


def test_sections_end_at_blank_lines_and_need_their_newline() -> None:
    stream = io.BytesIO(b'  mod("a") > "0"  \n\nput a b\n \nget a\n\n')
    assert len(read_compares(stream)) == 1
    assert [op.WhichOneof("request") for op in read_requests(stream)] == ["request_put"]
    assert [op.WhichOneof("request") for op in read_requests(stream)] == ["request_range"]
    for data in (b"", b"put a b\n", b"put a b"):
        with pytest.raises(CliError) as info:
            read_requests(io.BytesIO(data))
        assert (info.value.exit_code, info.value.message) == (3, "EOF")
