"""etcd's backend buckets and encodings <-> etcdpy's LevelDB keyspaces (snapshots both ways).

A snapshot is etcd's: a bbolt file (`storage.bbolt`) with etcd 3.4's buckets, then
the sha256 of those bytes.  What each bucket holds and where etcdpy keeps it:

===================  ==============================================  ==============================
bucket               etcd's key -> value                             etcdpy (`storage.schema`)
===================  ==============================================  ==============================
``key``              main (8, BE) ``_`` sub (8, BE), ``t`` appended   history ``h`` (and the key
                     for a tombstone -> mvccpb.KeyValue (a            index ``i``, current ``c``,
                     tombstone's carries only the key)                live keys ``k`` derived)
``meta``             ``consistent_index`` -> u64 BE;                  meta: applied index,
                     ``scheduledCompactRev``/``finishedCompactRev``    compaction revisions
                     -> a revision's 17 bytes
``lease``            lease ID (8, BE) -> leasepb.Lease{ID, TTL,       leases ``l``
                     RemainingTTL}
``members``          member ID in hex -> JSON {id, peerURLs,          members ``b``
                     isLearner, name, clientURLs}
``members_removed``  member ID in hex -> ``removed``                  meta ``removed/``
``cluster``          ``clusterVersion`` -> ``3.4.0``                  meta ``cluster_version``
``alarm``            etcdserverpb.AlarmMember -> empty                alarms ``x``
``auth``             ``authEnabled`` -> 1 byte (1 on, 0 off; absent  auth ``a e``, ``a v``
                     until first enabled); ``authRevision`` -> u64
                     BE
``authUsers``        user name -> authpb.User (bcrypt hash, roles)   auth ``a u <name>``
``authRoles``        role name -> authpb.Role (key permissions)      auth ``a r <name>``
===================  ==============================================  ==============================

`write_snapshot` streams a LevelDB snapshot (a consistent view) into a bbolt file,
one bucket at a time, with bounded memory; `snapshot_status` is etcdctl's ``snapshot
status`` (a crc32-Castagnoli over every bucket name, key and value); `load_state`
fills a fresh backend from a bbolt file, in bounded batches, deriving etcdpy's
indexes from the history.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from dataclasses import dataclass
from typing import Any, BinaryIO

from crc32c import crc32c as crc32c_update
from google.protobuf.message import DecodeError

from etcdpy.api.authpb import auth_pb2
from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server.mvcc import layout
from etcdpy.server.mvcc.layout import Revision
from etcdpy.server.storage import bbolt, schema

KEY = b"key"
META = b"meta"
LEASE = b"lease"
MEMBERS = b"members"
MEMBERS_REMOVED = b"members_removed"
CLUSTER = b"cluster"
ALARM = b"alarm"
AUTH = b"auth"
AUTH_USERS = b"authUsers"
AUTH_ROLES = b"authRoles"

CONSISTENT_INDEX = b"consistent_index"
SCHEDULED_COMPACT = b"scheduledCompactRev"
FINISHED_COMPACT = b"finishedCompactRev"
CLUSTER_VERSION = b"clusterVersion"
AUTH_REVISION = b"authRevision"
AUTH_ENABLED = b"authEnabled"

SHA256_SIZE = 32
KEY_FILL_PERCENT = 0.9  # etcd's fill for the key bucket, written in revision order
_REV = struct.Struct(">Q")
_U64 = struct.Struct(">Q")
_REV_LEN = 17
_BATCH_BYTES = 4 << 20

# etcdpy's own meta keys this module reads or writes (owned by their modules, named here once)
CLUSTER_VERSION_KEY = schema.META + b"cluster_version"  # consensus.membership
REMOVED_PREFIX = schema.META + b"removed/"  # consensus.replication
APPLIED_INDEX_KEY = schema.META + schema.META_APPLIED_INDEX
AUTH_ENABLED_KEY = schema.AUTH + b"e"  # server.auth.store: 1 byte, as etcd's authEnabled
AUTH_REVISION_KEY = schema.AUTH + b"v"  # server.auth.store: u64 BE, as etcd's authRevision
AUTH_USERS_PREFIX = schema.AUTH + b"u"  # server.auth.store: + name -> authpb.User
AUTH_ROLES_PREFIX = schema.AUTH + b"r"  # server.auth.store: + name -> authpb.Role
_ALARM_KEY = struct.Struct(">Qi")  # server.alarm: member ID, alarm type
_LEASE_RECORD = struct.Struct(">qq")  # server.lease.lessor: TTL, remaining TTL


class SnapshotError(ValueError):
    """The snapshot file cannot be used; the message says why."""


# ---- etcd's encodings ----


def rev_bytes(main: int, sub: int = 0, tombstone: bool = False) -> bytes:
    """etcd's revision key: main (8, BE), ``_``, sub (8, BE), and ``t`` for a tombstone."""
    return _REV.pack(main) + b"_" + _REV.pack(sub) + (b"t" if tombstone else b"")


