"""etcdctl's txn input grammar: compares, success ops, failure ops, each ended by a blank line.

    <compare>  ::= <target> "(" <quoted key> ")" <op> <quoted value>
    <target>   ::= c | create | m | mod | ver | version | val | value | lease
    <op>       ::= "=" | "!=" | "<" | ">"
    <request>  ::= a put/get/del command line with its flags, e.g.  put "k" "v" --prev-kv

Quoted strings are Go literals (``"a\\nb"``, or back-quoted raw).  Errors carry
etcdctl's texts and exit codes (3 for malformed input; the put/get/del argument
checks keep their own codes).  Two places differ on purpose: etcdctl 3.4 panics
on a ``lease(...)`` compare and on an unknown operator, and cuts single-quoted
arguments short; here a lease compare works (decimal ID, as in etcd 3.5), an
unknown operator is a malformed comparison, and single quotes just quote.
"""

from __future__ import annotations

import re
from typing import BinaryIO

import click

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.cli import kv
from etcdpy.cli.errors import CliError, ExitCode
from etcdpy.cli.printers.goformat import go_quote
from etcdpy.client import requests as rq
from etcdpy.client.requests import CompareResult, CompareTarget

_OPS = {
    "=": CompareResult.EQUAL,
    "!=": CompareResult.NOT_EQUAL,
    ">": CompareResult.GREATER,
    "<": CompareResult.LESS,
}
_INT_TARGETS = {
    "ver": CompareTarget.VERSION,
    "version": CompareTarget.VERSION,
    "c": CompareTarget.CREATE,
    "create": CompareTarget.CREATE,
    "m": CompareTarget.MOD,
    "mod": CompareTarget.MOD,
    "lease": CompareTarget.LEASE,
}
_GO_INT = re.compile(r"[+-]?[0-9]+")
_ARG = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^'\"\s]\S*[^'\"\s]?")
_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}
_SPACES = " \t\r"


def invalid(message: str) -> CliError:
    return CliError(ExitCode.INVALID_INPUT, message)


def scan_quoted(text: str, pos: int) -> tuple[bytes, int] | None:
    """Go's ``%q`` scan at ``pos`` (leading spaces skipped): (bytes, end) or None."""
    while pos < len(text) and text[pos] in _SPACES:
        pos += 1
    if pos >= len(text):
        return None
    if text[pos] == "`":
        end = text.find("`", pos + 1)
        return None if end < 0 else (kv.arg_bytes(text[pos + 1 : end]), end + 1)
    if text[pos] != '"':
        return None
    out = bytearray()
    i = pos + 1
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return bytes(out), i + 1
        if ch != "\\":
            out += kv.arg_bytes(ch)
            i += 1
            continue
        escaped = _escape(text, i + 1)
        if escaped is None:
            return None
        value, i = escaped
        out += value
    return None


def _escape(text: str, i: int) -> tuple[bytes, int] | None:
    """One Go escape sequence starting after the backslash at ``i``."""
    if i >= len(text):
        return None
    ch = text[i]
    if ch in _SIMPLE_ESCAPES:
        return bytes([_SIMPLE_ESCAPES[ch]]), i + 1
    widths = {"x": 2, "u": 4, "U": 8}
    if ch in widths:
        digits = text[i + 1 : i + 1 + widths[ch]]
        if len(digits) != widths[ch] or not re.fullmatch(r"[0-9a-fA-F]+", digits):
            return None
        code = int(digits, 16)
        if ch == "x":
            return bytes([code]), i + 1 + len(digits)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return None
        return chr(code).encode("utf-8"), i + 1 + len(digits)
    digits = text[i : i + 3]
    if re.fullmatch(r"[0-7]{3}", digits) and int(digits, 8) < 256:
        return bytes([int(digits, 8)]), i + 3
    return None


