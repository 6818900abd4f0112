"""The permission index: each user's granted key ranges, merged, so a check is a binary search.

etcd keeps, per user, two interval trees (read, write) built from the permissions of
the user's roles (auth/range_perm_cache.go) and rebuilds them whenever the auth store
changes.  `PermissionIndex` does the same with sorted lists: the granted intervals of
one type are merged into disjoint segments, so

- a single key is allowed when a segment holds it (etcd's ``Intersects`` of a point);
- a range [key, range_end) is allowed when one segment covers it whole (etcd's
  ``Contains``: the union of the grants covers the range, gaps refuse it).

Keys compare as etcd's "affine" byte strings: an empty end (a permission or request
range_end of ``\\x00``, i.e. from-key) is +infinity.  A request range that is empty or
inverted (range_end <= key) is allowed as etcd's tree allows it: when one granted
interval starts before range_end and ends after key; a sorted list of the grants with
the running maximum of their ends answers that with one binary search too.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

from etcdpy.api.authpb import auth_pb2

Bound = tuple[int, bytes]
"""A position in the key space: (0, key) for a key, INF for the end of the key space."""

INF: Bound = (1, b"")


def _bound(key: bytes) -> Bound:
    """etcd's BytesAffineComparable: the empty byte string sorts after every key."""
    return INF if key == b"" else (0, key)


def grant_interval(perm: auth_pb2.Permission) -> tuple[Bound, Bound]:
    """The interval a permission grants: one key, [key, range_end), or [key, +inf) for range_end "\\x00"."""
    if not perm.range_end:
        return _bound(perm.key), _bound(perm.key + b"\x00")
    end = b"" if perm.range_end == b"\x00" else perm.range_end
    return _bound(perm.key), _bound(end)


@dataclass
class Ranges:
    """Ranges is one permission type's grants for one user: merged segments plus the raw intervals."""

    starts: list[Bound] = field(default_factory=list)  # merged, disjoint segments, sorted
    ends: list[Bound] = field(default_factory=list)
    raw_starts: list[Bound] = field(default_factory=list)  # every grant, sorted by start
    raw_max_end: list[Bound] = field(default_factory=list)  # max end among raw grants [0..i]

    @classmethod
    def build(cls, intervals: Iterable[tuple[Bound, Bound]]) -> Ranges:
        proper = sorted((b, e) for b, e in intervals if b < e)
        ranges = cls()
        for begin, end in proper:
            ranges.raw_starts.append(begin)
            ranges.raw_max_end.append(max(end, ranges.raw_max_end[-1]) if ranges.raw_max_end else end)
            if ranges.ends and begin <= ranges.ends[-1]:  # overlapping or adjacent: one segment
                ranges.ends[-1] = max(ranges.ends[-1], end)
            else:
                ranges.starts.append(begin)
                ranges.ends.append(end)
        return ranges

    def holds_key(self, key: bytes) -> bool:
        point = _bound(key)
        i = bisect.bisect_right(self.starts, point) - 1
        return i >= 0 and point < self.ends[i]

    def covers(self, key: bytes, range_end: bytes) -> bool:
        """Whether [key, range_end) is allowed (range_end "\\x00" is +inf), as etcd's Contains decides."""
        begin = _bound(key)
        end = _bound(b"" if range_end == b"\x00" else range_end)
        if begin < end:
            i = bisect.bisect_right(self.starts, begin) - 1
            return i >= 0 and self.ends[i] >= end
        # Empty or inverted: etcd's tree allows it when some grant overlaps it (starts before its end
        # and ends after its start); the grants starting before `end` are a prefix of the sorted list.
        n = bisect.bisect_left(self.raw_starts, end)
        return n > 0 and self.raw_max_end[n - 1] > begin


@dataclass
class UserPermissions:
    """The merged read and write grants of one user."""

    read: Ranges
    write: Ranges


class PermissionIndex:
    """Per user, the read and write ranges its roles grant (etcd's rangePermCache); rebuilt on change."""

    def __init__(self) -> None:
        self._users: dict[str, UserPermissions] = {}

    def rebuild(self, users: Iterable[auth_pb2.User], roles: dict[str, auth_pb2.Role]) -> None:
        """Replace the index with the grants of `users` through `roles` (missing roles grant nothing)."""
        index: dict[str, UserPermissions] = {}
        for user in users:
            read: list[tuple[Bound, Bound]] = []
            write: list[tuple[Bound, Bound]] = []
            for role_name in user.roles:
                role = roles.get(role_name)
                if role is None:
                    continue
                for perm in role.keyPermission:
                    interval = grant_interval(perm)
                    if perm.permType in (auth_pb2.Permission.READ, auth_pb2.Permission.READWRITE):
                        read.append(interval)
                    if perm.permType in (auth_pb2.Permission.WRITE, auth_pb2.Permission.READWRITE):
                        write.append(interval)
            index[user.name.decode("utf-8", "surrogateescape")] = UserPermissions(
                Ranges.build(read), Ranges.build(write)
            )
        self._users = index

    def allowed(self, user: str, key: bytes, range_end: bytes, *, write: bool) -> bool:
        """Whether `user` may read (or write) the key, or the range [key, range_end) when range_end is set."""
        perms = self._users.get(user)
        if perms is None:
            return False
        ranges = perms.write if write else perms.read
        if not range_end:
            return ranges.holds_key(key)
        return ranges.covers(key, range_end)