def parse_rev(data: bytes) -> tuple[Revision, bool]:
    """(revision, is a tombstone) of a key bucket key."""
    if len(data) not in (_REV_LEN, _REV_LEN + 1) or data[8:9] != b"_":
        raise SnapshotError(
            f"the snapshot is damaged: a {len(data)}-byte key in the key bucket, where a revision "
            f"(17 bytes, 18 for a tombstone) belongs: {data[:24]!r}"
        )
    return Revision(_REV.unpack_from(data)[0], _REV.unpack_from(data, 9)[0]), len(data) == _REV_LEN + 1


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 as protobuf encodes it
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_lease(lease_id: int, ttl: int, remaining: int) -> bytes:
    """leasepb.Lease{ID=1, TTL=2, RemainingTTL=3} (three int64; zeros omitted, as proto3 does)."""
    out = b""
    for number, value in ((1, lease_id), (2, ttl), (3, remaining)):
        if value:
            out += bytes([number << 3]) + _varint(value)
    return out


def decode_lease(data: bytes) -> tuple[int, int, int]:
    """(ID, TTL, RemainingTTL) of a leasepb.Lease; unknown fields skipped."""
    fields = {1: 0, 2: 0, 3: 0}
    pos = 0
    try:
        while pos < len(data):
            tag, pos = _read_varint(data, pos)
            number, wire = tag >> 3, tag & 7
            if wire == 0:
                value, pos = _read_varint(data, pos)
                if number in fields:
                    fields[number] = value - (1 << 64) if value >= 1 << 63 else value
            elif wire == 2:
                length, pos = _read_varint(data, pos)
                pos += length
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            else:
                raise SnapshotError("bad lease record")
    except IndexError:
        raise SnapshotError("bad lease record") from None
    return fields[1], fields[2], fields[3]


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def member_json(member: rpc_pb2.Member) -> bytes:
    """etcd's membership.Member as Go's json.Marshal writes it (field order, omitempty)."""
    doc: dict[str, Any] = {"id": member.ID, "peerURLs": list(member.peerURLs)}
    if member.isLearner:
        doc["isLearner"] = True
    if member.name:
        doc["name"] = member.name
    if member.clientURLs:
        doc["clientURLs"] = list(member.clientURLs)
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    # Go escapes these three in strings
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def parse_member(data: bytes) -> rpc_pb2.Member:
    doc = json.loads(data)
    return rpc_pb2.Member(
        ID=int(doc["id"]),
        peerURLs=doc.get("peerURLs") or [],
        isLearner=bool(doc.get("isLearner")),
        name=doc.get("name", ""),
        clientURLs=doc.get("clientURLs") or [],
    )


# ---- writing: etcdpy's state -> a bbolt file ----


