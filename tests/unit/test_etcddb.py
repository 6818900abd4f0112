"""storage.etcddb: etcdpy's state -> etcd's buckets -> etcdpy's state gives the same keyspaces and hashes.

Real etcd reading these files and etcdpy reading real etcd's are tested in tests/interop.
"""

from __future__ import annotations

import base64
import hashlib
import re
import tempfile
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lease_support import Member

from etcdpy.api.authpb import auth_pb2
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server.apply import Applier
from etcdpy.server.auth import AuthStore, SimpleTokens
from etcdpy.server.mvcc import layout
from etcdpy.server.mvcc.kvstore import KVStore
from etcdpy.server.storage import bbolt, etcddb, schema
from etcdpy.server.storage.backend import Backend

# the lease record a real etcd 3.4.23 wrote for lease 0x3ceea24ca5fe3509 granted with TTL 600
ETCD_LEASE = b"\x08\x89\xea\xf8\xaf\xca\xc9\xa8\xf7<\x10\xd8\x04"
ETCD_MEMBER = (
    b'{"id":443629905751424238,"peerURLs":["http://127.0.0.1:32380"],"name":"e1",'
    b'"clientURLs":["http://127.0.0.1:32379"]}'
)

_STATE_PREFIXES = (
    schema.HISTORY,
    schema.KEY_INDEX,
    schema.CURRENT,
    schema.LIVE_KEYS,
    schema.LEASES,
    schema.ALARMS,
)


def build_source(path: Path) -> Member:
    """A member's applied state with history, tombstones, a txn, leases with keys and a compaction."""
    m = Member(path)
    m.grant(0x1234, 60)
    m.grant(0x5678, 120)
    m.put(b"a", b"1")
    m.put(b"a", b"2")
    m.put(b"b\x00zero", b"z", lease=0x1234)
    m.put(b"c", b"x" * 9000, lease=0x5678)
    m.apply(delete_range=rpc_pb2.DeleteRangeRequest(key=b"a"))
    m.put(b"a", b"3")
    m.apply(
        txn=rpc_pb2.TxnRequest(
            success=[
                rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"t1", value=b"1")),
                rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"t2", value=b"2")),
            ]
        )
    )
    for i in range(300):
        m.put(f"k{i:04d}".encode(), f"v{i}".encode())
    m.apply(compaction=rpc_pb2.CompactionRequest(revision=4))
    while not m.applier.store.compact_step():
        pass
    m.put(b"after", b"compaction")
    with m.backend.batch(sync=False) as wb:  # an alarm, as the alarm applier stores it
        wb.put(schema.ALARMS + (7).to_bytes(8, "big") + (1).to_bytes(4, "big", signed=True), b"")
    return m


def state(backend: Backend) -> dict[bytes, list[tuple[bytes, bytes]]]:
    return {p: list(backend.db.iterator(prefix=p)) for p in _STATE_PREFIXES}


def save(backend: Backend, path: Path) -> etcddb.Written:
    view = backend.snapshot()
    try:
        with path.open("wb") as f:
            written = etcddb.write_snapshot(view, f)
    finally:
        view.close()
    with path.open("ab") as f:
        f.write(hashlib.sha256(path.read_bytes()).digest())
    return written


def test_state_round_trips_through_etcds_format(tmp_path: Path) -> None:
    source = build_source(tmp_path / "src")
    written = save(source.backend, tmp_path / "snap.db")
    assert written.revision == source.applier.store.current_revision
    assert written.applied_index == source.applier.applied_index

    target = Backend(tmp_path / "dst")
    with etcddb.open_snapshot(tmp_path / "snap.db") as reader:
        loaded = etcddb.load_state(reader, target.db)
    assert loaded.revision == source.applier.store.current_revision
    assert loaded.compact_revision == 4
    assert loaded.leases == 2
    assert state(target) == state(source.backend)
    restored = KVStore(target)
    assert restored.current_revision == source.applier.store.current_revision
    assert restored.compact_revision == source.applier.store.compact_revision
    for rev in range(5, restored.current_revision + 1):
        assert restored.hash_kv(rev) == source.applier.store.hash_kv(rev)
    assert target.get(etcddb.APPLIED_INDEX_KEY) is None  # the new cluster's log starts over


