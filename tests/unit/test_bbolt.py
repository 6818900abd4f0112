"""storage.bbolt: files written and read back (any buckets, sizes, page layouts), and damage refused.

Files made by a real etcd, and real etcd reading ours, are in tests/interop/test_snapshot_interop.py.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etcdpy.server.storage import bbolt

Buckets = dict[bytes, dict[bytes, bytes]]


def write(path: Path, buckets: Buckets, **kw: float) -> int:
    with path.open("wb") as f:
        w = bbolt.BoltWriter(f, **kw)  # type: ignore[arg-type]
        for name in buckets:
            b = w.bucket(name)
            for key in sorted(buckets[name]):
                b.put(key, buckets[name][key])
        return w.close()


def read(path: Path) -> Buckets:
    with bbolt.BoltReader(path) as r:
        r.check()
        return {name: dict(pairs) for name, pairs in r.walk()}


def page_flags(path: Path, pgid: int) -> int:
    data = path.read_bytes()
    return int(struct.unpack_from("<H", data, pgid * bbolt.PAGE_SIZE + 8)[0])


_keys = st.binary(min_size=1, max_size=40)
# large values (several pages) are a short pattern repeated: hypothesis generates little entropy for them
_large = st.builds(
    lambda pattern, times: pattern * times, st.binary(min_size=1, max_size=4), st.integers(800, 6000)
)
_values = st.one_of(st.binary(max_size=64), _large)
_bucket = st.dictionaries(_keys, _values, max_size=60)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(buckets=st.dictionaries(st.binary(min_size=1, max_size=12), _bucket, max_size=6))
def test_round_trip_any_buckets(tmp_path: Path, buckets: Buckets) -> None:
    path = tmp_path / "db"
    size = write(path, buckets)
    assert path.stat().st_size == size and size % bbolt.PAGE_SIZE == 0
    assert read(path) == buckets


@pytest.mark.parametrize("fill", [0.1, 0.5, 0.9, 1.0])
def test_many_keys_make_branch_levels_and_read_in_order(tmp_path: Path, fill: float) -> None:
    pairs = {f"key-{i:07d}".encode(): f"value {i}".encode() * (i % 5) for i in range(30000)}
    path = tmp_path / "db"
    write(path, {b"big": pairs, b"small": {b"a": b"1"}}, fill_percent=fill)
    with bbolt.BoltReader(path) as r:
        r.check()
        assert list(r.items(b"big")) == sorted(pairs.items())
        assert list(r.items(b"small")) == [(b"a", b"1")]
        # the big bucket has a root of its own, a branch above its leaves
        root_value = {k: v for k, v, _ in r._walk(r.meta.root, None)}[b"big"]
        root_pgid = struct.unpack_from("<Q", root_value)[0]
        assert root_pgid != 0 and page_flags(path, root_pgid) & bbolt.BRANCH_PAGE


def test_small_bucket_is_inline_and_large_value_overflows(tmp_path: Path) -> None:
    path = tmp_path / "db"
    big = bytes(range(256)) * 40  # 10 KiB: three pages
    write(path, {b"tiny": {b"k": b"v"}, b"empty": {}, b"large": {b"x": big}})
    with bbolt.BoltReader(path) as r:
        r.check()
        root = {k: v for k, v, _ in r._walk(r.meta.root, None)}
        assert struct.unpack_from("<Q", root[b"tiny"])[0] == 0  # inline: no page of its own
        assert struct.unpack_from("<Q", root[b"empty"])[0] == 0
        large_root = struct.unpack_from("<Q", root[b"large"])[0]
        assert large_root != 0
        overflow = struct.unpack_from("<I", path.read_bytes(), large_root * bbolt.PAGE_SIZE + 12)[0]
        assert overflow == 2
        assert list(r.items(b"large")) == [(b"x", big)]
        assert list(r.items(b"empty")) == []
        assert r.buckets() == [b"empty", b"large", b"tiny"]


def test_meta_pages_carry_fnv_checksums_and_the_newest_wins(tmp_path: Path) -> None:
    path = tmp_path / "db"
    write(path, {b"b": {b"k": b"v"}})
    data = bytearray(path.read_bytes())
    for pgid in (0, 1):
        body = bytes(data[pgid * bbolt.PAGE_SIZE + 16 : pgid * bbolt.PAGE_SIZE + 16 + 56])
        (stored,) = struct.unpack_from("<Q", data, pgid * bbolt.PAGE_SIZE + 16 + 56)
        assert stored == bbolt.fnv64a(body)
    with bbolt.BoltReader(path) as r:
        assert r.meta.txid == 2  # txids 1 and 2 on pages 1 and 0
    # damage the newest meta: the reader falls back to the other one
    data[16 + 40] ^= 0xFF
    path.write_bytes(bytes(data))
    with bbolt.BoltReader(path) as r:
        assert r.meta.txid == 1
        assert list(r.items(b"b")) == [(b"k", b"v")]


def test_fnv64a_known_vectors() -> None:
    assert bbolt.fnv64a(b"") == 0xCBF29CE484222325
    assert bbolt.fnv64a(b"a") == 0xAF63DC4C8601EC8C


def test_both_metas_damaged_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db"
    write(path, {b"b": {b"k": b"v"}})
    data = bytearray(path.read_bytes())
    data[16 + 40] ^= 0xFF
    data[bbolt.PAGE_SIZE + 16 + 40] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(bbolt.BoltFormatError, match=r"both meta pages are invalid.*checksum"):
        bbolt.BoltReader(path)


def test_not_a_bbolt_file(tmp_path: Path) -> None:
    path = tmp_path / "db"
    path.write_bytes(b"SQLite format 3\x00" + bytes(8192))
    with pytest.raises(bbolt.BoltFormatError, match="not a bbolt database"):
        bbolt.BoltReader(path)
    path.write_bytes(b"tiny")
    with pytest.raises(bbolt.BoltFormatError, match="too short"):
        bbolt.BoltReader(path)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db"
    write(path, {b"b": {f"{i:05d}".encode(): b"x" * 100 for i in range(500)}})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - bbolt.PAGE_SIZE])
    with pytest.raises(bbolt.BoltFormatError, match="truncated"):
        bbolt.BoltReader(path)


def test_damaged_page_header_names_the_page(tmp_path: Path) -> None:
    path = tmp_path / "db"
    write(path, {b"b": {f"{i:05d}".encode(): b"x" * 100 for i in range(500)}})
    data = bytearray(path.read_bytes())
    data[3 * bbolt.PAGE_SIZE] ^= 0x55  # page 3's id
    path.write_bytes(bytes(data))
    with bbolt.BoltReader(path) as r, pytest.raises(bbolt.BoltFormatError, match="page 3: damaged"):
        r.check()


def test_damaged_element_and_wrong_page_type_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "db"
    write(path, {b"b": {f"{i:05d}".encode(): b"x" * 100 for i in range(500)}})
    clean = path.read_bytes()
    damaged = bytearray(clean)
    struct.pack_into("<I", damaged, 2 * bbolt.PAGE_SIZE + 16 + 4, 0x7FFFFFF)  # page 2, element 0: pos
    path.write_bytes(bytes(damaged))
    with bbolt.BoltReader(path) as r, pytest.raises(bbolt.BoltFormatError, match="page 2: damaged element 0"):
        r.check()
    wrong = bytearray(clean)
    struct.pack_into("<H", wrong, 2 * bbolt.PAGE_SIZE + 8, bbolt.FREELIST_PAGE)
    path.write_bytes(bytes(wrong))
    with bbolt.BoltReader(path) as r, pytest.raises(bbolt.BoltFormatError, match="page 2: invalid type"):
        r.check()


def test_unreachable_page_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "db"
    write(path, {b"b": {b"k": b"v"}})
    data = bytearray(path.read_bytes())
    # raise the high-water mark in both metas by one page the tree never references
    for pgid in (0, 1):
        at = pgid * bbolt.PAGE_SIZE + 16
        fields = list(struct.unpack_from("<IIIIQQQQQ", data, at))
        fields[7] += 1
        body = struct.pack("<IIIIQQQQQ", *fields)
        data[at : at + 56] = body
        struct.pack_into("<Q", data, at + 56, bbolt.fnv64a(body))
    data += bytes(bbolt.PAGE_SIZE)
    path.write_bytes(bytes(data))
    with bbolt.BoltReader(path) as r, pytest.raises(bbolt.BoltFormatError, match="unreachable unfreed"):
        r.check()


def test_writer_refuses_unordered_keys_and_empty_names() -> None:
    w = bbolt.BoltWriter(io.BytesIO())
    b = w.bucket(b"b")
    b.put(b"b", b"")
    with pytest.raises(ValueError, match="not after"):
        b.put(b"a", b"")
    with pytest.raises(ValueError, match="never empty"):
        b.put(b"", b"")
    with pytest.raises(ValueError, match="a bucket needs a name"):
        w.bucket(b"")
    with pytest.raises(ValueError, match="written twice"):
        w.bucket(b"b")


def test_limit_excludes_a_trailer(tmp_path: Path) -> None:
    path = tmp_path / "db"
    size = write(path, {b"b": {b"k": b"v"}})
    with path.open("ab") as f:
        f.write(b"\xaa" * 32)
    with bbolt.BoltReader(path, size) as r:
        r.check()
        assert r.db_size == size