@dataclass(frozen=True, slots=True)
class Written:
    """What `write_snapshot` wrote: the applied index and revision it holds, the db's size."""

    applied_index: int
    revision: int
    size: int


def write_snapshot(view: Any, out: BinaryIO) -> Written:
    """Write the state of a LevelDB view (a plyvel snapshot) as etcd's bbolt file; no sha256 appended.

    `out` must be seekable (the meta pages are written last).
    """
    writer = bbolt.BoltWriter(out)
    applied = layout.decode_u64(view.get(APPLIED_INDEX_KEY))

    alarm = writer.bucket(ALARM)
    entries = []
    for key in view.iterator(prefix=schema.ALARMS, include_value=False):
        member_id, kind = _ALARM_KEY.unpack_from(key, len(schema.ALARMS))
        entries.append(rpc_pb2.AlarmMember(memberID=member_id, alarm=kind).SerializeToString())
    for entry in sorted(entries):
        alarm.put(entry, b"")

    _write_auth(view, writer)

    cluster = writer.bucket(CLUSTER)
    version = view.get(CLUSTER_VERSION_KEY)
    if version:
        cluster.put(CLUSTER_VERSION, version)

    revision = _write_keys(view, writer.bucket(KEY, fill_percent=KEY_FILL_PERCENT))

    leases = writer.bucket(LEASE)
    for key, value in view.iterator(prefix=schema.LEASES):
        lease_id = int.from_bytes(key[1:], "big", signed=True)
        ttl, remaining = _LEASE_RECORD.unpack(value)
        leases.put(key[1:], encode_lease(lease_id, ttl, remaining))

    members = writer.bucket(MEMBERS)
    by_hex = {}
    for _key, value in view.iterator(prefix=schema.MEMBERS):
        member = rpc_pb2.Member.FromString(value)
        by_hex[format(member.ID, "x").encode()] = member_json(member)
    for hex_id in sorted(by_hex):
        members.put(hex_id, by_hex[hex_id])
    removed = writer.bucket(MEMBERS_REMOVED)
    removed_ids = sorted(
        format(int.from_bytes(k[len(REMOVED_PREFIX) :], "big"), "x").encode()
        for k in view.iterator(prefix=REMOVED_PREFIX, include_value=False)
    )
    for hex_id in removed_ids:
        removed.put(hex_id, b"removed")

    meta = writer.bucket(META)
    meta.put(CONSISTENT_INDEX, _U64.pack(applied))
    finished = layout.decode_i64(
        view.get(layout.meta_key(layout.META_COMPACT_FINISHED)), layout.NEVER_COMPACTED
    )
    scheduled = layout.decode_i64(
        view.get(layout.meta_key(layout.META_COMPACT_SCHEDULED)), layout.NEVER_COMPACTED
    )
    if finished > 0:
        meta.put(FINISHED_COMPACT, rev_bytes(finished))
    if scheduled > 0:
        meta.put(SCHEDULED_COMPACT, rev_bytes(scheduled))
    size = writer.close()
    return Written(applied, revision, size)


def _write_auth(view: Any, writer: bbolt.BoltWriter) -> None:
    """etcd's three auth buckets from the ``a`` keyspace: the same authpb records under the same names."""
    auth = writer.bucket(AUTH)
    enabled = view.get(AUTH_ENABLED_KEY)
    if enabled is not None:  # etcd writes the flag only once auth was first enabled
        auth.put(AUTH_ENABLED, enabled)
    auth.put(AUTH_REVISION, view.get(AUTH_REVISION_KEY) or _U64.pack(1))
    roles = writer.bucket(AUTH_ROLES)
    for key, value in view.iterator(prefix=AUTH_ROLES_PREFIX):
        roles.put(key[len(AUTH_ROLES_PREFIX) :], value)
    users = writer.bucket(AUTH_USERS)
    for key, value in view.iterator(prefix=AUTH_USERS_PREFIX):
        users.put(key[len(AUTH_USERS_PREFIX) :], value)


