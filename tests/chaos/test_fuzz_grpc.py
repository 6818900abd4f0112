"""Fuzzing every gRPC method: strange and malformed requests never kill etcdpy nor damage its data.

Each unary method gets hypothesis-generated requests that are valid but strange
(empty keys, keys of ``\\x00`` and ``\\xff``, negative or huge revisions, TTLs,
limits and IDs, unknown enum values, values around --max-request-bytes).  The
same request goes to the reference etcd and to etcdpy, which started from the
same seed data and so stay in step; then:

- etcdpy's process is alive;
- an error is one of etcd's (code and text from `etcdpy.api.errors`, or gRPC's
  own for a message over the size limit) and is the error etcd gave, code and
  text; a request etcd accepts, etcdpy accepts (known, listed gaps aside);
- a refused write leaves etcdpy's HashKV unchanged;
- at the end, the seed data reads back intact, unless a request that both
  servers accepted deleted or overwrote it, and both stores hold the same keys.

Invalid protobuf bytes go through a raw channel with identity serializers to
every method; the server must answer (INTERNAL for bytes that do not parse) and
live on.  Examples per method are few by default (the file stays within about a
minute); ``--long`` runs many more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from procs import ServerProcess

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.etcdserverpb import rpc_pb2_grpc as rpc
from etcdpy.api.v3electionpb import v3election_pb2 as epb
from etcdpy.api.v3lockpb import v3lock_pb2 as lpb

pytestmark = pytest.mark.timeout(300)

MAX_REQUEST_BYTES = 1572864  # etcd's and etcdpy's default --max-request-bytes
SEED = {f"seed/{i:02d}".encode(): f"seed value {i}".encode() for i in range(20)}
SEED_RANGE = (b"seed/", b"seed0")
RPC_TIMEOUT = 10.0

# ---- strategies: valid but strange ----

INT64 = st.one_of(
    st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63), 2**31, -(2**31)]),
    st.integers(-5, 60),
    st.integers(-(2**63), 2**63 - 1),
)
INT32_ENUM = st.one_of(st.integers(-3, 6), st.integers(-(2**31), 2**31 - 1))
UINT64 = st.one_of(st.sampled_from([0, 1, 2**64 - 1]), st.integers(0, 2**64 - 1))
KEYS = st.one_of(
    st.sampled_from([b"", b"\x00", b"\xff", b"\xff\xff", b"\x00\xff", b"seed/", b"seed/05", b"fuzz"]),
    st.binary(max_size=6).map(lambda b: b"fuzz/" + b),
    st.binary(max_size=4),
)
RANGE_ENDS = st.one_of(st.sampled_from([b"", b"\x00", b"\xff", b"seed0", b"fuzz0"]), KEYS)
SMALL_VALUES = st.binary(max_size=24)
# Around the request limit: the request adds a few bytes of framing to the value.
BIG_SIZES = st.sampled_from(
    [MAX_REQUEST_BYTES - 64, MAX_REQUEST_BYTES - 8, MAX_REQUEST_BYTES + 1, 3 * MAX_REQUEST_BYTES]
)
VALUES = st.one_of(SMALL_VALUES, SMALL_VALUES, SMALL_VALUES, BIG_SIZES.map(lambda n: b"v" * n))
# Lease IDs put into keys stay clear of the IDs grants may use, so no key's life depends on a lease's clock.
PUT_LEASES = st.one_of(st.just(0), st.integers(2**62, 2**63 - 1), st.integers(-(2**63) + 1, -2))
# A granted lease expires on each server's own clock: the IDs that revoke, time-to-live and keep-alive
# ask about never name one (the answers would depend on which server's lease expired first).
GRANTED_BAND = range(10**12, 10**12 + 1000)
GRANT_IDS = st.one_of(
    st.just(0),
    st.sampled_from([GRANTED_BAND[0], GRANTED_BAND[-1], -(2**63), -1]),
    st.integers(10**12, 10**12 + 999),
)
LOOKUP_IDS = INT64.filter(lambda i: i not in GRANTED_BAND and i not in (-(2**63), -1))
# Strange text for URLs: never "scheme://", so no member is ever really added to the one-member cluster.
BAD_URLS = st.lists(
    st.one_of(
        st.text(max_size=12).filter(lambda t: "://" not in t), st.sampled_from(["", ":", "127.0.0.1:1"])
    ),
    max_size=3,
)


def _puts() -> st.SearchStrategy[pb.PutRequest]:
    return st.builds(
        pb.PutRequest,
        key=KEYS,
        value=VALUES,
        lease=PUT_LEASES,
        prev_kv=st.booleans(),
        ignore_value=st.booleans(),
        ignore_lease=st.booleans(),
    )


def _ranges() -> st.SearchStrategy[pb.RangeRequest]:
    return st.builds(
        pb.RangeRequest,
        key=KEYS,
        range_end=RANGE_ENDS,
        limit=INT64,
        revision=INT64,
        sort_order=INT32_ENUM,
        sort_target=INT32_ENUM,
        serializable=st.booleans(),
        keys_only=st.booleans(),
        count_only=st.booleans(),
        min_mod_revision=INT64,
        max_mod_revision=INT64,
        min_create_revision=INT64,
        max_create_revision=INT64,
    )


def _deletes() -> st.SearchStrategy[pb.DeleteRangeRequest]:
    # Keys under "fuzz": a delete both servers accept must not take the seed data with it.
    fuzz_keys = st.one_of(st.just(b""), st.binary(max_size=6).map(lambda b: b"fuzz/" + b))
    ends = st.one_of(st.sampled_from([b"", b"fuzz0"]), fuzz_keys)  # never "\x00": to the end, seed too
    return st.builds(pb.DeleteRangeRequest, key=fuzz_keys, range_end=ends, prev_kv=st.booleans())


def _compares() -> st.SearchStrategy[pb.Compare]:
    def build(result: int, target: int, key: bytes, end: bytes, union: str, value: Any) -> pb.Compare:
        cmp = pb.Compare(result=result, target=target, key=key, range_end=end)  # type: ignore[arg-type]
        setattr(cmp, union, value)
        return cmp

    union = st.one_of(
        st.tuples(st.sampled_from(["version", "create_revision", "mod_revision", "lease"]), INT64),
        st.tuples(st.just("value"), SMALL_VALUES),
    )
    return st.builds(
        lambda r, t, k, e, u: build(r, t, k, e, *u), INT32_ENUM, INT32_ENUM, KEYS, RANGE_ENDS, union
    )


def _ops(depth: int) -> st.SearchStrategy[pb.RequestOp]:
    choices: list[st.SearchStrategy[pb.RequestOp]] = [
        _ranges().map(lambda r: pb.RequestOp(request_range=r)),
        _puts().map(lambda r: pb.RequestOp(request_put=r)),
        _deletes().map(lambda r: pb.RequestOp(request_delete_range=r)),
        st.just(pb.RequestOp()),
    ]
    if depth > 0:
        choices.append(_txns(depth - 1).map(lambda r: pb.RequestOp(request_txn=r)))
    return st.one_of(*choices)


def _txns(depth: int = 1) -> st.SearchStrategy[pb.TxnRequest]:
    return st.builds(
        pb.TxnRequest,
        compare=st.lists(_compares(), max_size=3),
        success=st.lists(_ops(depth), max_size=3),
        failure=st.lists(_ops(depth), max_size=3),
    )


def _leader_keys() -> st.SearchStrategy[epb.LeaderKey]:
    # An empty leader key is left to its own test below (etcdpy writes where etcd refuses: a known bug).
    return st.builds(epb.LeaderKey, name=KEYS, key=KEYS.filter(bool), rev=INT64, lease=PUT_LEASES)


@dataclass(frozen=True)
class Method:
    """One unary RPC to fuzz: its path, request class, strategy, and how to judge the answers."""

    path: str
    response: type[Message]
    requests: st.SearchStrategy[Any]
    writes: bool = False  # a refused request must leave HashKV unchanged
    name: str = ""  # the test id (default: the method's name)
    # Requests etcd 3.4 crashes on or wrongly accepts: etcdpy alone hears them (they would stop etcd or
    # make the two stores drift apart) and must refuse them with one of etcd's errors.
    etcd_mishandles: Callable[[Any], bool] = lambda request: False


SORT_TARGETS = frozenset(pb.RangeRequest.SortTarget.values())
SORT_ORDERS = frozenset(pb.RangeRequest.SortOrder.values())


def _unknown_sort(req: pb.RangeRequest) -> bool:
    """etcd 3.4 crashes sorting by an unknown target and ignores an unknown order; etcdpy refuses both
    with ``etcdserver: invalid sort option``, as etcd 3.5 does."""
    return req.sort_target not in SORT_TARGETS or req.sort_order not in SORT_ORDERS


def _txn_etcd_mishandles(txn: pb.TxnRequest) -> bool:
    for op in [*txn.success, *txn.failure]:
        kind = op.WhichOneof("request")
        if kind == "request_range" and _unknown_sort(op.request_range):
            return True
        if kind == "request_txn" and _txn_etcd_mishandles(op.request_txn):
            return True
    return False


M = pb
METHODS = [
    Method("/etcdserverpb.KV/Range", M.RangeResponse, _ranges(), etcd_mishandles=_unknown_sort),
    Method("/etcdserverpb.KV/Put", M.PutResponse, _puts(), writes=True),
    Method("/etcdserverpb.KV/DeleteRange", M.DeleteRangeResponse, _deletes(), writes=True),
    Method("/etcdserverpb.KV/Txn", M.TxnResponse, _txns(), writes=True, etcd_mishandles=_txn_etcd_mishandles),
    # Revisions a compaction would accept are left out: they would change the hash the test watches.
    Method(
        "/etcdserverpb.KV/Compact",
        M.CompactionResponse,
        st.builds(
            M.CompactionRequest,
            revision=st.one_of(st.integers(-(2**63), 0), st.integers(10**6, 2**63 - 1)),
            physical=st.booleans(),
        ),
        writes=True,
    ),
    Method(
        "/etcdserverpb.Lease/LeaseGrant",
        M.LeaseGrantResponse,
        st.builds(M.LeaseGrantRequest, TTL=INT64, ID=GRANT_IDS),
    ),
    Method(
        "/etcdserverpb.Lease/LeaseRevoke",
        M.LeaseRevokeResponse,
        st.builds(M.LeaseRevokeRequest, ID=LOOKUP_IDS),
    ),
    Method(
        "/etcdserverpb.Lease/LeaseTimeToLive",
        M.LeaseTimeToLiveResponse,
        st.builds(M.LeaseTimeToLiveRequest, ID=LOOKUP_IDS, keys=st.booleans()),
    ),
    Method("/etcdserverpb.Lease/LeaseLeases", M.LeaseLeasesResponse, st.just(M.LeaseLeasesRequest())),
    Method("/etcdserverpb.Maintenance/Status", M.StatusResponse, st.just(M.StatusRequest())),
    Method("/etcdserverpb.Maintenance/Hash", M.HashResponse, st.just(M.HashRequest())),
    Method("/etcdserverpb.Maintenance/HashKV", M.HashKVResponse, st.builds(M.HashKVRequest, revision=INT64)),
    Method(
        "/etcdserverpb.Maintenance/MoveLeader",
        M.MoveLeaderResponse,
        st.builds(M.MoveLeaderRequest, targetID=UINT64),
    ),
    # GET only for etcd; unknown actions crash etcd 3.4, so only etcdpy hears those (and answers).
    Method(
        "/etcdserverpb.Maintenance/Alarm",
        M.AlarmResponse,
        st.builds(M.AlarmRequest, alarm=INT32_ENUM, memberID=UINT64),
    ),
    Method(
        "/etcdserverpb.Maintenance/Alarm",
        M.AlarmResponse,
        st.builds(M.AlarmRequest, action=st.integers(3, 2**31 - 1), alarm=INT32_ENUM, memberID=UINT64),
        etcd_mishandles=lambda request: True,
        name="Alarm-unknown-action",
    ),
    Method(
        "/etcdserverpb.Cluster/MemberList",
        M.MemberListResponse,
        st.builds(M.MemberListRequest, linearizable=st.booleans()),
    ),
    Method(
        "/etcdserverpb.Cluster/MemberAdd",
        M.MemberAddResponse,
        st.builds(M.MemberAddRequest, peerURLs=BAD_URLS.filter(bool), isLearner=st.booleans()),
    ),
    Method(
        "/etcdserverpb.Cluster/MemberRemove",
        M.MemberRemoveResponse,
        st.builds(M.MemberRemoveRequest, ID=UINT64),
    ),
    Method(
        "/etcdserverpb.Cluster/MemberUpdate",
        M.MemberUpdateResponse,
        st.builds(M.MemberUpdateRequest, ID=UINT64, peerURLs=BAD_URLS),
    ),
    Method(
        "/etcdserverpb.Cluster/MemberPromote",
        M.MemberPromoteResponse,
        st.builds(M.MemberPromoteRequest, ID=UINT64),
    ),
    # A lease that exists would make Lock wait or win: only absent, strange leases.
    Method(
        "/v3lockpb.Lock/Lock",
        lpb.LockResponse,
        st.builds(lpb.LockRequest, name=KEYS, lease=PUT_LEASES.filter(bool)),
        writes=True,
    ),
    Method(
        "/v3lockpb.Lock/Unlock",
        lpb.UnlockResponse,
        st.builds(lpb.UnlockRequest, key=KEYS.filter(lambda k: not k.startswith(b"seed"))),
    ),
    Method(
        "/v3electionpb.Election/Campaign",
        epb.CampaignResponse,
        st.builds(epb.CampaignRequest, name=KEYS, lease=PUT_LEASES.filter(bool), value=SMALL_VALUES),
        writes=True,
    ),
    Method(
        "/v3electionpb.Election/Proclaim",
        epb.ProclaimResponse,
        st.builds(epb.ProclaimRequest, leader=_leader_keys(), value=SMALL_VALUES),
        writes=True,
    ),
    Method("/v3electionpb.Election/Leader", epb.LeaderResponse, st.builds(epb.LeaderRequest, name=KEYS)),
    Method(
        "/v3electionpb.Election/Resign",
        epb.ResignResponse,
        st.builds(epb.ResignRequest, leader=_leader_keys().filter(lambda lk: not lk.key.startswith(b"seed"))),
    ),
]

# Answers gRPC itself gives, whose text is grpc's and differs between Go and Python: compare the code only.
GRPC_OWN = {
    grpc.StatusCode.RESOURCE_EXHAUSTED: ("message larger than max",),
    # Bytes that do not parse: Go's grpc says why in its words, etcdpy in protobuf's (same code and prefix).
    grpc.StatusCode.INTERNAL: ("grpc: error unmarshalling request: ",),
}

Outcome = tuple[str, str]  # ("OK", "") or (status code name, details)


@dataclass(frozen=True)
class KnownGap:
    """A deliberate or known difference from etcd 3.4: answers that may differ, and why."""

    path: str
    reason: str
    applies: Callable[[Any, Outcome, Outcome], bool]  # (request, etcd's outcome, etcdpy's outcome)


KNOWN_GAPS = [
    KnownGap(
        "/etcdserverpb.Cluster/MemberUpdate",
        "etcdpy checks peer URLs before looking the member up (etcd 3.4 never checks them on update)",
        lambda req, etcd, ours: etcd[0] == "NOT_FOUND" and ours[1] == errors.ErrMemberBadURLs.message,
    ),
    KnownGap(
        "/etcdserverpb.Lease/LeaseGrant",
        "each server expires leases on its own clock: a lease granted earlier with the same explicit ID "
        "may be gone on one server and still there on the other",
        lambda req, etcd, ours: (
            req.ID != 0
            and {etcd, ours} == {("OK", ""), ("FAILED_PRECONDITION", errors.ErrLeaseExist.message)}
        ),
    ),
]


def _known_gap(path: str, request: Any, etcd: Outcome, ours: Outcome) -> bool:
    return any(gap.path == path and gap.applies(request, etcd, ours) for gap in KNOWN_GAPS)


def _outcome(call: Callable[[], Any]) -> Outcome:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code().name, exc.details() or ""
    return "OK", ""


def _is_grpc_own(outcome: Outcome) -> bool:
    code = grpc.StatusCode[outcome[0]] if outcome[0] != "OK" else None
    return code in GRPC_OWN and any(part in outcome[1].lower() for part in GRPC_OWN[code])


TABLE_TEXTS = frozenset(cls.message for cls in errors.ALL)
# etcd's Lock and Election servers hand back the Go error as is (code UNKNOWN): a table text or one of these.
CONCURRENCY_TEXTS = frozenset(
    {
        "election: not leader",
        "election: no leader",
        "mutex: session is expired",
        '"leader" field must be provided',
    }
)


def _assert_etcd_error(path: str, outcome: Outcome) -> None:
    """An error etcdpy gives must be one of etcd's (the table) or gRPC's own."""
    if outcome[0] == "OK" or _is_grpc_own(outcome):
        return
    if path.startswith(("/v3lockpb.", "/v3electionpb.")) and outcome[0] == "UNKNOWN":
        assert outcome[1] in TABLE_TEXTS | CONCURRENCY_TEXTS, f"not an etcd error: {outcome}"
        return
    mapped = errors.from_status(grpc.StatusCode[outcome[0]], outcome[1])
    assert not isinstance(mapped, errors.UnknownEtcdError), f"not an etcd error: {outcome}"


# Huge values on both sides: requests near the limit go out, whole-store reads come back.
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 2**30), ("grpc.max_receive_message_length", 2**30)]


class Servers:
    """The reference etcd and etcdpy, seeded alike; raw unary calls to either."""

    def __init__(self, root: Path) -> None:
        self.etcd = ServerProcess("etcd", root / "etcd.data").start()
        self.etcdpy = ServerProcess("etcdpy", root / "etcdpy.data").start()
        self.channels = {
            "etcd": grpc.insecure_channel(self.etcd.endpoint, options=CHANNEL_OPTIONS),
            "etcdpy": grpc.insecure_channel(self.etcdpy.endpoint, options=CHANNEL_OPTIONS),
        }
        for server in ("etcd", "etcdpy"):
            for key, value in SEED.items():
                self.call(server, "/etcdserverpb.KV/Put", pb.PutRequest(key=key, value=value), pb.PutResponse)

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
        self.etcd.stop()
        self.etcdpy.stop()

    def call(self, server: str, path: str, request: Message, response: type[Message]) -> Any:
        method = self.channels[server].unary_unary(
            path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString,
        )
        return method(request, timeout=RPC_TIMEOUT)

    def raw(self, path: str, data: bytes) -> bytes:
        method = self.channels["etcdpy"].unary_unary(
            path, request_serializer=None, response_deserializer=None
        )
        result: bytes = method(data, timeout=RPC_TIMEOUT)
        return result

    def alive(self) -> bool:
        return self.etcdpy.proc is not None and self.etcdpy.proc.poll() is None

    def revision(self, server: str) -> int:
        response = self.call(
            server, "/etcdserverpb.KV/Range", pb.RangeRequest(key=b"\x00", count_only=True), pb.RangeResponse
        )
        return int(response.header.revision)

    def hash_kv(self) -> int:
        response = self.call(
            "etcdpy", "/etcdserverpb.Maintenance/HashKV", pb.HashKVRequest(), pb.HashKVResponse
        )
        return int(response.hash)

    def all_kvs(self, server: str) -> list[tuple[bytes, bytes, int, int, int]]:
        response = self.call(
            server,
            "/etcdserverpb.KV/Range",
            pb.RangeRequest(key=b"\x00", range_end=b"\x00"),
            pb.RangeResponse,
        )
        return [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version) for kv in response.kvs]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    both = Servers(tmp_path_factory.mktemp("fuzz"))
    yield both
    try:
        assert both.alive(), "etcdpy died"
        assert both.all_kvs("etcdpy") == both.all_kvs("etcd"), "the stores drifted apart"
    finally:
        both.close()


def _examples(config: pytest.Config, normal: int) -> int:
    return normal * 25 if config.getoption("--long") else normal


def _fuzz(
    config: pytest.Config, normal: int, strategy: st.SearchStrategy[Any], body: Callable[[Any], None]
) -> None:
    run = settings(
        max_examples=_examples(config, normal),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )(given(strategy)(body))
    run()


@pytest.mark.parametrize(
    "method",
    METHODS,
    ids=[m.name or m.path.rsplit("/", 1)[1] for m in METHODS],
)
def test_strange_requests_get_etcds_answers_and_change_nothing_when_refused(
    servers: Servers, method: Method, request: pytest.FixtureRequest
) -> None:
    def one(req: Message) -> None:
        expected: Outcome | None = None
        if not method.etcd_mishandles(req):
            expected = _outcome(lambda: servers.call("etcd", method.path, req, method.response))
            assert servers.etcd.proc is not None and servers.etcd.proc.poll() is None, (
                f"the reference etcd crashed on {method.path} {str(req)[:300]}: list it in etcd_mishandles"
            )
        before = servers.hash_kv() if method.writes else None
        got = _outcome(lambda: servers.call("etcdpy", method.path, req, method.response))
        assert servers.alive(), f"etcdpy died on {method.path} {req}"
        _assert_etcd_error(method.path, got)
        if expected is not None:
            if _is_grpc_own(expected) or _is_grpc_own(got):
                assert got[0] == expected[0], f"{method.path}: etcd {expected}, etcdpy {got}"
            elif not _known_gap(method.path, req, expected, got):
                assert got == expected, f"{method.path} {str(req)[:300]}: etcd {expected}, etcdpy {got}"
            revisions = (servers.revision("etcd"), servers.revision("etcdpy"))
            assert revisions[0] == revisions[1], f"{method.path} {str(req)[:300]} moved the revisions apart"
        if before is not None and got[0] != "OK":
            assert servers.hash_kv() == before, f"a refused {method.path} changed the store"

    _fuzz(request.config, 12, method.requests, one)


def test_the_seed_data_survives_the_fuzzing(servers: Servers) -> None:
    response = servers.call(
        "etcdpy",
        "/etcdserverpb.KV/Range",
        pb.RangeRequest(key=SEED_RANGE[0], range_end=SEED_RANGE[1]),
        pb.RangeResponse,
    )
    found = {kv.key: kv for kv in response.kvs}
    assert set(SEED) <= set(found), "a seed key is gone"
    for key, value in SEED.items():
        # A put both servers accepted may have overwritten one (the differential end check covers it).
        assert found[key].value == value or found[key].version > 1, f"{key!r} changed without a write"


@pytest.mark.parametrize("call", ["Proclaim", "Resign"])
def test_proclaim_and_resign_refuse_an_empty_leader_key_as_etcd_does(
    etcdpy_server: ServerProcess, call: str
) -> None:
    with grpc.insecure_channel(etcdpy_server.endpoint) as channel:
        revision = rpc.KVStub(channel).Range(pb.RangeRequest(key=b"a"), timeout=RPC_TIMEOUT).header.revision  # type: ignore[no-untyped-call]
        request: Message = (
            epb.ProclaimRequest(leader=epb.LeaderKey(), value=b"v")
            if call == "Proclaim"
            else epb.ResignRequest(leader=epb.LeaderKey())
        )
        method = channel.unary_unary(
            f"/v3electionpb.Election/{call}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=lambda b: b,
        )
        # What etcd 3.4 answers (seen by the differential fuzzing before this case was set apart).
        assert _outcome(lambda: method(request, timeout=RPC_TIMEOUT)) == (
            "UNKNOWN",
            errors.ErrEmptyKey.message,
        )
        after = rpc.KVStub(channel).Range(pb.RangeRequest(key=b"a"), timeout=RPC_TIMEOUT).header.revision  # type: ignore[no-untyped-call]
        assert after == revision


WATCH_REQUESTS = st.one_of(
    st.builds(
        pb.WatchCreateRequest,
        key=KEYS,
        range_end=RANGE_ENDS,
        start_revision=INT64,
        progress_notify=st.booleans(),
        filters=st.lists(INT32_ENUM, max_size=3),
        prev_kv=st.booleans(),
        watch_id=INT64,
        fragment=st.booleans(),
    ).map(lambda c: pb.WatchRequest(create_request=c)),
    st.builds(pb.WatchCancelRequest, watch_id=INT64).map(lambda c: pb.WatchRequest(cancel_request=c)),
    st.just(pb.WatchRequest(progress_request=pb.WatchProgressRequest())),
    st.just(pb.WatchRequest()),
)


def _watch_answers(servers: Servers, server: str, requests: list[pb.WatchRequest]) -> list[tuple[Any, ...]]:
    """What a watch stream answers to `requests` within a short while: the parts etcd and etcdpy share."""
    stub = rpc.WatchStub(servers.channels[server])  # type: ignore[no-untyped-call]
    stream = stub.Watch(iter(requests), timeout=0.6)
    answers: list[tuple[Any, ...]] = []
    try:
        for response in stream:
            answers.append(
                (response.created, response.canceled, response.cancel_reason, response.compact_revision)
            )
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            answers.append(("error", exc.code().name, exc.details()))
    return answers


def test_strange_watch_requests_never_kill_the_server(
    servers: Servers, request: pytest.FixtureRequest
) -> None:
    def one(requests: list[pb.WatchRequest]) -> None:
        answers = _watch_answers(servers, "etcdpy", requests)
        assert servers.alive(), f"etcdpy died on watch requests {requests}"
        for answer in answers:
            if answer[0] == "error":
                _assert_etcd_error("/etcdserverpb.Watch/Watch", (answer[1], answer[2]))

    _fuzz(request.config, 8, st.lists(WATCH_REQUESTS, min_size=1, max_size=3), one)


def test_strange_keep_alives_never_kill_the_server(servers: Servers, request: pytest.FixtureRequest) -> None:
    def one(ids: list[int]) -> None:
        stub = rpc.LeaseStub(servers.channels["etcdpy"])  # type: ignore[no-untyped-call]
        try:
            for response in stub.LeaseKeepAlive(
                iter([pb.LeaseKeepAliveRequest(ID=i) for i in ids]), timeout=2
            ):
                assert response.ID in ids
        except grpc.RpcError as exc:
            _assert_etcd_error("/etcdserverpb.Lease/LeaseKeepAlive", (exc.code().name, exc.details() or ""))
        assert servers.alive()

    _fuzz(request.config, 8, st.lists(INT64, min_size=1, max_size=4), one)


UNARY_PATHS = sorted({m.path for m in METHODS})
# Bytes that parse as a lock or campaign with lease 0 get a fresh session (as in etcd) and may wait for the
# holder that an earlier example left: waiting is the right answer there.
WAITING_PATHS = frozenset({"/v3lockpb.Lock/Lock", "/v3electionpb.Election/Campaign"})


def test_invalid_protobuf_bytes_are_refused_and_the_server_lives_on(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # A server of its own: bytes that happen to parse run as real requests, which etcd would not see.
    alone = ServerProcess("etcdpy", tmp_path / "raw.data").start()
    try:
        with grpc.insecure_channel(alone.endpoint) as channel:

            def one(case: tuple[str, bytes]) -> None:
                path, data = case
                method = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
                waits = path in WAITING_PATHS
                outcome = _outcome(lambda: method(data, timeout=1.0 if waits else RPC_TIMEOUT))
                assert alone.proc is not None and alone.proc.poll() is None, f"etcdpy died on {path} {data!r}"
                if not (waits and outcome[0] == "DEADLINE_EXCEEDED"):
                    _assert_etcd_error(path, outcome)

            malformed = st.one_of(
                st.binary(min_size=1, max_size=64),
                st.sampled_from(
                    [b"\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x05ab", b"\x08" + b"\xff" * 11, b"\x12"]
                ),
            )
            _fuzz(request.config, 40, st.tuples(st.sampled_from(UNARY_PATHS), malformed), one)
            status = channel.unary_unary(
                "/etcdserverpb.Maintenance/Status",
                request_serializer=None,
                response_deserializer=pb.StatusResponse.FromString,
            )(b"", timeout=RPC_TIMEOUT)
            assert status.leader == status.header.member_id  # still serving, still its own leader
    finally:
        alone.stop()
