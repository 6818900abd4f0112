"""The Election service (/v3electionpb.Election) on a real member: one body per test, etcd 3.4 and etcdpy."""

from __future__ import annotations

import queue
import select
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from cluster_support import running_cluster
from procs import ServerProcess
from recipe_support import (
    DELETE,
    ETCD_JEPSEN_BUG,
    PUT,
    WAIT,
    Recipes,
    etcdctl_process,
    failure_of,
    unknown,
)

from etcdpy.api.v3electionpb import v3election_pb2 as pb

pytestmark = pytest.mark.server_kinds(pytest.param("etcd", marks=pytest.mark.interop), "etcdpy")

HOLD_SECONDS = 0.3  # how long a leader leads while a rival waits (long enough to catch a rival in)


def campaign(recipes: Recipes, name: bytes, lease: int, value: bytes) -> pb.LeaderKey:
    request = pb.CampaignRequest(name=name, lease=lease, value=value)
    leader: pb.LeaderKey = recipes.election.Campaign(request, timeout=WAIT).leader
    return leader


def campaign_later(recipes: Recipes, name: bytes, lease: int, value: bytes) -> grpc.Future:
    request = pb.CampaignRequest(name=name, lease=lease, value=value)
    future: grpc.Future = recipes.election.Campaign.future(request, timeout=WAIT)
    return future


def leader(recipes: Recipes, name: bytes) -> pb.LeaderResponse:
    response: pb.LeaderResponse = recipes.election.Leader(pb.LeaderRequest(name=name), timeout=WAIT)
    return response


def proclaim(recipes: Recipes, key: pb.LeaderKey, value: bytes) -> pb.ProclaimResponse:
    response: pb.ProclaimResponse = recipes.election.Proclaim(
        pb.ProclaimRequest(leader=key, value=value), timeout=WAIT
    )
    return response


def resign(recipes: Recipes, key: pb.LeaderKey) -> pb.ResignResponse:
    response: pb.ResignResponse = recipes.election.Resign(pb.ResignRequest(leader=key), timeout=WAIT)
    return response


class Observer:
    """An Observe call whose responses a thread collects; `next` awaits one."""

    def __init__(self, recipes: Recipes, name: bytes) -> None:
        self._call: Any = recipes.election.Observe(pb.LeaderRequest(name=name))
        self._responses: queue.Queue[pb.LeaderResponse] = queue.Queue()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()
        recipes.on_close.append(self.close)

    def _collect(self) -> None:
        try:
            for response in self._call:
                self._responses.put(response)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:  # not by `close`: the test sees it as a response
                self._responses.put(pb.LeaderResponse(kv={"key": f"failed: {err.code()}".encode()}))

    def next(self) -> pb.LeaderResponse:
        try:
            return self._responses.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError("Observe sent nothing") from None

    def close(self) -> list[pb.LeaderResponse]:
        """Cancel the call; the responses not taken yet."""
        self._call.cancel()
        self._thread.join(timeout=WAIT)
        return list(self._responses.queue)


def test_campaign_leader_proclaim_resign(recipes: Recipes) -> None:
    lease = recipes.grant()
    key = campaign(recipes, b"basic", lease, b"v1")
    (kv,) = recipes.keys(b"basic/")
    assert (key.name, key.key, key.rev, key.lease) == (
        b"basic",
        b"basic/%x" % lease,
        kv.create_revision,
        lease,
    )
    assert (kv.value, kv.lease) == (b"v1", lease)
    assert leader(recipes, b"basic").kv == kv
    proclaimed = proclaim(recipes, key, b"v2")
    now = leader(recipes, b"basic").kv
    assert (now.value, now.mod_revision, now.create_revision) == (b"v2", proclaimed.header.revision, key.rev)
    again = campaign(recipes, b"basic", lease, b"v3")  # the same lease again: same key, value proclaimed
    assert again == key and leader(recipes, b"basic").kv.value == b"v3"
    resigned = resign(recipes, key)
    assert recipes.keys(b"basic/") == []
    assert resign(recipes, key).header.revision == resigned.header.revision  # resigning twice is no error
    assert failure_of(lambda: leader(recipes, b"basic")) == unknown("election: no leader")