def test_buckets_hold_etcds_encodings(tmp_path: Path) -> None:
    source = build_source(tmp_path / "src")
    save(source.backend, tmp_path / "snap.db")
    with etcddb.open_snapshot(tmp_path / "snap.db") as reader:
        assert reader.buckets() == [
            b"alarm", b"auth", b"authRoles", b"authUsers", b"cluster", b"key", b"lease", b"members",
            b"members_removed", b"meta",
        ]  # fmt: skip
        keys = list(reader.items(etcddb.KEY))
        meta = dict(reader.items(etcddb.META))
        leases = dict(reader.items(etcddb.LEASE))
        alarms = list(reader.items(etcddb.ALARM))
        auth = dict(reader.items(etcddb.AUTH))
    # every history record, tombstones marked with "t" and carrying only the key
    tombstones = [(k, v) for k, v in keys if k.endswith(b"t")]
    assert tombstones and all(len(k) == 18 and k[8:9] == b"_" for k, _ in tombstones)
    assert all(kv_pb2.KeyValue.FromString(v) == kv_pb2.KeyValue(key=b"a") for _, v in tombstones)
    last = keys[-1]
    assert etcddb.parse_rev(last[0])[0].main == source.applier.store.current_revision
    assert kv_pb2.KeyValue.FromString(last[1]).key == b"after"
    assert meta[etcddb.CONSISTENT_INDEX] == source.applier.applied_index.to_bytes(8, "big")
    assert meta[etcddb.SCHEDULED_COMPACT] == etcddb.rev_bytes(4)
    assert meta[etcddb.FINISHED_COMPACT] == etcddb.rev_bytes(4)
    assert etcddb.decode_lease(leases[(0x1234).to_bytes(8, "big")]) == (0x1234, 60, 0)
    assert rpc_pb2.AlarmMember.FromString(alarms[0][0]) == rpc_pb2.AlarmMember(
        memberID=7, alarm=rpc_pb2.NOSPACE
    )
    assert auth == {b"authRevision": (1).to_bytes(8, "big")}


def test_status_counts_every_pair_and_hashes_as_etcdctl(tmp_path: Path) -> None:
    source = build_source(tmp_path / "src")
    written = save(source.backend, tmp_path / "snap.db")
    status = etcddb.snapshot_status(tmp_path / "snap.db")
    with etcddb.open_snapshot(tmp_path / "snap.db") as reader:
        crc = 0
        pairs = 0
        for name, items in reader.walk():
            crc = etcddb.crc32c(name, crc)
            for k, v in items:
                crc = etcddb.crc32c(v, etcddb.crc32c(k, crc))
                pairs += 1
    assert status == etcddb.Status(crc, written.revision, pairs, written.size)


def test_etcds_encodings_known_vectors() -> None:
    assert etcddb.crc32c(b"123456789") == 0xE3069283
    assert etcddb.crc32c(b"6789", etcddb.crc32c(b"12345")) == 0xE3069283
    assert etcddb.encode_lease(0x3CEEA24CA5FE3509, 600, 0) == ETCD_LEASE
    assert etcddb.decode_lease(ETCD_LEASE) == (0x3CEEA24CA5FE3509, 600, 0)
    assert etcddb.decode_lease(etcddb.encode_lease(-5, 10, 7)) == (-5, 10, 7)
    member = etcddb.parse_member(ETCD_MEMBER)
    assert member == rpc_pb2.Member(
        ID=443629905751424238,
        name="e1",
        peerURLs=["http://127.0.0.1:32380"],
        clientURLs=["http://127.0.0.1:32379"],
    )
    assert etcddb.member_json(member) == ETCD_MEMBER
    assert etcddb.rev_bytes(5, 1, True) == b"\x00" * 7 + b"\x05_" + b"\x00" * 7 + b"\x01t"
    assert etcddb.parse_rev(etcddb.rev_bytes(5, 1, True)) == (layout.Revision(5, 1), True)


