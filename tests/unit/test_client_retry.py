"""When the client sends a request again: the rule (`may_resend`), which RPCs it applies to, the count.

Reads are sent again after any UNAVAILABLE answer ("no leader", "leader
changed", a broken connection), as etcd's client does.  Writes that do no harm
when applied twice (lease grant and revoke, the recipes' guarded txns) are
too, and also after an attempt unanswered for half the call's time: a proposal
lost with a dead leader is answered only at the server's request timeout.  Any
other write is sent again only when the answer proves it was not applied.
Socketless: a fake stub method or a recording transport stands in for grpc.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from watch_fakes import FakeRpcError

from etcdpy.api import errors
from etcdpy.api.errors import EtcdError, UnknownEtcdError
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.client import Client, ContextCanceled, ContextDeadlineExceeded, Endpoint
from etcdpy.client import requests as rq
from etcdpy.client.concurrency import Election, Mutex, Session
from etcdpy.client.transport import ATTEMPT_SHARE, Retry, Transport, may_resend

READ, REPEATABLE, AT_MOST_ONCE = Retry.READ, Retry.REPEATABLE, Retry.AT_MOST_ONCE

NOT_SENT = UnknownEtcdError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
BROKEN = UnknownEtcdError(grpc.StatusCode.UNAVAILABLE, "Socket closed")


@pytest.mark.parametrize(
    ("error", "resent"),
    [
        # (READ, REPEATABLE, AT_MOST_ONCE)
        (errors.ErrLeaderChanged(), (True, True, False)),
        (errors.ErrNoLeader(), (True, True, False)),  # a queued or forwarded proposal may still commit
        (errors.ErrTimeoutDueToLeaderFail(), (True, True, False)),
        (errors.ErrTimeout(), (True, True, False)),
        (errors.ErrStopped(), (True, True, False)),
        (BROKEN, (True, True, False)),  # the request may have arrived
        (NOT_SENT, (True, True, True)),  # it never left
        (errors.ErrNotSupportedForLearner(), (True, True, True)),  # refused before being looked at
        (errors.ErrCompacted(), (False, False, False)),
        (errors.ErrLeaseNotFound(), (False, False, False)),
        (errors.ErrTooManyRequests(), (False, False, False)),
        (ContextCanceled(), (False, False, False)),
    ],
)
def test_which_answers_let_each_kind_of_call_be_sent_again(
    error: EtcdError, resent: tuple[bool, bool, bool]
) -> None:
    for retry, expected in zip((READ, REPEATABLE, AT_MOST_ONCE), resent, strict=True):
        assert may_resend(retry, error, cut_short=False) is expected, (retry, error)


def test_only_a_repeatable_call_gives_up_on_an_attempt_that_had_less_than_the_calls_time() -> None:
    expired = ContextDeadlineExceeded()
    assert may_resend(REPEATABLE, expired, cut_short=True)
    assert not may_resend(REPEATABLE, expired, cut_short=False)  # the call's own deadline
    assert not may_resend(READ, expired, cut_short=True)
    assert not may_resend(AT_MOST_ONCE, expired, cut_short=True)


# -- the transport: how many sends


@contextmanager
def _transport(*ports: int) -> Iterator[Transport]:
    """A transport to endpoints nothing listens on (the fake stub methods never use the channels)."""
    endpoints = [Endpoint.parse(f"127.0.0.1:{port}") for port in ports]
    transport = Transport(endpoints, dial_timeout=1, keepalive_time=30, keepalive_timeout=5)
    try:
        yield transport
    finally:
        transport.close()


class Answers:
    """A stub method answering each send with the next of ``answers`` (an error is raised)."""

    def __init__(self, *answers: Exception | str) -> None:
        self.answers = list(answers)
        self.timeouts: list[float] = []  # each send's timeout

    def __call__(self, channel: object) -> Callable[..., str]:
        def send(request: object, timeout: float, metadata: object) -> str:
            self.timeouts.append(timeout)
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

        return send


def _rpc_error(error: EtcdError) -> FakeRpcError:
    code = error.status_code if isinstance(error, UnknownEtcdError) else error.code
    return FakeRpcError(code, error.text)


@pytest.mark.parametrize("error", [errors.ErrLeaderChanged(), errors.ErrNoLeader()])
def test_a_read_answered_by_an_election_is_sent_exactly_once_more(error: EtcdError) -> None:
    method = Answers(_rpc_error(error), "answer")
    with _transport(1, 2) as transport:
        assert transport.call(method, pb.RangeRequest(), timeout=5, retry=READ) == "answer"
    assert len(method.timeouts) == 2


@pytest.mark.parametrize(
    "error", [errors.ErrLeaderChanged(), errors.ErrNoLeader(), errors.ErrTimeoutDueToLeaderFail(), BROKEN]
)
def test_a_write_that_may_have_been_applied_is_sent_exactly_once(error: EtcdError) -> None:
    method = Answers(_rpc_error(error), "a second answer nobody may ask for")
    with _transport(1, 2) as transport, pytest.raises(type(error)):
        transport.call(method, pb.PutRequest(), timeout=5, retry=AT_MOST_ONCE)
    assert len(method.timeouts) == 1


@pytest.mark.parametrize("error", [NOT_SENT, errors.ErrNotSupportedForLearner()])
def test_a_write_that_was_surely_not_applied_goes_to_the_next_endpoint(error: EtcdError) -> None:
    method = Answers(_rpc_error(error), "answer")
    with _transport(1, 2) as transport:
        assert transport.call(method, pb.PutRequest(), timeout=5, retry=AT_MOST_ONCE) == "answer"
    assert len(method.timeouts) == 2


def test_a_repeatable_write_lost_with_its_leader_is_sent_again_after_half_the_calls_time() -> None:
    lost = FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    method = Answers(lost, "granted")
    with _transport(1, 2) as transport:
        assert transport.call(method, pb.LeaseGrantRequest(), timeout=6, retry=REPEATABLE) == "granted"
    first, second = method.timeouts
    assert first == pytest.approx(6 * ATTEMPT_SHARE)
    assert second <= 6 * ATTEMPT_SHARE


def test_a_read_or_a_write_waits_for_its_answer_the_whole_call() -> None:
    for retry in (READ, AT_MOST_ONCE):
        expired = FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        method = Answers(expired, "too late")
        with _transport(1, 2) as transport, pytest.raises(ContextDeadlineExceeded):
            transport.call(method, pb.RangeRequest(), timeout=6, retry=retry)
        assert method.timeouts == [pytest.approx(6, abs=0.5)], retry


# -- which RPCs are which kind


class Recorder:
    """A transport that answers every call at once (`respond`) and keeps (request type, retry) of each."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Retry]] = []
        self.respond: Callable[[Message], Any] = lambda request: SimpleNamespace(TTL=60, ID=LEASE)

    def call(self, method: object, request: Message, *, retry: Retry, **_: Any) -> Any:
        self.calls.append((type(request).__name__, retry))
        return self.respond(request)

    def close(self) -> None:
        pass

    def take(self) -> list[tuple[str, Retry]]:
        calls, self.calls = self.calls, []
        return calls