def test_errors_are_etcds(recipes: Recipes) -> None:
    missing = unknown('"leader" field must be provided')
    assert (
        failure_of(lambda: recipes.election.Proclaim(pb.ProclaimRequest(value=b"x"), timeout=WAIT)) == missing
    )
    assert failure_of(lambda: recipes.election.Resign(pb.ResignRequest(), timeout=WAIT)) == missing
    lost = unknown("etcdserver: requested lease not found")
    assert failure_of(lambda: campaign(recipes, b"errs", 0x7E57, b"x")) == lost
    lease = recipes.grant()
    key = campaign(recipes, b"errs", lease, b"x")
    stale = pb.LeaderKey(name=key.name, key=key.key, rev=key.rev - 1, lease=key.lease)
    assert failure_of(lambda: proclaim(recipes, stale, b"y")) == unknown("election: not leader")
    other_lease = pb.LeaderKey(name=key.name, key=key.key, rev=key.rev, lease=0x7E57)
    assert failure_of(lambda: proclaim(recipes, other_lease, b"y")) == lost
    resign(recipes, key)
    assert failure_of(lambda: proclaim(recipes, key, b"y")) == unknown("election: not leader")
    assert failure_of(lambda: leader(recipes, b"errs")) == unknown("election: no leader")


def test_leadership_passes_in_campaign_order_on_resign_and_on_lease_death(recipes: Recipes) -> None:
    first = campaign(recipes, b"pass", recipes.grant(), b"first")
    events = recipes.events(b"pass/", first.rev + 1)
    leases = [recipes.grant(), recipes.grant()]
    second = campaign_later(recipes, b"pass", leases[0], b"second")
    events.expect(PUT, b"pass/%x" % leases[0])
    third = campaign_later(recipes, b"pass", leases[1], b"third")
    events.expect(PUT, b"pass/%x" % leases[1])
    time.sleep(HOLD_SECONDS)  # the leader leads a while; both rivals must keep waiting
    assert not second.done() and not third.done()
    resign(recipes, first)
    assert second.result(timeout=WAIT).leader.key == b"pass/%x" % leases[0]
    assert leader(recipes, b"pass").kv.value == b"second"
    time.sleep(HOLD_SECONDS)
    assert not third.done()
    recipes.client.lease_revoke(leases[0])
    assert third.result(timeout=WAIT).leader.key == b"pass/%x" % leases[1]
    assert leader(recipes, b"pass").kv.value == b"third"


def test_observe_sees_every_leader_in_order_and_every_proclaimed_value(recipes: Recipes) -> None:
    observer = Observer(recipes, b"watched")
    leases = [recipes.grant() for _ in range(3)]
    a = campaign(recipes, b"watched", leases[0], b"a1")
    assert observer.next().kv.value == b"a1"  # Observe was waiting for a first leader
    events = recipes.events(b"watched/", a.rev + 1)
    b = campaign_later(recipes, b"watched", leases[1], b"b1")
    events.expect(PUT, b"watched/%x" % leases[1])
    c = campaign_later(recipes, b"watched", leases[2], b"c1")
    events.expect(PUT, b"watched/%x" % leases[2])
    proclaim(recipes, a, b"a2")
    proclaim(recipes, a, b"a3")
    resign(recipes, a)
    b.result(timeout=WAIT)
    recipes.client.lease_revoke(leases[1])  # b's lease dies: c leads
    c.result(timeout=WAIT)
    seen = [observer.next() for _ in range(4)]
    assert [(r.kv.lease, r.kv.value) for r in seen] == [
        (leases[0], b"a2"),
        (leases[0], b"a3"),
        (leases[1], b"b1"),
        (leases[2], b"c1"),
    ]
    for response in seen:
        assert response.kv.key == b"watched/%x" % response.kv.lease
        assert response.header.revision >= response.kv.mod_revision
    assert observer.close() == []  # nothing else: no duplicate, no deleted key


def test_observe_starts_with_the_current_leader(recipes: Recipes) -> None:
    key = campaign(recipes, b"current", recipes.grant(), b"old")
    proclaim(recipes, key, b"now")
    observer = Observer(recipes, b"current")
    first = observer.next()
    assert (first.kv.key, first.kv.value) == (key.key, b"now")
    proclaim(recipes, key, b"next")
    assert observer.next().kv.value == b"next"
    observer.close()