def test_sha256_checked_as_etcdctl_restore_does(tmp_path: Path) -> None:
    source = build_source(tmp_path / "src")
    written = save(source.backend, tmp_path / "snap.db")
    path = tmp_path / "snap.db"
    assert etcddb.verify_sha256(path, skip_hash_check=False) == written.size
    data = bytearray(path.read_bytes())
    data[5 * 4096 + 100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(etcddb.SnapshotError, match=r"expected sha256 \[\d+( \d+){31}\], got \["):
        etcddb.verify_sha256(path, skip_hash_check=False)
    assert etcddb.verify_sha256(path, skip_hash_check=True) == written.size
    path.write_bytes(bytes(data[: written.size]))  # a db copied from a data dir: no hash
    with pytest.raises(etcddb.SnapshotError, match="snapshot missing hash but --skip-hash-check=false"):
        etcddb.verify_sha256(path, skip_hash_check=False)
    assert etcddb.verify_sha256(path, skip_hash_check=True) == written.size


def _bolt(path: Path, buckets: dict[bytes, dict[bytes, bytes]]) -> Path:
    with path.open("wb") as f:
        w = bbolt.BoltWriter(f)
        for name, pairs in buckets.items():
            b = w.bucket(name)
            for k in sorted(pairs):
                b.put(k, pairs[k])
        w.close()
    return path


def test_a_bbolt_file_that_is_not_etcds_is_refused(tmp_path: Path) -> None:
    path = _bolt(tmp_path / "other.db", {b"widgets": {b"k": b"v"}})
    target = Backend(tmp_path / "dst")
    with (
        etcddb.open_snapshot(path) as reader,
        pytest.raises(etcddb.SnapshotError, match="not an etcd snapshot"),
    ):
        etcddb.load_state(reader, target.db)


# the auth buckets a real etcd 3.4.23 wrote: root (role root) and alice (role r1: readwrite on the
# prefix foo/, read on bar), auth enabled after 9 auth changes
ETCD_AUTH = {
    b"auth": {b"authEnabled": b"\x01", b"authRevision": b"\x00\x00\x00\x00\x00\x00\x00\t"},
    b"authUsers": {
        b"alice": b"\n\x05alice\x12<$2a$10$BCGKHnre70RY9XmvJY8mC.DFExVrxhaXhJ7vJTNQ87CXsdqgaNwem"
        b'\x1a\x02r1"\x00',
        b"root": b"\n\x04root\x12<$2a$10$NBRDHenGoH7vxNbCaJASDORZK1vYAIKPlPUQmg7W.Le4xiPSWUUaW"
        b'\x1a\x04root"\x00',
    },
    b"authRoles": {
        b"r1": b"\n\x02r1\x12\x05\x12\x03bar\x12\x0e\x08\x02\x12\x04foo/\x1a\x04foo0",
        b"root": b"\n\x04root",
    },
}


def _auth_store(backend: Backend) -> AuthStore:
    return AuthStore(backend, SimpleTokens(ttl=60), lease_keys=lambda lease: ())


def test_etcds_auth_buckets_load_and_write_back_unchanged(tmp_path: Path) -> None:
    path = _bolt(tmp_path / "auth.db", {b"key": {}, b"meta": {}, **ETCD_AUTH})
    target = Backend(tmp_path / "dst")
    with etcddb.open_snapshot(path) as reader:
        etcddb.load_state(reader, target.db)
    auth = _auth_store(target)
    assert (auth.enabled, auth.revision) == (True, 9)
    assert sorted(auth.users) == ["alice", "root"] and sorted(auth.roles) == ["r1", "root"]
    assert list(auth.users["alice"].roles) == ["r1"]
    assert bcrypt.checkpw(b"alicepw", auth.users["alice"].password)  # etcd's hash keeps working
    assert auth.index.allowed("alice", b"foo/x", b"", write=True)
    assert auth.index.allowed("alice", b"bar", b"", write=False)
    assert not auth.index.allowed("alice", b"bar", b"", write=True)
    assert not auth.index.allowed("alice", b"secret", b"", write=False)

    save(target, tmp_path / "again.db")
    with etcddb.open_snapshot(tmp_path / "again.db") as reader:
        written = {name: dict(reader.items(name)) for name in ETCD_AUTH}
    assert written == ETCD_AUTH


def test_auth_as_the_store_applies_it_round_trips(tmp_path: Path) -> None:
    source = Backend(tmp_path / "src")
    auth = _auth_store(source)
    applier = Applier(source, handlers=auth.handlers(), layers=[auth.layer])
    hashed = base64.b64encode(bcrypt.hashpw(b"pw", bcrypt.gensalt(4))).decode()
    nopw = auth_pb2.UserAddOptions(no_password=True)
    write = auth_pb2.Permission(permType=auth_pb2.Permission.WRITE, key=b"k", range_end=b"l")
    requests: list[dict[str, Any]] = [
        {"auth_role_add": rpc_pb2.AuthRoleAddRequest(name="r")},
        {"auth_user_add": rpc_pb2.AuthUserAddRequest(name="u", hashedPassword=hashed)},
        {"auth_user_add": rpc_pb2.AuthUserAddRequest(name="nopw", options=nopw)},
        {"auth_user_add": rpc_pb2.AuthUserAddRequest(name="root", hashedPassword=hashed)},
        {"auth_user_grant_role": rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root")},
        {"auth_user_grant_role": rpc_pb2.AuthUserGrantRoleRequest(user="u", role="r")},
        {"auth_role_grant_permission": rpc_pb2.AuthRoleGrantPermissionRequest(name="r", perm=write)},
        {"auth_enable": rpc_pb2.AuthEnableRequest()},
        {"auth_disable": rpc_pb2.AuthDisableRequest()},
    ]
    for index, request in enumerate(requests, start=1):
        entry = raft_internal_pb2.InternalRaftRequest(**request)
        entry.header.ID = index
        if index == len(requests):
            entry.header.username, entry.header.auth_revision = "root", auth.revision
        (result,) = applier.apply([(index, entry.SerializeToString())])
        assert not isinstance(result.response, Exception), (request, result.response)
    save(source, tmp_path / "snap.db")
    with etcddb.open_snapshot(tmp_path / "snap.db") as reader:
        buckets = {name: dict(reader.items(name)) for name in ETCD_AUTH}
    assert buckets[b"auth"] == {b"authEnabled": b"\x00", b"authRevision": (9).to_bytes(8, "big")}
    assert sorted(buckets[b"authUsers"]) == [b"nopw", b"root", b"u"]
    assert auth_pb2.User.FromString(buckets[b"authUsers"][b"nopw"]).options.no_password

    target = Backend(tmp_path / "dst")
    with etcddb.open_snapshot(tmp_path / "snap.db") as reader:
        etcddb.load_state(reader, target.db)
    restored = _auth_store(target)
    assert (restored.enabled, restored.revision) == (False, 9)
    assert restored.users == auth.users and restored.roles == auth.roles
    assert restored.index.allowed("u", b"k", b"", write=True)


@pytest.mark.parametrize(
    ("bucket", "pairs", "message"),
    [
        (b"auth", {b"authEnabled": b"\x02"}, "authEnabled is"),
        (b"auth", {b"authRevision": b"\x01"}, "authRevision has 1 bytes"),
        (b"authUsers", {b"u": b"\xff\xff"}, "authUsers holds a bad record under b'u'"),
        (b"authRoles", {b"r": auth_pb2.Role(name=b"other").SerializeToString()}, "authRoles holds a bad"),
    ],
)
def test_damaged_auth_records_are_refused(
    tmp_path: Path, bucket: bytes, pairs: dict[bytes, bytes], message: str
) -> None:
    path = _bolt(tmp_path / "auth.db", {b"key": {}, b"meta": {}, bucket: pairs})
    target = Backend(tmp_path / "dst")
    with etcddb.open_snapshot(path) as reader, pytest.raises(etcddb.SnapshotError, match=re.escape(message)):
        etcddb.load_state(reader, target.db)


def test_unfinished_compaction_resumes_after_load(tmp_path: Path) -> None:
    rev = etcddb.rev_bytes
    kv: Any = kv_pb2.KeyValue
    keys = {
        rev(2): kv(key=b"a", create_revision=2, mod_revision=2, version=1, value=b"1").SerializeToString(),
        rev(3): kv(key=b"a", create_revision=2, mod_revision=3, version=2, value=b"2").SerializeToString(),
        rev(4, 0, True): kv(key=b"a").SerializeToString(),
    }
    path = _bolt(tmp_path / "c.db", {b"key": keys, b"meta": {b"scheduledCompactRev": rev(3)}})
    target = Backend(tmp_path / "dst")
    with etcddb.open_snapshot(path) as reader:
        loaded = etcddb.load_state(reader, target.db)
    assert (loaded.revision, loaded.compact_revision, loaded.keys) == (4, 3, 0)
    store = KVStore(target)
    assert store.compaction_pending
    while not store.compact_step():
        pass
    history = [layout.history_rev(k).main for k, _ in target.db.iterator(prefix=schema.HISTORY)]
    assert history == [3, 4]  # 2 compacted away; 3 is a's newest version at the compaction
    tomb = kv_pb2.KeyValue.FromString(target.get(layout.history_key(layout.Revision(4)))[1:])  # type: ignore[index]
    assert tomb == kv_pb2.KeyValue(key=b"a", mod_revision=4)  # etcdpy's tombstone carries its revision


_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"), st.sampled_from([b"a", b"b", b"b\x00", b"c/1", b"c/2"]), st.binary(max_size=300)
        ),
        st.tuples(st.just("del"), st.sampled_from([b"a", b"b", b"c/"]), st.just(b"")),
        st.tuples(st.just("compact"), st.just(b""), st.just(b"")),
    ),
    max_size=30,
)


@settings(max_examples=25, deadline=None)
@given(ops=_ops)
def test_any_history_round_trips(ops: list[tuple[str, bytes, bytes]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = Member(root / "src")
        for op, key, value in ops:
            if op == "put":
                source.put(key, value)
            elif op == "del":
                source.apply(delete_range=rpc_pb2.DeleteRangeRequest(key=key, range_end=key + b"\xff"))
            elif source.applier.store.current_revision > max(1, source.applier.store.compact_revision):
                source.apply(
                    compaction=rpc_pb2.CompactionRequest(revision=source.applier.store.current_revision)
                )
                while not source.applier.store.compact_step():
                    pass
        save(source.backend, root / "snap.db")
        target = Backend(root / "dst")
        with etcddb.open_snapshot(root / "snap.db") as reader:
            etcddb.load_state(reader, target.db)
        assert state(target) == state(source.backend)
        restored = KVStore(target)
        assert (restored.current_revision, restored.compact_revision) == (
            source.applier.store.current_revision,
            source.applier.store.compact_revision,
        )
        source.close()
        target.close()
