"""Output printers, one per ``--write-out`` format, with etcdctl's exact bytes.

A `Printer` has one method per kind of result; a format that etcdctl does not
support for a result raises ``Error: <format> not supported as output format``
(exit 4), as etcdctl does.  `make_printer` picks the class for ``-w``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from google.protobuf.message import Message

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.cli.errors import CliError, ExitCode

FORMATS = ("simple", "json", "fields", "table", "protobuf")


@dataclass(frozen=True)
class EndpointStatus:
    """`endpoint status` result for one endpoint."""

    endpoint: str
    response: pb.StatusResponse


@dataclass(frozen=True)
class EndpointHashKV:
    """`endpoint hashkv` result for one endpoint."""

    endpoint: str
    response: pb.HashKVResponse


@dataclass(frozen=True)
class DBStatus:
    """`snapshot status` of a file: etcdctl's snapshot.Status (hash is a crc32-Castagnoli)."""

    hash: int
    revision: int
    total_key: int
    total_size: int


@dataclass(frozen=True)
class EndpointHealth:
    """`endpoint health` result for one endpoint; ``error`` is empty when healthy."""

    endpoint: str
    health: bool
    took: str
    error: str = ""


class Output:
    """Where printers write: raw bytes to stdout, text lines to stderr."""

    def __init__(self, out: BinaryIO, err: BinaryIO) -> None:
        self.out = out
        self.err = err

    def is_terminal(self) -> bool:
        """Whether stdout is a person's terminal (rich views) rather than a pipe or a file (etcdctl's bytes).

        Rich's ``TTY_COMPATIBLE`` decides when set (``1``: a terminal, ``0``: not), as it does for
        rich's own consoles; otherwise stdout's ``isatty()``.
        """
        forced = os.environ.get("TTY_COMPATIBLE", "")
        if forced in ("0", "1"):
            return forced == "1"
        isatty = getattr(self.out, "isatty", None)
        return bool(isatty is not None and isatty())

    def write(self, data: bytes | str) -> None:
        self.out.write(data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data)

    def line(self, data: bytes | str = b"") -> None:
        self.write(data)
        self.out.write(b"\n")

    def err_line(self, text: str) -> None:
        self.err.write(text.encode("utf-8", "surrogateescape") + b"\n")

    def flush(self) -> None:
        self.out.flush()
        self.err.flush()


class Printer:
    """Base printer: every result is unsupported until a subclass says otherwise."""

    name = ""

    def __init__(self, output: Output, *, hex_bytes: bool = False, value_only: bool = False) -> None:
        self.output = output
        self.hex_bytes = hex_bytes
        self.value_only = value_only

    def unsupported(self) -> CliError:
        return CliError(ExitCode.BAD_FEATURE, f"{self.name} not supported as output format")

    def put(self, response: pb.PutResponse) -> None:
        raise self.unsupported()

    def get(self, response: pb.RangeResponse) -> None:
        raise self.unsupported()

    def delete(self, response: pb.DeleteRangeResponse) -> None:
        raise self.unsupported()

    def txn(self, response: pb.TxnResponse) -> None:
        raise self.unsupported()

    def op_response(self, op: pb.ResponseOp) -> None:
        """One txn operation's result, printed as the put, get, delete or nested txn it answers."""
        which = op.WhichOneof("response")
        if which == "response_put":
            self.put(op.response_put)
        elif which == "response_range":
            self.get(op.response_range)
        elif which == "response_delete_range":
            self.delete(op.response_delete_range)
        else:
            self.txn(op.response_txn)

    def member_list(self, response: pb.MemberListResponse) -> None:
        raise self.unsupported()

    def member_add(self, response: pb.MemberAddResponse, name: str, *, auto_promote: bool = False) -> None:
        """`member add` of a member called `name` (the simple format adds its environment lines)."""
        raise self.unsupported()

    def member_remove(self, member_id: int, response: pb.MemberRemoveResponse) -> None:
        raise self.unsupported()

    def member_update(self, member_id: int, response: pb.MemberUpdateResponse) -> None:
        raise self.unsupported()

    def member_promote(self, member_id: int, response: pb.MemberPromoteResponse) -> None:
        raise self.unsupported()

    def move_leader(self, leader_id: int, target_id: int, response: pb.MoveLeaderResponse) -> None:
        raise self.unsupported()

    def endpoint_status(self, statuses: Sequence[EndpointStatus]) -> None:
        raise self.unsupported()

    def endpoint_hashkv(self, hashes: Sequence[EndpointHashKV]) -> None:
        raise self.unsupported()

    def endpoint_health(self, healths: Sequence[EndpointHealth]) -> None:
        raise self.unsupported()

    def db_status(self, status: DBStatus) -> None:
        raise self.unsupported()


class MessagePrinter(Printer):
    """A printer that shows each command's whole response message (json, protobuf).

    Subclasses say how one message is written (`message`); every result that is a
    single response message goes through it.
    """

    def message(self, message: Message) -> None:
        raise NotImplementedError

    def put(self, response: pb.PutResponse) -> None:
        self.message(response)

    def get(self, response: pb.RangeResponse) -> None:
        self.message(response)

    def delete(self, response: pb.DeleteRangeResponse) -> None:
        self.message(response)

    def txn(self, response: pb.TxnResponse) -> None:
        self.message(response)

    def member_list(self, response: pb.MemberListResponse) -> None:
        self.message(response)

    def member_add(self, response: pb.MemberAddResponse, name: str, *, auto_promote: bool = False) -> None:
        self.message(response)

    def member_remove(self, member_id: int, response: pb.MemberRemoveResponse) -> None:
        self.message(response)

    def member_update(self, member_id: int, response: pb.MemberUpdateResponse) -> None:
        self.message(response)

    def member_promote(self, member_id: int, response: pb.MemberPromoteResponse) -> None:
        self.message(response)

    def move_leader(self, leader_id: int, target_id: int, response: pb.MoveLeaderResponse) -> None:
        self.message(response)


def make_printer(fmt: str, output: Output, *, hex_bytes: bool = False, decode: bool = False) -> Printer:
    """The printer for ``-w fmt``; unknown formats fail as etcdctl does (exit 4)."""
    from etcdpy.cli.printers.fields import FieldsPrinter
    from etcdpy.cli.printers.jsonfmt import JSONPrinter
    from etcdpy.cli.printers.protobuf import ProtobufPrinter
    from etcdpy.cli.printers.simple import SimplePrinter
    from etcdpy.cli.printers.table import TablePrinter

    if fmt == "json":
        return JSONPrinter(output, hex_bytes=hex_bytes, decode=decode)
    classes: dict[str, type[Printer]] = {
        "simple": SimplePrinter,
        "fields": FieldsPrinter,
        "protobuf": ProtobufPrinter,
        "table": TablePrinter,
    }
    if fmt not in classes:
        raise CliError(ExitCode.BAD_FEATURE, "unsupported output format")
    return classes[fmt](output, hex_bytes=hex_bytes)
