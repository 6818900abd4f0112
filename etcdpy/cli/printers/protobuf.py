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
