"""Go's formatting rules that etcdctl's output depends on.

- `go_quote`: ``fmt``'s ``%q`` (strconv.Quote) of a byte string, used by the
  ``fields`` printer;
- `go_json`: ``encoding/json`` of etcd's gogo-protobuf response structs, used by
  the ``json`` printer: proto field names, zero values omitted (every field is
  ``omitempty``), 64-bit integers as numbers, bytes as base64, enums as numbers,
  a oneof as ``{"<Oneof>": {"<Field>": ...}}`` (Go's wrapper structs have no json
  tags), and Go's HTML-safe string escaping.
"""

from __future__ import annotations

import base64
import unicodedata
from collections.abc import Callable
from typing import Any, cast

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

_SIMPLE_ESCAPES = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}
_NOT_PRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})


def _is_go_printable(ch: str) -> bool:
    """unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space."""
    return ch == " " or unicodedata.category(ch) not in _NOT_PRINTABLE


def go_quote(data: bytes | str) -> str:
    """Quote like Go's ``%q``: printable runes kept, invalid UTF-8 bytes as ``\\xNN``."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    out = ['"']
    text = raw.decode("utf-8", "surrogateescape")
    for ch in text:
        cp = ord(ch)
        if 0xDC80 <= cp <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
            out.append(f"\\x{cp - 0xDC00:02x}")
        elif ch in ('"', "\\"):
            out.append("\\" + ch)
        elif cp < 0x80 and 0x20 <= cp < 0x7F:
            out.append(ch)
        elif cp in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[cp])
        elif cp < 0x20 or cp == 0x7F:
            out.append(f"\\x{cp:02x}")
        elif _is_go_printable(ch):
            out.append(ch)
        elif cp < 0x10000:
            out.append(f"\\u{cp:04x}")
        else:
            out.append(f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)


_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def go_json_string(text: str) -> str:
    """A JSON string literal as encoding/json writes it (<, >, &, U+2028/9 escaped)."""
    out = ['"']
    for ch in text:
        cp = ord(ch)
        if ch in _JSON_ESCAPES:
            out.append(_JSON_ESCAPES[ch])
        elif cp < 0x20 or ch in "<>&" or cp in (0x2028, 0x2029):
            out.append(f"\\u{cp:04x}")
        elif 0xD800 <= cp <= 0xDFFF:  # invalid UTF-8 became a surrogate: Go writes U+FFFD
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _camel(name: str) -> str:
    """Go's generated field name for a proto field (response_put -> ResponsePut)."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


BytesEncoder = Callable[[bytes], str]


def _base64(data: bytes) -> str:
    return go_json_string(base64.b64encode(data).decode("ascii"))


def go_json(message: Message, encode_bytes: BytesEncoder = _base64) -> str:
    """Encode a protobuf message the way etcdctl's ``json.Marshal`` of the Go struct does."""
    return _message(message, encode_bytes)


def _message(message: Message, encode_bytes: BytesEncoder) -> str:
    parts: list[str] = []
    done_oneofs: set[str] = set()
    # upb and pure-Python descriptors share this interface; the stubs type them apart.
    for field in cast(list[FieldDescriptor], message.DESCRIPTOR.fields):
        oneof = field.containing_oneof
        if oneof is not None:
            if oneof.name in done_oneofs:
                continue
            done_oneofs.add(oneof.name)
            which = message.WhichOneof(oneof.name)
            if which is None:
                continue
            chosen = cast(FieldDescriptor, message.DESCRIPTOR.fields_by_name[which])
            inner = _value(chosen, getattr(message, which), encode_bytes)
            parts.append(f'"{_camel(oneof.name)}":{{"{_camel(which)}":{inner}}}')
            continue
        encoded = _field(message, field, encode_bytes)
        if encoded is not None:
            parts.append(f'"{field.name}":{encoded}')
    return "{" + ",".join(parts) + "}"


def _field(message: Message, field: FieldDescriptor, encode_bytes: BytesEncoder) -> str | None:
    """The encoded field, or None when omitempty drops it."""
    value = getattr(message, field.name)
    if _is_repeated(field):
        if not value:
            return None
        return "[" + ",".join(_value(field, item, encode_bytes) for item in value) + "]"
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _value(field, value, encode_bytes) if message.HasField(field.name) else None
    if not value:
        return None
    return _value(field, value, encode_bytes)


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _value(field: FieldDescriptor, value: Any, encode_bytes: BytesEncoder) -> str:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _message(value, encode_bytes)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return encode_bytes(bytes(value))
    if field.type == FieldDescriptor.TYPE_STRING:
        return go_json_string(str(value))
    if field.type == FieldDescriptor.TYPE_BOOL:
        return "true" if value else "false"
    if field.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return repr(float(value))
    return str(int(value))