def test_a_candidate_whose_lease_is_revoked_while_waiting_gets_an_error(
    recipes: Recipes, shared_server: ServerProcess, request: pytest.FixtureRequest
) -> None:
    if shared_server.kind == "etcd":
        request.applymarker(pytest.mark.xfail(reason=ETCD_JEPSEN_BUG, strict=True))
    first = campaign(recipes, b"doomed", recipes.grant(), b"leader")
    events = recipes.events(b"doomed/", first.rev + 1)
    doomed = recipes.grant()
    waiter = campaign_later(recipes, b"doomed", doomed, b"never")
    events.expect(PUT, b"doomed/%x" % doomed)
    recipes.client.lease_revoke(doomed)
    resign(recipes, first)
    assert failure_of(lambda: waiter.result(timeout=WAIT)) == unknown("mutex: session is expired")
    assert failure_of(lambda: leader(recipes, b"doomed")) == unknown("election: no leader")


def test_a_cancelled_campaign_resigns(recipes: Recipes) -> None:
    first = campaign(recipes, b"gaveup", recipes.grant(), b"leader")
    events = recipes.events(b"gaveup/", first.rev + 1)
    lease = recipes.grant()
    waiter = campaign_later(recipes, b"gaveup", lease, b"candidate")
    events.expect(PUT, b"gaveup/%x" % lease)
    waiter.cancel()
    events.expect(DELETE, b"gaveup/%x" % lease)
    assert [kv.key for kv in recipes.keys(b"gaveup/")] == [first.key]


def etcdctl_elect(endpoint: str, name: str, proposal: str) -> subprocess.Popen[str]:
    """`etcdctl elect name proposal`: prints key and value once elected, leads until SIGINT, then resigns."""
    return etcdctl_process(endpoint, "elect", name, proposal)


def readable(stream: Any, timeout: float) -> bool:
    ready, _, _ = select.select([stream], [], [], timeout)
    return bool(ready)


@pytest.mark.interop
def test_rpc_campaign_and_etcdctl_elect_exclude_each_other(
    recipes: Recipes, shared_server: ServerProcess
) -> None:
    key = campaign(recipes, b"mixed", recipes.grant(), b"rpc")
    events = recipes.events(b"mixed/", key.rev + 1)
    ctl = etcdctl_elect(shared_server.endpoint, "mixed", "ctl")
    ctl_key = events.expect(PUT).kv.key
    assert not readable(ctl.stdout, HOLD_SECONDS)  # etcdctl must not claim to lead while the RPC leader does
    resign(recipes, key)
    assert readable(ctl.stdout, WAIT)
    assert ctl.stdout is not None and ctl.stdout.readline().strip() == ctl_key.decode()
    assert leader(recipes, b"mixed").kv.value == b"ctl"
    lease = recipes.grant()
    waiter = campaign_later(recipes, b"mixed", lease, b"rpc again")
    events.expect(PUT, b"mixed/%x" % lease)
    time.sleep(HOLD_SECONDS)  # etcdctl leads a while; the RPC candidate must keep waiting
    assert not waiter.done()
    ctl.send_signal(signal.SIGINT)  # etcdctl resigns
    assert waiter.result(timeout=WAIT).leader.key == b"mixed/%x" % lease
    assert leader(recipes, b"mixed").kv.value == b"rpc again"
    ctl.communicate(timeout=WAIT)


def test_campaign_and_observe_through_followers_of_a_three_member_cluster(tmp_path: Path) -> None:
    with running_cluster("etcdpy", tmp_path, 3) as cluster:
        leader_member = cluster.wait_leader()
        first, second = (Recipes.open(m.endpoint) for m in cluster.members if m is not leader_member)
        via_leader = Recipes.open(leader_member.endpoint)
        try:
            observer = Observer(second, b"spread")
            key = campaign(first, b"spread", first.grant(), b"f1")
            assert observer.next().kv.value == b"f1"
            events = second.events(b"spread/", key.rev + 1)
            lease = via_leader.grant()
            rival = campaign_later(via_leader, b"spread", lease, b"l1")
            events.expect(PUT, b"spread/%x" % lease)
            proclaim(first, key, b"f2")
            resign(first, key)
            assert rival.result(timeout=WAIT).leader.key == b"spread/%x" % lease
            assert [observer.next().kv.value for _ in range(2)] == [b"f2", b"l1"]
            assert leader(second, b"spread").header.member_id != leader(first, b"spread").header.member_id
        finally:
            for recipes in (first, second, via_leader):
                recipes.close()
