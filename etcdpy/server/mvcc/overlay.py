"""Overlay: the changes of an open apply batch, readable before the batch is written."""

from __future__ import annotations

import bisect

from etcdpy.server.mvcc.layout import Revision


class Overlay:
    """Overlay holds an open batch's changes, readable before the batch is written."""

    def __init__(self) -> None:
        # key -> KeyValue bytes of its newest version in the batch, None if that version is a delete
        self.current: dict[bytes, bytes | None] = {}
        # key -> [(revision, KeyValue bytes or None for a tombstone)], oldest first
        self.versions: dict[bytes, list[tuple[Revision, bytes | None]]] = {}
        # The keys of current, split in two: _sorted_keys (sorted) and _new_keys, sorted in at the next
        # range scan, so a large batch of puts pays no per-put insertion. keys_in asserts the count.
        self._sorted_keys: list[bytes] = []
        self._new_keys: list[bytes] = []

    def record(self, key: bytes, rev: Revision, kv_bytes: bytes | None) -> None:
        if key not in self.current:
            self._new_keys.append(key)
        self.current[key] = kv_bytes
        self.versions.setdefault(key, []).append((rev, kv_bytes))

    def keys_in(self, key: bytes, end: bytes | None) -> list[bytes]:
        if end is None:
            return [key] if key in self.current else []
        if self._new_keys:
            self._sorted_keys += sorted(self._new_keys)
            self._sorted_keys.sort()  # two sorted runs: a linear merge
            self._new_keys = []
        assert len(self._sorted_keys) == len(self.current), "a key is missing from the overlay's order"
        lo = bisect.bisect_left(self._sorted_keys, key)
        hi = len(self._sorted_keys) if end == b"" else bisect.bisect_left(self._sorted_keys, end)
        return self._sorted_keys[lo:hi]

    def version_at(self, key: bytes, rev: int) -> tuple[bool, bytes | None]:
        """(found, KeyValue bytes or None) of the key's newest batch version with main <= rev."""
        found: tuple[bool, bytes | None] = (False, None)
        for vrev, kv_bytes in self.versions.get(key, ()):
            if vrev.main > rev:
                break
            found = (True, kv_bytes)
        return found
