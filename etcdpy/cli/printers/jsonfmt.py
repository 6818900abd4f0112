"""``-w json``: Go's encoding/json of etcd's responses, byte for byte (printer_json.go).

With ``--decode`` (beyond etcdctl) the output is indented and keys/values are
shown as text; bytes that are not valid UTF-8 stay base64.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

from google.protobuf.message import Message

from etcdpy.cli.printers import (
    DBStatus,
    EndpointHashKV,
    EndpointHealth,
    EndpointStatus,
    MessagePrinter,
    Output,
)
from etcdpy.cli.printers.goformat import go_json, go_json_string


def _decoded(data: bytes) -> str:
    try:
        return go_json_string(data.decode("utf-8"))
    except UnicodeDecodeError:
        return go_json_string(base64.b64encode(data).decode("ascii"))


class JSONPrinter(MessagePrinter):
    """One JSON document per result."""

    name = "json"

    def __init__(self, output: Output, *, hex_bytes: bool = False, decode: bool = False) -> None:
        super().__init__(output, hex_bytes=hex_bytes)
        self.decode = decode

    def emit(self, document: str) -> None:
        if self.decode:
            document = json.dumps(json.loads(document), indent=2, ensure_ascii=False)
        self.output.line(document)

    def encode(self, message: Message) -> str:
        return go_json(message, _decoded) if self.decode else go_json(message)

    def message(self, message: Message) -> None:
        self.emit(self.encode(message))

    def endpoint_status(self, statuses: Sequence[EndpointStatus]) -> None:
        items = [
            f'{{"Endpoint":{go_json_string(s.endpoint)},"Status":{self.encode(s.response)}}}'
            for s in statuses
        ]
        self.emit("[" + ",".join(items) + "]")

    def endpoint_hashkv(self, hashes: Sequence[EndpointHashKV]) -> None:
        items = [
            f'{{"Endpoint":{go_json_string(h.endpoint)},"HashKV":{self.encode(h.response)}}}' for h in hashes
        ]
        self.emit("[" + ",".join(items) + "]")

    def endpoint_health(self, healths: Sequence[EndpointHealth]) -> None:
        items = []
        for h in healths:
            fields = [
                f'"endpoint":{go_json_string(h.endpoint)}',
                f'"health":{"true" if h.health else "false"}',
                f'"took":{go_json_string(h.took)}',
            ]
            if h.error:  # `json:"error,omitempty"`
                fields.append(f'"error":{go_json_string(h.error)}')
            items.append("{" + ",".join(fields) + "}")
        self.emit("[" + ",".join(items) + "]")

    def db_status(self, status: DBStatus) -> None:
        # etcdctl marshals snapshot.Status with encoding/json: its own field names, no header
        self.emit(
            f'{{"hash":{status.hash},"revision":{status.revision},'
            f'"totalKey":{status.total_key},"totalSize":{status.total_size}}}'
        )
