"""Layout declares every byte the MVCC store writes to LevelDB, and nothing else does.

Three keyspaces (prefixes from `storage.schema`) hold one logical history:

``h`` history, ``h + rev(main, sub)`` -> record
    One record per change, in revision order: a one-byte kind (``p`` put,
    ``t`` tombstone) followed by the mvccpb.KeyValue bytes.  A tombstone's
    KeyValue carries only ``key`` and ``mod_revision`` (what a DELETE event shows).
    Watch replay, past reads, hashing and compaction read it.

``i`` key index, ``i + escape(key) + TERMINATOR + inverted(rev)`` -> kind byte
    Every revision of every key, grouped by key (the escaping keeps groups
    ordered exactly as the raw keys, even when one key is a prefix of another)
    and newest first inside a group, so "the newest revision <= R of key k" is
    one seek to ``index_key(k, Revision(R, MAX_SUB))``.

``c`` current, ``c + key`` -> KeyValue bytes of the key's live version
    Absent for deleted keys.  Reads at the current revision (the common read)
    scan only this keyspace.

``k`` live keys, ``k + key`` -> empty
    The same key set as ``c`` without values: counting a range (etcd's
    ``count``, asked by every limited range) iterates ~10x fewer LevelDB blocks
    here.  Written only when a key appears or disappears, not on overwrites.

Small scalars live in meta (``m``): the current revision and the compaction
progress, written in the same batch as the changes they describe.

Walking the key "foo" through put@2, put@3, delete@4, put@5 leaves history
``h(2,0) p``, ``h(3,0) p``, ``h(4,0) t``, ``h(5,0) p``; index entries for foo
ordered 5, 4, 3, 2; and ``c foo`` -> the KeyValue written at 5 (create 5, version 1).
A compaction at 4 removes 2, 3 and the tombstone 4 (nothing of foo is visible
at 4), keeping 5.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from etcdpy.server.storage import schema

_REV = struct.Struct(">QQ")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_MAX_U64 = (1 << 64) - 1

MAX_U64 = _MAX_U64
MAX_SUB = _MAX_U64  # seek with this sub to land on a main revision's newest sub-revision

PUT = b"p"
TOMBSTONE = b"t"

# Escaping inside index keys: 0x00 -> 0x00 0xFF; the key ends with 0x00 0x01.  Both are
# greater/smaller than anything a longer key can continue with, so order is preserved.
_ESCAPED_ZERO = b"\x00\xff"
TERMINATOR = b"\x00\x01"
_PAST_GROUP = b"\x00\x02"  # sorts after every entry of one key, before the next key

# meta keys (after schema.META) owned by the MVCC store
META_CURRENT_REV = b"mvcc_current_rev"
# compaction revisions are signed (i64): -1 means "never compacted", as etcd reports it
META_COMPACT_SCHEDULED = b"mvcc_compact_scheduled"  # logical compaction: reads below it fail
META_COMPACT_FINISHED = b"mvcc_compact_finished"  # physical deletion done up to this revision
# (compact revision, index key) the unfinished physical compaction resumes at
META_COMPACT_CURSOR = b"mvcc_compact_cursor"
NEVER_COMPACTED = -1
FIRST_REVISION = 1  # an empty store is at revision 1; its first write gets revision 2


class Revision(NamedTuple):
    """Revision orders changes: every write request gets one ``main``; ``sub`` numbers its changes."""

    main: int
    sub: int = 0


def encode_rev(rev: Revision) -> bytes:
    """Big-endian (main, sub): byte order equals revision order."""
    return _REV.pack(rev.main, rev.sub)


def decode_rev(data: bytes) -> Revision:
    main, sub = _REV.unpack(data)
    return Revision(main, sub)


def encode_u64(value: int) -> bytes:
    return _U64.pack(value)


def decode_u64(data: bytes | None, default: int = 0) -> int:
    if data is None:
        return default
    value: int = _U64.unpack(data)[0]
    return value


def encode_i64(value: int) -> bytes:
    return _I64.pack(value)


def decode_i64(data: bytes | None, default: int) -> int:
    if data is None:
        return default
    value: int = _I64.unpack(data)[0]
    return value


def meta_key(name: bytes) -> bytes:
    return schema.META + name


# ---- history ----


def history_key(rev: Revision) -> bytes:
    return schema.HISTORY + encode_rev(rev)


def history_rev(hkey: bytes) -> Revision:
    return decode_rev(hkey[1:])


def encode_record(kind: bytes, kv_bytes: bytes) -> bytes:
    return kind + kv_bytes


def decode_record(record: bytes) -> tuple[bytes, bytes]:
    """Split a history record into (kind, KeyValue bytes)."""
    return record[:1], record[1:]


HISTORY_START = schema.HISTORY
HISTORY_STOP = bytes([schema.HISTORY[0] + 1])

# ---- key index ----


def escape(key: bytes) -> bytes:
    return key.replace(b"\x00", _ESCAPED_ZERO)


def _invert(rev: Revision) -> bytes:
    return _REV.pack(_MAX_U64 - rev.main, _MAX_U64 - rev.sub)


def index_group(key: bytes) -> bytes:
    """The prefix shared by every index entry of ``key`` (and of no other key)."""
    return schema.KEY_INDEX + escape(key) + TERMINATOR


def index_key(key: bytes, rev: Revision) -> bytes:
    return index_group(key) + _invert(rev)


def seek_suffix(main: int) -> bytes:
    """Appended to a group: a seek target landing on its newest entry with revision main <= ``main``."""
    return _invert(Revision(main, MAX_SUB))


def index_seek(group: bytes, main: int) -> bytes:
    return group + seek_suffix(main)


def index_group_end(group: bytes) -> bytes:
    """A seek target just past every entry of the group (the next key's group follows)."""
    return group[: -len(TERMINATOR)] + _PAST_GROUP


def index_bound(key: bytes) -> bytes:
    """Lower bound of index entries for keys >= ``key`` (and upper bound for keys < ``key``)."""
    return schema.KEY_INDEX + escape(key)


INDEX_START = schema.KEY_INDEX
INDEX_STOP = bytes([schema.KEY_INDEX[0] + 1])


def group_length(ikey: bytes) -> int:
    """Length of the group prefix of an index key (up to and including the terminator)."""
    return ikey.index(TERMINATOR) + len(TERMINATOR)  # the first 00 01: escaped zeros are 00 FF


def group_raw_key(ikey: bytes, group_len: int) -> bytes:
    return ikey[1 : group_len - len(TERMINATOR)].replace(_ESCAPED_ZERO, b"\x00")


def index_rev(ikey: bytes, group_len: int) -> Revision:
    inv_main, inv_sub = _REV.unpack(ikey[group_len:])
    return Revision(_MAX_U64 - inv_main, _MAX_U64 - inv_sub)


def split_index_key(ikey: bytes) -> tuple[bytes, bytes, Revision]:
    """Split an index key into (group prefix, raw key, revision)."""
    cut = group_length(ikey)
    return ikey[:cut], group_raw_key(ikey, cut), index_rev(ikey, cut)


# ---- current ----


def current_key(key: bytes) -> bytes:
    return schema.CURRENT + key


CURRENT_START = schema.CURRENT
CURRENT_STOP = bytes([schema.CURRENT[0] + 1])


def live_key(key: bytes) -> bytes:
    return schema.LIVE_KEYS + key


LIVE_START = schema.LIVE_KEYS
LIVE_STOP = bytes([schema.LIVE_KEYS[0] + 1])
