"""``-w protobuf``: the response message's wire bytes, nothing else (printer_protobuf.go)."""

from __future__ import annotations

from google.protobuf.message import Message

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.cli.printers import Printer


class ProtobufPrinter(Printer):
    """Raw serialized responses; the endpoint commands are unsupported, as in etcdctl."""

    name = "protobuf"

    def message(self, message: Message) -> None:
        self.output.write(message.SerializeToString())

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
