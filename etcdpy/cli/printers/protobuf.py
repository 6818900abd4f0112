"""``-w protobuf``: the response message's wire bytes, nothing else (printer_protobuf.go)."""

from __future__ import annotations

from google.protobuf.message import Message

from etcdpy.cli.printers import MessagePrinter


class ProtobufPrinter(MessagePrinter):
    """Raw serialized responses; the endpoint commands are unsupported, as in etcdctl."""

    name = "protobuf"

    def message(self, message: Message) -> None:
        self.output.write(message.SerializeToString())