def _write_keys(view: Any, bucket: bbolt.BucketWriter) -> int:
    """The history as etcd's key bucket; returns the store's revision."""
    for hkey, record in view.iterator(start=layout.HISTORY_START, stop=layout.HISTORY_STOP):
        rev = layout.history_rev(hkey)
        kind, kv_bytes = layout.decode_record(record)
        if kind == layout.TOMBSTONE:
            # etcd's tombstone carries only the key (etcdpy's also its mod revision)
            kv_bytes = kv_pb2.KeyValue(key=kv_pb2.KeyValue.FromString(kv_bytes).key).SerializeToString()
            bucket.put(rev_bytes(rev.main, rev.sub, True), kv_bytes)
        else:
            bucket.put(rev_bytes(rev.main, rev.sub), kv_bytes)
    return layout.decode_u64(view.get(layout.meta_key(layout.META_CURRENT_REV)), layout.FIRST_REVISION)


# ---- reading a snapshot file ----


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C (Castagnoli), continuing from `crc`, as Go's crc32.Update with that table."""
    return crc32c_update(data, crc)


@dataclass(frozen=True, slots=True)
class Status:
    """etcdctl's snapshot status: crc32c hash, the key bucket's last revision, pairs, db size."""

    hash: int
    revision: int
    total_key: int
    total_size: int


def has_checksum(size: int) -> bool:
    """Whether a file of `size` bytes ends with a sha256 (etcd's rule: size % 512 == 32)."""
    return size % 512 == SHA256_SIZE


def db_length(path: str | os.PathLike[str]) -> int:
    """The bytes of the file that are the database (without a trailing sha256)."""
    size = os.path.getsize(path)
    return size - SHA256_SIZE if has_checksum(size) else size


def open_snapshot(path: str | os.PathLike[str], *, check: bool = True) -> bbolt.BoltReader:
    """Open a snapshot's database (its sha256 excluded) and check every page; SnapshotError if damaged."""
    try:
        reader = bbolt.BoltReader(path, db_length(path))
    except bbolt.NotBoltError:
        raise SnapshotError("invalid database") from None  # bbolt's ErrInvalid, as etcdctl says it
    except bbolt.BoltFormatError as exc:
        raise SnapshotError(str(exc)) from None
    if check:
        try:
            reader.check()
        except bbolt.BoltFormatError as exc:
            reader.close()
            raise SnapshotError(f"snapshot file integrity check failed: {exc}") from None
    return reader


def snapshot_status(path: str | os.PathLike[str]) -> Status:
    """etcdctl 3.4's ``snapshot status`` of a file."""
    with open_snapshot(path) as reader:
        crc = 0
        total = 0
        revision = 0
        try:
            for name, pairs in reader.walk():
                crc = crc32c(name, crc)
                is_key = name == KEY
                for key, value in pairs:
                    crc = crc32c(value, crc32c(key, crc))
                    if is_key:
                        revision = _REV.unpack_from(key)[0] if len(key) >= 8 else revision
                    total += 1
        except bbolt.BoltFormatError as exc:
            raise SnapshotError(str(exc)) from None
        return Status(crc, revision, total, reader.db_size)


def verify_sha256(path: str | os.PathLike[str], *, skip_hash_check: bool) -> int:
    """Check a snapshot's trailing sha256 as etcdctl's restore does; return the database's length."""
    size = os.path.getsize(path)
    if not has_checksum(size):
        if not skip_hash_check:
            raise SnapshotError("snapshot missing hash but --skip-hash-check=false")
        return size
    length = size - SHA256_SIZE
    if skip_hash_check:
        return length
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        remaining = length
        while remaining:
            block = f.read(min(remaining, 1 << 20))
            if not block:
                break
            digest.update(block)
            remaining -= len(block)
        expected = f.read(SHA256_SIZE)
    got = digest.digest()
    if expected != got:
        go = " ".join(str(b) for b in expected), " ".join(str(b) for b in got)
        raise SnapshotError(f"expected sha256 [{go[0]}], got [{go[1]}]")
    return length