LEASE = 0x1D


@pytest.fixture
def recorded() -> Iterator[tuple[Client, Recorder]]:
    client = Client("127.0.0.1:1")
    client.close()
    recorder = Recorder()
    client._transport = recorder  # type: ignore[assignment]  # the transport is the seam
    yield client, recorder
    client.close()


def test_each_client_call_declares_what_it_does(recorded: tuple[Client, Recorder]) -> None:
    client, recorder = recorded
    put = [rq.op_put(rq.put_request("k", "v"))]
    get = [rq.op_get(rq.range_request("k"))]
    nested_put = [rq.op_txn(pb.TxnRequest(success=put))]
    expected: list[tuple[Callable[[], object], str, Retry]] = [
        (lambda: client.get("k"), "RangeRequest", READ),
        (lambda: client.get("k", serializable=True), "RangeRequest", READ),
        (lambda: client.txn(success=get, failure=get), "TxnRequest", READ),
        (lambda: client.send_txn(pb.TxnRequest(success=get), repeatable=True), "TxnRequest", READ),
        (lambda: client.status(), "StatusRequest", READ),
        (lambda: client.hash_kv(), "HashKVRequest", READ),
        (lambda: client.member_list(), "MemberListRequest", READ),
        (lambda: client.alarm(pb.AlarmRequest()), "AlarmRequest", READ),
        (lambda: client.lease_time_to_live(1), "LeaseTimeToLiveRequest", READ),
        (lambda: client.lease_leases(), "LeaseLeasesRequest", READ),
        (lambda: client.lease_keep_alive_once(1), "LeaseKeepAliveRequest", READ),
        (lambda: client.lease_grant(10), "LeaseGrantRequest", REPEATABLE),
        (lambda: client.lease_revoke(1), "LeaseRevokeRequest", REPEATABLE),
        (lambda: client.send_txn(pb.TxnRequest(success=put), repeatable=True), "TxnRequest", REPEATABLE),
        (lambda: client.put("k", "v"), "PutRequest", AT_MOST_ONCE),
        (lambda: client.delete("k"), "DeleteRangeRequest", AT_MOST_ONCE),
        (lambda: client.txn(success=get, failure=put), "TxnRequest", AT_MOST_ONCE),
        (lambda: client.txn(success=nested_put), "TxnRequest", AT_MOST_ONCE),
        (lambda: client.compact(5), "CompactionRequest", AT_MOST_ONCE),
        (lambda: client.member_add(["http://127.0.0.1:1"]), "MemberAddRequest", AT_MOST_ONCE),
        (lambda: client.member_remove(1), "MemberRemoveRequest", AT_MOST_ONCE),
        (lambda: client.member_update(1, ["http://127.0.0.1:1"]), "MemberUpdateRequest", AT_MOST_ONCE),
        (lambda: client.member_promote(1), "MemberPromoteRequest", AT_MOST_ONCE),
        (lambda: client.move_leader(1), "MoveLeaderRequest", AT_MOST_ONCE),
    ]
    for call, request, retry in expected:
        call()
        assert recorder.take() == [(request, retry)], request


