"""The permission index against a naive model: every point a request range holds must lie in some grant.

The model quantifies over the grants directly, with no merging: a range [b, e) is covered iff b and every
grant end inside it lie in some grant (a gap in the union starts at b or at the end of a grant), and a
key is allowed iff some grant holds it.  Keys come from a tiny alphabet so grants touch, overlap and nest.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from etcdpy.api.authpb import auth_pb2
from etcdpy.server.auth.perms import PermissionIndex

READ, WRITE, READWRITE = auth_pb2.Permission.READ, auth_pb2.Permission.WRITE, auth_pb2.Permission.READWRITE

keys = st.text(alphabet="ab\x00", min_size=1, max_size=3).map(str.encode)
INF = None  # the end of the key space


def lt(a: bytes | None, b: bytes | None) -> bool:
    """a < b where None is +infinity."""
    if a is None:
        return False
    return b is None or a < b


def interval(key: bytes, range_end: bytes) -> tuple[bytes, bytes | None]:
    if not range_end:
        return key, key + b"\x00"
    return key, INF if range_end == b"\x00" else range_end


@st.composite
def grants(draw: st.DrawFn) -> list[auth_pb2.Permission]:
    result = []
    for _ in range(draw(st.integers(0, 5))):
        key = draw(keys)
        shape = draw(st.sampled_from(["key", "range", "from"]))
        end = b"" if shape == "key" else b"\x00" if shape == "from" else draw(keys)
        result.append(
            auth_pb2.Permission(
                key=key, range_end=end, permType=draw(st.sampled_from([READ, WRITE, READWRITE]))
            )
        )
    return result


def model_allows(perms: list[auth_pb2.Permission], key: bytes, range_end: bytes, write: bool) -> bool:
    wanted = (WRITE, READWRITE) if write else (READ, READWRITE)
    spans = [interval(p.key, p.range_end) for p in perms if p.permType in wanted]
    spans = [(b, e) for b, e in spans if lt(b, e)]

    def held(point: bytes) -> bool:
        return any(b <= point and lt(point, e) for b, e in spans)

    begin, end = interval(key, range_end)
    if not range_end:
        return held(key)
    if not lt(begin, end):  # empty or inverted: etcd allows it when a grant overlaps it
        return any(lt(b, end) and lt(begin, e) for b, e in spans)
    points = [begin] + [e for _, e in spans if e is not None and begin <= e and lt(e, end)]
    return all(held(p) for p in points)


def index_of(perms: list[auth_pb2.Permission]) -> PermissionIndex:
    index = PermissionIndex()
    user = auth_pb2.User(name=b"u", roles=["r"])
    index.rebuild([user], {"r": auth_pb2.Role(name=b"r", keyPermission=perms)})
    return index


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[auth_pb2.Permission], bytes, bytes, bool]:
    """Grants and a request whose ends are often the grants' own ends (where merging matters)."""
    perms = draw(grants())
    edges = [p.key for p in perms] + [p.range_end for p in perms if p.range_end not in (b"", b"\x00")]
    near = st.sampled_from(edges) if edges else keys
    key = draw(st.one_of(keys, near))
    shape = draw(st.sampled_from(["key", "range", "from"]))
    range_end = b"" if shape == "key" else b"\x00" if shape == "from" else draw(st.one_of(keys, near))
    return perms, key, range_end, draw(st.booleans())


@settings(max_examples=600, deadline=None)
@given(case=cases())
def test_the_index_allows_exactly_what_the_naive_model_allows(
    case: tuple[list[auth_pb2.Permission], bytes, bytes, bool],
) -> None:
    perms, key, range_end, write = case
    expected = model_allows(perms, key, range_end, write)
    assert index_of(perms).allowed("u", key, range_end, write=write) == expected


def test_adjacent_grants_cover_a_range_across_their_boundary_and_a_gap_refuses_it() -> None:
    index = index_of(
        [
            auth_pb2.Permission(key=b"a", range_end=b"c", permType=READ),
            auth_pb2.Permission(key=b"c", range_end=b"e", permType=READ),
            auth_pb2.Permission(key=b"f", range_end=b"\x00", permType=READ),
        ]
    )
    assert index.allowed("u", b"b", b"d", write=False)
    assert not index.allowed("u", b"b", b"g", write=False)  # [e, f) is not granted
    assert index.allowed("u", b"f", b"\x00", write=False)  # from-key under a from-key grant
    assert index.allowed("u", b"zzz", b"", write=False)
    assert not index.allowed("u", b"e", b"", write=False)
    assert not index.allowed("u", b"b", b"", write=True)  # read grants give no write
    assert not index.allowed("nobody", b"b", b"", write=False)


def test_roles_of_a_user_add_up_and_a_missing_role_grants_nothing() -> None:
    index = PermissionIndex()
    roles = {
        "r1": auth_pb2.Role(
            name=b"r1", keyPermission=[auth_pb2.Permission(key=b"a", range_end=b"b", permType=READ)]
        ),
        "r2": auth_pb2.Role(
            name=b"r2", keyPermission=[auth_pb2.Permission(key=b"b", range_end=b"c", permType=READ)]
        ),
    }
    index.rebuild([auth_pb2.User(name=b"u", roles=["r1", "r2", "gone"])], roles)
    assert index.allowed("u", b"a", b"c", write=False)
    index.rebuild([auth_pb2.User(name=b"u", roles=["r1"])], roles)
    assert not index.allowed("u", b"a", b"c", write=False)