def parse_compare(line: str) -> pb.Compare:
    """One compare line, e.g. ``mod("key1") > "0"``."""
    target, sep, rest = line.partition("(")
    if not sep:
        raise invalid(f"malformed comparison: {line}")
    key, op, value, scanned = b"", "", b"", 0
    first = scan_quoted(rest, 0)
    if first is not None:
        key, pos = first
        scanned = 1
        if rest[pos : pos + 1] == ")":
            pos += 1
            while pos < len(rest) and rest[pos] in _SPACES:
                pos += 1
            end = pos
            while end < len(rest) and not rest[end].isspace():
                end += 1
            if end > pos:
                op, scanned = rest[pos:end], 2
                third = scan_quoted(rest, end)
                if third is not None:
                    value, scanned = third[0], 3
    if scanned != 3:
        raise invalid(f"malformed comparison: {line}; got {target}({go_quote(key)}) {op} {go_quote(value)}")
    cmp_value: int | bytes = value
    if target in ("val", "value"):
        cmp_target = CompareTarget.VALUE
    elif target in _INT_TARGETS:
        text = value.decode("utf-8", "surrogateescape")
        if not _GO_INT.fullmatch(text) or not -(2**63) <= int(text) < 2**63:
            raise invalid(f"invalid txn compare request: {line}")
        cmp_target, cmp_value = _INT_TARGETS[target], int(text)
    else:
        raise invalid(f"malformed comparison: {line} (unknown target {target})")
    if op not in _OPS:
        raise invalid(f"malformed comparison: {line} (unknown operator {op})")
    return rq.compare(key, cmp_target, _OPS[op], cmp_value)


def argify(line: str) -> list[str]:
    """Split a request line into arguments; quoted arguments are unquoted."""
    args = []
    for token in _ARG.findall(line):
        if token.startswith("'"):
            token = token[1:-1]
        elif token.startswith('"'):
            scanned = scan_quoted(token, 0)
            if scanned is None:
                raise invalid(f"invalid txn request: {line}")
            token = scanned[0].decode("utf-8", "surrogateescape")
        args.append(token)
    return args


_REQUEST_COMMANDS: dict[str, click.Command] = {"put": kv.put, "get": kv.get, "del": kv.delete}


def parse_request(line: str) -> pb.RequestOp:
    """One request line: a put, get or del command with its flags."""
    args = argify(line)
    if len(args) < 2:
        raise invalid(f"invalid txn compare request: {line}")
    command = _REQUEST_COMMANDS.get(args[0])
    if command is None:
        raise invalid(f"invalid txn request: {line}")
    try:
        ctx = command.make_context(args[0], args[1:])
    except click.ClickException:
        raise invalid(f"invalid txn request: {line}") from None
    params = ctx.params
    positional = tuple(params["args"])
    if args[0] == "put":
        return rq.op_put(
            kv.put_request(
                positional,
                lease=params["lease"],
                prev_kv=params["prev_kv"],
                ignore_value=params["ignore_value"],
                ignore_lease=params["ignore_lease"],
            )
        )
    if args[0] == "get":
        return rq.op_get(
            kv.range_request(
                positional,
                consistency=params["consistency"],
                order=params["order"],
                sort_by=params["sort_by"],
                limit=params["limit"],
                prefix=params["prefix"],
                from_key=params["from_key"],
                rev=params["rev"],
                keys_only=params["keys_only"],
                count_only=params["count_only"],
            )
        )
    return rq.op_delete(
        kv.delete_request(
            positional, prefix=params["prefix"], prev_kv=params["prev_kv"], from_key=params["from_key"]
        )
    )


def _read_section(reader: BinaryIO) -> list[str]:
    """Lines up to the next blank line; input ending before it is etcdctl's ``EOF`` error."""
    lines: list[str] = []
    while True:
        raw = reader.readline()
        if not raw.endswith(b"\n"):
            raise invalid("EOF")
        line = raw.decode("utf-8", "surrogateescape").strip()
        if not line:
            return lines
        lines.append(line)


def read_compares(reader: BinaryIO) -> list[pb.Compare]:
    """The compare section."""
    return [parse_compare(line) for line in _read_section(reader)]


def read_requests(reader: BinaryIO) -> list[pb.RequestOp]:
    """A success or failure section."""
    return [parse_request(line) for line in _read_section(reader)]