def _op_answer(op: pb.RequestOp) -> pb.ResponseOp:
    if op.HasField("request_range"):  # the queue's head: nobody
        return pb.ResponseOp(response_range=pb.RangeResponse())
    if op.HasField("request_put"):
        return pb.ResponseOp(response_put=pb.PutResponse())
    return pb.ResponseOp(response_delete_range=pb.DeleteRangeResponse(deleted=1))


def _answer(request: Message) -> Any:
    """The cluster as a lone participant of queue ``m/`` finds it: nobody ahead, its own key at revision 7."""
    header = pb.ResponseHeader(revision=7)
    if isinstance(request, pb.TxnRequest):  # put if absent (succeeds), or a guarded write
        responses = [_op_answer(op) for op in request.success]
        return pb.TxnResponse(header=header, succeeded=True, responses=responses)
    if isinstance(request, pb.RangeRequest):
        if request.max_create_revision:  # the key just ahead
            return pb.RangeResponse(header=header)
        own = kv_pb2.KeyValue(key=request.key, create_revision=7, lease=LEASE)
        return pb.RangeResponse(header=header, kvs=[own], count=1)
    return SimpleNamespace(TTL=60, ID=LEASE, header=header)


def test_the_recipes_repeat_only_their_guarded_writes(recorded: tuple[Client, Recorder]) -> None:
    client, recorder = recorded
    recorder.respond = _answer
    with Session(client, ttl=60) as session:
        assert recorder.take() == [("LeaseGrantRequest", REPEATABLE)]
        # The mutex queues (put if absent), is at the head at once, and unlocks (delete if still its key).
        lock = Mutex(session, "m")
        lock.lock()
        assert lock.revision == 7
        lock.unlock()
        assert recorder.take() == [("TxnRequest", REPEATABLE), ("TxnRequest", REPEATABLE)]
        # A candidate queues, reads its place, and resigns (delete if still its key); proclaiming
        # puts a new value under the same guard, but twice would announce it twice: at most once.
        election = Election(session, "m")
        election.campaign("v")
        election.proclaim("w")
        election.resign()
    assert recorder.take() == [
        ("TxnRequest", REPEATABLE),
        ("RangeRequest", READ),
        ("RangeRequest", READ),
        ("TxnRequest", AT_MOST_ONCE),
        ("TxnRequest", REPEATABLE),
        ("LeaseRevokeRequest", REPEATABLE),
    ]
