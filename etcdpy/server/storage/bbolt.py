"""bbolt's file format, written and read in Python: nothing here knows about etcd.

A bbolt file (go.etcd.io/bbolt 1.3, the store of etcd 3.x) is an array of pages of
`PAGE_SIZE` bytes.  Every page starts with a 16-byte header (little-endian, as
everything in the file): ``id u64 | flags u16 | count u16 | overflow u32``; a page
larger than one page size occupies ``overflow`` more pages right after it.

=================  ========  =====================================================
page               flags     body
=================  ========  =====================================================
meta (0 and 1)     ``0x04``  magic, version, page size, flags, root bucket (root page,
                             sequence), freelist page, high-water page id, txid, then
                             an FNV-64a checksum of the 56 bytes before it
freelist           ``0x10``  ``count`` free page ids (u64); count ``0xFFFF`` means the
                             real count is the first u64
branch             ``0x01``  ``count`` elements ``pos u32 | ksize u32 | pgid u64``, the
                             key of each (the first key of its child) at element + pos
leaf               ``0x02``  ``count`` elements ``flags u32 | pos u32 | ksize u32 |
                             vsize u32``, key then value at element + pos; flag ``0x01``
                             marks a nested bucket, whose value is its header
                             ``root u64 | sequence u64`` followed, when root is 0
                             (an inline bucket), by the bucket's one leaf page
=================  ========  =====================================================

The root bucket (in the meta) holds the top-level buckets as such elements.  A
reader picks the meta with the highest txid whose checksum holds; the file is
``high-water * page size`` bytes.

`BoltWriter` streams a new file: each bucket's (key, value) pairs in key order
become leaves filled to a fill percent, the first key of every leaf goes up to a
branch level that is itself written as it fills, so memory stays bounded by one
page per level whatever the size.  Small buckets are written inline, as bbolt
does.  The meta pages are written last (the file is seekable).  `BoltReader` maps
a file, checks its meta, walks the buckets in key order and can check every page
(`BoltReader.check`, bbolt's ``tx.Check``): unreachable, doubly referenced,
out-of-range or wrongly typed pages and keys out of order are errors
(`BoltFormatError`, naming the page).
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

PAGE_SIZE = 4096
MAGIC = 0xED0CDAED
VERSION = 2
DEFAULT_FILL_PERCENT = 0.5  # bbolt's DefaultFillPercent
MIN_KEYS_PER_PAGE = 2
NO_FREELIST = (1 << 64) - 1  # pgidNoFreelist: the freelist is not synced to the file

BRANCH_PAGE = 0x01
LEAF_PAGE = 0x02
META_PAGE = 0x04
FREELIST_PAGE = 0x10
BUCKET_LEAF = 0x01  # leaf element flag: the value is a nested bucket

_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
_LEAF_ELEMENT = struct.Struct("<IIII")  # flags, pos, ksize, vsize
_BRANCH_ELEMENT = struct.Struct("<IIQ")  # pos, ksize, pgid
_BUCKET = struct.Struct("<QQ")  # root, sequence
_META = struct.Struct("<IIIIQQQQQ")  # magic, version, page size, flags, root, sequence, freelist, pgid, txid
_CHECKSUM = struct.Struct("<Q")
_U64 = struct.Struct("<Q")
HEADER_SIZE = _HEADER.size
ELEMENT_SIZE = _LEAF_ELEMENT.size  # the same for branch elements
MAX_COUNT = 0xFFFF


class BoltFormatError(ValueError):
    """The file is not a bbolt file, or one of its pages is damaged; the message names the page."""


class NotBoltError(BoltFormatError):
    """The file does not start with a bbolt meta page (bbolt's ErrInvalid)."""


def fnv64a(data: bytes) -> int:
    """FNV-1a, 64 bits: bbolt's meta checksum."""
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


@dataclass(frozen=True, slots=True)
class Meta:
    """A meta page's fields (the checksum is computed, not stored here)."""

    page_size: int
    root: int
    sequence: int
    freelist: int
    high_water: int  # pgid: the number of pages in use, the file's size in pages
    txid: int
    flags: int = 0

    def encode(self) -> bytes:
        body = _META.pack(
            MAGIC,
            VERSION,
            self.page_size,
            self.flags,
            self.root,
            self.sequence,
            self.freelist,
            self.high_water,
            self.txid,
        )
        return body + _CHECKSUM.pack(fnv64a(body))


def encode_page(pgid: int, flags: int, count: int, body: bytes, page_size: int) -> bytes:
    """A page (with its overflow pages) padded to whole pages."""
    size = HEADER_SIZE + len(body)
    pages = max(1, -(-size // page_size))
    header = _HEADER.pack(pgid, flags, count, pages - 1)
    return header + body + bytes(pages * page_size - size)


def _leaf_body(items: list[tuple[bytes, bytes, int]]) -> bytes:
    """Leaf elements then their keys and values (positions relative to each element)."""
    heads = []
    data: list[bytes] = []
    offset = len(items) * ELEMENT_SIZE
    for index, (key, value, flags) in enumerate(items):
        pos = offset - index * ELEMENT_SIZE
        heads.append(_LEAF_ELEMENT.pack(flags, pos, len(key), len(value)))
        data += (key, value)
        offset += len(key) + len(value)
    return b"".join(heads) + b"".join(data)


def _branch_body(items: list[tuple[bytes, int]]) -> bytes:
    heads = []
    keys = []
    offset = len(items) * ELEMENT_SIZE
    for index, (key, pgid) in enumerate(items):
        heads.append(_BRANCH_ELEMENT.pack(offset - index * ELEMENT_SIZE, len(key), pgid))
        keys.append(key)
        offset += len(key)
    return b"".join(heads) + b"".join(keys)


# ---- writing ----


class _Level:
    """One level of a bucket's B+tree being written: leaves (level 0) or branches above them.

    Elements accumulate until the next would pass the fill threshold (with at least
    `MIN_KEYS_PER_PAGE` on the page, as bbolt's split); then the page is written and its
    first key and page id go up to the parent level, made on first need.
    """

    def __init__(self, writer: BoltWriter, threshold: int, branch: bool) -> None:
        self.writer = writer
        self.threshold = threshold
        self.branch = branch
        self.items: list[tuple[bytes, bytes, int]] = []  # (key, value or packed pgid, flags)
        self.size = HEADER_SIZE
        self.pages_written = 0
        self.parent: _Level | None = None

    def add(self, key: bytes, value: bytes, flags: int = 0) -> None:
        grow = ELEMENT_SIZE + len(key) + len(value)
        if len(self.items) >= MAX_COUNT or (
            len(self.items) >= MIN_KEYS_PER_PAGE and self.size + grow > self.threshold
        ):
            self._flush()
        self.items.append((key, value, flags))
        self.size += grow

    def _page_body(self) -> bytes:
        if self.branch:
            return _branch_body([(k, _U64.unpack(v)[0]) for k, v, _ in self.items])
        return _leaf_body(self.items)

    def _flush(self) -> None:
        flags = BRANCH_PAGE if self.branch else LEAF_PAGE
        pgid = self.writer._write_page(flags, len(self.items), self._page_body())
        first = self.items[0][0]
        self.items = []
        self.size = HEADER_SIZE
        self.pages_written += 1
        if self.parent is None:
            self.parent = _Level(self.writer, self.threshold, branch=True)
        self.parent.add(first, _U64.pack(pgid))

    def finish(self) -> int:
        """Write what is left; the root page id of the tree."""
        if self.pages_written == 0:  # everything fits on one page: it is the root
            flags = BRANCH_PAGE if self.branch else LEAF_PAGE
            return self.writer._write_page(flags, len(self.items), self._page_body())
        if self.items:
            self._flush()
        assert self.parent is not None
        return self.parent.finish()


class BucketWriter:
    """Takes one bucket's (key, value) pairs in strictly increasing key order (`BoltWriter.bucket`)."""

    def __init__(self, writer: BoltWriter, name: bytes, fill_percent: float) -> None:
        self.writer = writer
        self.name = name
        fill = min(1.0, max(0.1, fill_percent))
        self._leaves = _Level(writer, int(writer.page_size * fill), branch=False)
        self._inline_limit = writer.page_size // 4  # bbolt's maxInlineBucketSize
        self._last: bytes | None = None
        self.count = 0

    def put(self, key: bytes, value: bytes) -> None:
        if not key:
            raise ValueError("bbolt keys are never empty")
        if self._last is not None and key <= self._last:
            raise ValueError(f"bucket {self.name!r}: key {key!r} is not after {self._last!r}")
        self._last = key
        self._leaves.add(key, value)
        self.count += 1

    def _finish(self) -> bytes:
        """The bucket's value in its parent: its header, plus its leaf when it is inline."""
        leaves = self._leaves
        if leaves.pages_written == 0 and leaves.size <= self._inline_limit:
            page = _HEADER.pack(0, LEAF_PAGE, len(leaves.items), 0) + _leaf_body(leaves.items)
            return _BUCKET.pack(0, 0) + page
        return _BUCKET.pack(leaves.finish(), 0)


class BoltWriter:
    """Writes a new bbolt file to a seekable binary file, one top-level bucket after another.

    Usage: ``w = BoltWriter(f)``; for each bucket ``b = w.bucket(name)``, ``b.put(k, v)`` in key
    order; then ``w.close()`` writes the root bucket, an empty freelist and both meta pages.
    Buckets may be opened in any order but one at a time.  Returns nothing of the file; its size
    is `size` after `close`.
    """

    def __init__(
        self,
        file: BinaryIO,
        *,
        page_size: int = PAGE_SIZE,
        fill_percent: float = DEFAULT_FILL_PERCENT,
        txid: int = 1,
    ) -> None:
        self.file = file
        self.page_size = page_size
        self.fill_percent = fill_percent
        self.txid = txid
        self.next_pgid = 2  # pages 0 and 1 are the metas, written last
        self._start = file.tell()
        self._open: BucketWriter | None = None
        self._buckets: dict[bytes, bytes] = {}
        self.size = 0
        file.seek(self._start + 2 * page_size)

    def _write_page(self, flags: int, count: int, body: bytes) -> int:
        pgid = self.next_pgid
        page = encode_page(pgid, flags, count, body, self.page_size)
        self.file.write(page)
        self.next_pgid += len(page) // self.page_size
        return pgid

    def bucket(self, name: bytes, *, fill_percent: float | None = None) -> BucketWriter:
        """Start a top-level bucket (ending the one before)."""
        self._end_bucket()
        if not name:
            raise ValueError("a bucket needs a name")
        if name in self._buckets:
            raise ValueError(f"bucket {name!r} written twice")
        self._open = BucketWriter(self, name, self.fill_percent if fill_percent is None else fill_percent)
        return self._open

    def _end_bucket(self) -> None:
        if self._open is not None:
            self._buckets[self._open.name] = self._open._finish()
            self._open = None

    def close(self) -> int:
        """Write the root bucket, the freelist and the metas; return the file's size in bytes."""
        self._end_bucket()
        root = _Level(self, int(self.page_size * self.fill_percent), branch=False)
        for name in sorted(self._buckets):
            root.add(name, self._buckets[name], BUCKET_LEAF)
        root_pgid = root.finish()
        freelist = self._write_page(FREELIST_PAGE, 0, b"")
        high_water = self.next_pgid
        self.file.seek(self._start)
        for txid in sorted((self.txid, self.txid + 1), key=lambda t: t % 2):  # meta page txid % 2
            meta = Meta(self.page_size, root_pgid, 0, freelist, high_water, txid)
            self.file.write(encode_page(txid % 2, META_PAGE, 0, meta.encode(), self.page_size))
        self.file.seek(self._start + high_water * self.page_size)
        self.size = high_water * self.page_size
        return self.size


# ---- reading ----


@dataclass(frozen=True, slots=True)
class _Page:
    pgid: int
    flags: int
    count: int
    overflow: int
    offset: int  # where the page starts in the buffer


class BoltReader:
    """A bbolt file opened read-only (memory-mapped): its meta, buckets and pairs, and a full check.

    `limit` is how many leading bytes are the database (a snapshot file carries a trailing sha256).
    """

    def __init__(self, path: str | os.PathLike[str], limit: int | None = None) -> None:
        self.path = os.fspath(path)
        self._file = open(self.path, "rb")  # noqa: SIM115 (closed in close())
        try:
            size = os.fstat(self._file.fileno()).st_size if limit is None else limit
            if size < HEADER_SIZE + _META.size + _CHECKSUM.size:
                raise BoltFormatError(f"{self.path}: {size} bytes is too short for a bbolt file")
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
            self.buf = memoryview(self._map)[:size]
            self.size = size
            self.meta = self._pick_meta()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        buf = getattr(self, "buf", None)
        if buf is not None:
            buf.release()
        mapped = getattr(self, "_map", None)
        if mapped is not None:
            mapped.close()
        self._file.close()

    def __enter__(self) -> BoltReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- meta

    def _read_meta(self, offset: int) -> Meta | str:
        """The meta at `offset`, or why it is not valid."""
        if offset + HEADER_SIZE + _META.size + _CHECKSUM.size > self.size:
            return "beyond the end of the file"
        _, flags, _, _ = _HEADER.unpack_from(self.buf, offset)
        body = bytes(self.buf[offset + HEADER_SIZE : offset + HEADER_SIZE + _META.size])
        magic, version, page_size, mflags, root, seq, freelist, pgid, txid = _META.unpack(body)
        (checksum,) = _CHECKSUM.unpack_from(self.buf, offset + HEADER_SIZE + _META.size)
        if magic != MAGIC:
            return "not a bbolt meta page (bad magic)"
        if version != VERSION:
            return f"bbolt version {version}, this reader reads {VERSION}"
        if not flags & META_PAGE:
            return "not a meta page"
        if checksum != fnv64a(body):
            return "meta checksum mismatch"
        return Meta(page_size, root, seq, freelist, pgid, txid, mflags)

    def _pick_meta(self) -> Meta:
        first = self._read_meta(0)
        if isinstance(first, str):
            if "magic" in first:
                raise NotBoltError(f"{self.path}: not a bbolt database (unknown file format)")
            page_size = PAGE_SIZE
        else:
            page_size = first.page_size
        second = self._read_meta(page_size)
        valid = [m for m in (first, second) if isinstance(m, Meta)]
        if not valid:
            raise BoltFormatError(f"{self.path}: both meta pages are invalid ({first}; {second})")
        meta = max(valid, key=lambda m: m.txid)
        if meta.page_size < 1024 or meta.page_size & (meta.page_size - 1):
            raise BoltFormatError(f"{self.path}: invalid page size {meta.page_size}")
        if meta.high_water * meta.page_size > self.size:
            raise BoltFormatError(
                f"{self.path}: truncated: the database needs {meta.high_water * meta.page_size} bytes, "
                f"the file has {self.size}"
            )
        if meta.root >= meta.high_water:
            raise BoltFormatError(f"{self.path}: root page {meta.root} beyond the high-water mark")
        return meta

    @property
    def db_size(self) -> int:
        """The database's size in bytes (bbolt's ``tx.Size()``)."""
        return self.meta.high_water * self.meta.page_size

    # -- pages

    def _page(self, pgid: int) -> _Page:
        if pgid >= self.meta.high_water or pgid < 2:
            raise BoltFormatError(
                f"{self.path}: page {pgid}: out of bounds (high-water mark {self.meta.high_water})"
            )
        offset = pgid * self.meta.page_size
        got, flags, count, overflow = _HEADER.unpack_from(self.buf, offset)
        if got != pgid:
            raise BoltFormatError(f"{self.path}: page {pgid}: damaged (its header says page {got})")
        if pgid + overflow >= self.meta.high_water:
            raise BoltFormatError(f"{self.path}: page {pgid}: its {overflow} overflow pages pass the end")
        return _Page(pgid, flags, count, overflow, offset)

    def _elements(
        self, page: _Page | None, base: int, count: int, flags: int
    ) -> list[tuple[bytes, int, int]]:
        """(key, value slice start / child pgid, value size or element flags) of a leaf or branch."""
        out = []
        end = (
            base + (page.overflow + 1) * self.meta.page_size - HEADER_SIZE if page is not None else self.size
        )
        where = f"page {page.pgid}" if page is not None else "inline bucket"
        if base + count * ELEMENT_SIZE > end:
            raise BoltFormatError(f"{self.path}: {where}: damaged ({count} elements do not fit)")
        for index in range(count):
            at = base + index * ELEMENT_SIZE
            if flags & BRANCH_PAGE:
                pos, ksize, child = _BRANCH_ELEMENT.unpack_from(self.buf, at)
                start = at + pos
                if start + ksize > end:
                    raise BoltFormatError(f"{self.path}: {where}: damaged element {index}")
                out.append((bytes(self.buf[start : start + ksize]), child, 0))
            else:
                eflags, pos, ksize, vsize = _LEAF_ELEMENT.unpack_from(self.buf, at)
                start = at + pos
                if start + ksize + vsize > end:
                    raise BoltFormatError(f"{self.path}: {where}: damaged element {index}")
                out.append((bytes(self.buf[start : start + ksize]), start + ksize, vsize | (eflags << 32)))
        return out

    def _walk(self, pgid: int, seen: set[int] | None, depth: int = 0) -> Iterator[tuple[bytes, bytes, int]]:
        """The (key, value, element flags) of the tree rooted at `pgid`, in key order."""
        if depth > 64:
            raise BoltFormatError(f"{self.path}: page {pgid}: the tree is cyclic")
        page = self._page(pgid)
        if seen is not None:
            for p in range(pgid, pgid + page.overflow + 1):
                if p in seen:
                    raise BoltFormatError(f"{self.path}: page {p}: multiple references")
                seen.add(p)
        base = page.offset + HEADER_SIZE
        if page.flags & BRANCH_PAGE:
            for _key, child, _ in self._elements(page, base, page.count, BRANCH_PAGE):
                yield from self._walk(child, seen, depth + 1)
        elif page.flags & LEAF_PAGE:
            yield from self._leaf_items(self._elements(page, base, page.count, LEAF_PAGE))
        else:
            raise BoltFormatError(f"{self.path}: page {pgid}: invalid type (flags {page.flags:#x})")

    def _leaf_items(self, elements: list[tuple[bytes, int, int]]) -> Iterator[tuple[bytes, bytes, int]]:
        for key, start, packed in elements:
            vsize, eflags = packed & 0xFFFFFFFF, packed >> 32
            yield key, bytes(self.buf[start : start + vsize]), eflags

    def _bucket_items(
        self, header: bytes, seen: set[int] | None, name: bytes
    ) -> Iterator[tuple[bytes, bytes, int]]:
        if len(header) < _BUCKET.size:
            raise BoltFormatError(f"{self.path}: bucket {name!r}: damaged header")
        root, _seq = _BUCKET.unpack_from(header)
        if root != 0:
            yield from self._walk(root, seen)
            return
        # inline: the bucket's leaf page follows its header, inside the parent's value
        inline = header[_BUCKET.size :]
        if len(inline) < HEADER_SIZE:
            raise BoltFormatError(f"{self.path}: inline bucket {name!r}: damaged")
        _, flags, count, _ = _HEADER.unpack_from(inline)
        if not flags & LEAF_PAGE:
            raise BoltFormatError(f"{self.path}: inline bucket {name!r}: not a leaf")
        sub = _InlineView(inline, self.path)
        yield from sub.items(count, name)

    # -- the public walk

    def buckets(self) -> list[bytes]:
        """The top-level bucket names, in order."""
        return [k for k, _v, flags in self._walk(self.meta.root, None) if flags & BUCKET_LEAF]

    def items(self, bucket: bytes) -> Iterator[tuple[bytes, bytes]]:
        """A top-level bucket's (key, value) pairs in key order (nested buckets skipped)."""
        for key, value, flags in self._walk(self.meta.root, None):
            if key == bucket and flags & BUCKET_LEAF:
                for k, v, f in self._bucket_items(value, None, key):
                    if not f & BUCKET_LEAF:
                        yield k, v
                return
        raise KeyError(bucket)

    def walk(self) -> Iterator[tuple[bytes, Iterator[tuple[bytes, bytes]]]]:
        """Every top-level bucket in order with an iterator of its pairs (consume it before the next)."""
        for name, value, flags in self._walk(self.meta.root, None):
            if flags & BUCKET_LEAF:
                yield (
                    name,
                    ((k, v) for k, v, f in self._bucket_items(value, None, name) if not f & BUCKET_LEAF),
                )

    def check(self) -> None:
        """bbolt's consistency check: raise BoltFormatError on the first problem found."""
        seen: set[int] = {0, 1}
        freed = set(self._free_pages(seen))
        self._check_tree(self.meta.root, seen, b"(root)")
        if self.meta.freelist == NO_FREELIST:
            return  # bbolt counts every unreachable page as free (its freepages())
        for pgid in range(self.meta.high_water):
            if pgid not in seen and pgid not in freed:
                raise BoltFormatError(f"{self.path}: page {pgid}: unreachable unfreed")
        overlap = seen & freed
        if overlap:
            raise BoltFormatError(f"{self.path}: page {min(overlap)}: reachable freed")

    def _check_tree(self, pgid: int, seen: set[int], name: bytes) -> None:
        last: bytes | None = None
        for key, value, flags in self._walk(pgid, seen):
            if last is not None and key <= last:
                raise BoltFormatError(f"{self.path}: bucket {name!r}: keys out of order at {key!r}")
            last = key
            if flags & BUCKET_LEAF:
                self._check_bucket(value, seen, key)

    def _check_bucket(self, header: bytes, seen: set[int], name: bytes) -> None:
        if len(header) < _BUCKET.size:
            raise BoltFormatError(f"{self.path}: bucket {name!r}: damaged header")
        root, _ = _BUCKET.unpack_from(header)
        if root:
            self._check_tree(root, seen, name)
            return
        last: bytes | None = None
        for key, value, flags in self._bucket_items(header, seen, name):
            if last is not None and key <= last:
                raise BoltFormatError(f"{self.path}: bucket {name!r}: keys out of order at {key!r}")
            last = key
            if flags & BUCKET_LEAF:
                self._check_bucket(value, seen, key)

    def _free_pages(self, seen: set[int]) -> list[int]:
        pgid = self.meta.freelist
        if pgid == NO_FREELIST:
            return []  # not synced: every page must then be reachable or bbolt recomputes it
        page = self._page(pgid)
        if not page.flags & FREELIST_PAGE:
            raise BoltFormatError(f"{self.path}: page {pgid}: invalid type, the freelist expected")
        for p in range(pgid, pgid + page.overflow + 1):
            seen.add(p)
        base = page.offset + HEADER_SIZE
        count = page.count
        if count == MAX_COUNT:
            (count,) = _U64.unpack_from(self.buf, base)
            base += _U64.size
        if base + count * _U64.size > page.offset + (page.overflow + 1) * self.meta.page_size:
            raise BoltFormatError(f"{self.path}: page {pgid}: damaged freelist")
        ids = list(struct.unpack_from(f"<{count}Q", self.buf, base))
        if len(set(ids)) != len(ids):
            raise BoltFormatError(f"{self.path}: freelist page {pgid}: a page freed twice")
        return ids


class _InlineView:
    """The leaf page of an inline bucket (inside its parent's value)."""

    def __init__(self, data: bytes, path: str) -> None:
        self.data = data
        self.path = path

    def items(self, count: int, name: bytes) -> Iterator[tuple[bytes, bytes, int]]:
        end = len(self.data)
        if HEADER_SIZE + count * ELEMENT_SIZE > end:
            raise BoltFormatError(f"{self.path}: inline bucket {name!r}: damaged")
        for index in range(count):
            at = HEADER_SIZE + index * ELEMENT_SIZE
            eflags, pos, ksize, vsize = _LEAF_ELEMENT.unpack_from(self.data, at)
            start = at + pos
            if start + ksize + vsize > end:
                raise BoltFormatError(f"{self.path}: inline bucket {name!r}: damaged element {index}")
            yield self.data[start : start + ksize], self.data[start + ksize : start + ksize + vsize], eflags