# ---- loading: a bbolt file -> a fresh backend's state ----


@dataclass(frozen=True, slots=True)
class Loaded:
    """What `load_state` wrote: the snapshot's revision, keys (live) and leases."""

    revision: int
    compact_revision: int
    keys: int
    leases: int


class _Batches:
    """Unsynced LevelDB write batches of bounded size."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.wb = db.write_batch()
        self.pending = 0

    def put(self, key: bytes, value: bytes) -> None:
        self.wb.put(key, value)
        self.pending += len(key) + len(value) + 16
        if self.pending >= _BATCH_BYTES:
            self.flush()

    def delete(self, key: bytes) -> None:
        self.wb.delete(key)
        self.pending += len(key) + 16
        if self.pending >= _BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.wb.write()
            self.wb.clear()
            self.pending = 0


def load_state(reader: bbolt.BoltReader, db: Any) -> Loaded:
    """Fill an empty etcdpy LevelDB with the snapshot's keys, leases, alarms, auth, version and compaction.

    Users, roles, the auth flag and revision are loaded as etcd stored them.  Members are not
    loaded: a restored member gets the membership of its new cluster.  The applied index is
    left out (the new cluster's log starts over).  SnapshotError for a file that is bbolt but
    not etcd's, or whose records are damaged.
    """
    buckets = set(reader.buckets())
    if KEY not in buckets or META not in buckets:
        raise SnapshotError(
            f"{reader.path}: a bbolt database without etcd's key and meta buckets (not an etcd snapshot)"
        )
    try:
        batches = _Batches(db)
        _load_auth(reader, buckets, batches)
        revision = _load_history(reader, batches)
        meta = dict(reader.items(META))
        scheduled = _compact_rev(meta.get(SCHEDULED_COMPACT))
        finished = _compact_rev(meta.get(FINISHED_COMPACT))
        if scheduled != layout.NEVER_COMPACTED and finished == layout.NEVER_COMPACTED:
            finished = 0  # etcdpy's compactor then resumes from the first revision
        revision = max(revision, scheduled, layout.FIRST_REVISION)
        batches.put(layout.meta_key(layout.META_CURRENT_REV), layout.encode_u64(revision))
        if scheduled != layout.NEVER_COMPACTED:
            batches.put(layout.meta_key(layout.META_COMPACT_SCHEDULED), layout.encode_i64(scheduled))
            batches.put(layout.meta_key(layout.META_COMPACT_FINISHED), layout.encode_i64(finished))
        leases = 0
        if LEASE in buckets:
            for _key, value in reader.items(LEASE):
                lease_id, ttl, remaining = decode_lease(value)
                batches.put(
                    schema.LEASES + lease_id.to_bytes(8, "big", signed=True),
                    _LEASE_RECORD.pack(ttl, remaining),
                )
                leases += 1
        if ALARM in buckets:
            for key, _value in reader.items(ALARM):
                alarm = rpc_pb2.AlarmMember.FromString(key)
                batches.put(schema.ALARMS + _ALARM_KEY.pack(alarm.memberID, alarm.alarm), b"")
        if CLUSTER in buckets:
            for key, value in reader.items(CLUSTER):
                if key == CLUSTER_VERSION:
                    batches.put(CLUSTER_VERSION_KEY, value)
        batches.flush()
        keys = _count_live(db)
    except bbolt.BoltFormatError as exc:
        raise SnapshotError(str(exc)) from None
    return Loaded(revision, scheduled, keys, leases)


def _load_auth(reader: bbolt.BoltReader, buckets: set[bytes], batches: _Batches) -> None:
    """The auth buckets into the ``a`` keyspace (records checked: a damaged one is refused, not served)."""
    if AUTH in buckets:
        for key, value in reader.items(AUTH):
            if key == AUTH_ENABLED:
                if value not in (b"\x00", b"\x01"):
                    raise SnapshotError(f"the snapshot is damaged: authEnabled is {value!r}, not 0 or 1")
                batches.put(AUTH_ENABLED_KEY, value)
            elif key == AUTH_REVISION:
                if len(value) != _U64.size:
                    raise SnapshotError(
                        f"the snapshot is damaged: authRevision has {len(value)} bytes, not 8"
                    )
                batches.put(AUTH_REVISION_KEY, value)
    for bucket, prefix, record in (
        (AUTH_USERS, AUTH_USERS_PREFIX, auth_pb2.User),
        (AUTH_ROLES, AUTH_ROLES_PREFIX, auth_pb2.Role),
    ):
        if bucket not in buckets:
            continue
        for name, value in reader.items(bucket):
            try:
                parsed = record.FromString(value)
            except DecodeError:
                parsed = None
            if parsed is None or parsed.name != name:
                raise SnapshotError(
                    f"the snapshot is damaged: {bucket.decode()} holds a bad record under {name!r}"
                )
            batches.put(prefix + name, value)


def _compact_rev(raw: bytes | None) -> int:
    if raw is None:
        return layout.NEVER_COMPACTED
    return parse_rev(raw)[0].main


def _load_history(reader: bbolt.BoltReader, batches: _Batches) -> int:
    """History, key index, current and live keys from the key bucket; the last revision seen.

    The bucket is in revision order, so replaying it as the applier writes (a put sets the
    key's current version, a tombstone removes it; the batch keeps the order) leaves each
    key's newest version current, with no second pass.
    """
    last = 0
    for key, value in reader.items(KEY):
        rev, tombstone = parse_rev(key)
        user_key = kv_key(value)
        if tombstone:
            tomb = kv_pb2.KeyValue(key=user_key, mod_revision=rev.main).SerializeToString()
            batches.put(layout.history_key(rev), layout.encode_record(layout.TOMBSTONE, tomb))
            batches.put(layout.index_key(user_key, rev), layout.TOMBSTONE)
            batches.delete(layout.current_key(user_key))
            batches.delete(layout.live_key(user_key))
        else:
            batches.put(layout.history_key(rev), layout.encode_record(layout.PUT, value))
            batches.put(layout.index_key(user_key, rev), layout.PUT)
            batches.put(layout.current_key(user_key), value)
            batches.put(layout.live_key(user_key), b"")
        last = rev.main
    return last


def kv_key(value: bytes) -> bytes:
    """The key of a serialized mvccpb.KeyValue: read from its first field when it is the key (as
    etcd and etcdpy write it: field 1 first), else by parsing the whole message."""
    if value[:1] == b"\n":
        length, pos = _read_varint(value, 1)
        if pos + length <= len(value):
            return value[pos : pos + length]
    return kv_pb2.KeyValue.FromString(value).key


def _count_live(db: Any) -> int:
    return sum(1 for _ in db.iterator(start=layout.LIVE_START, stop=layout.LIVE_STOP, include_value=False))


# ---- the Snapshot RPC's file ----

SEND_CHUNK_BYTES = 32 * 1024  # etcd's snapshotSendBufferSize: one SnapshotResponse's blob


def spool_snapshot(view: Any, directory: str | os.PathLike[str]) -> tuple[BinaryIO, Written]:
    """Write a view's state as a bbolt file to an anonymous temporary file in `directory`.

    The view is closed here, when done with (the caller may have stopped waiting).  The
    file has no name (it disappears when closed, or with the process); the caller reads
    it from the start and closes it.  Blocking: run it on a worker thread.
    """
    try:
        f = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 (handed to the caller)
        try:
            written = write_snapshot(view, f)
            f.flush()
            f.seek(0)
        except BaseException:
            f.close()
            raise
    finally:
        view.close()
    return f, written
