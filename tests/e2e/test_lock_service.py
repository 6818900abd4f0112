"""The Lock service (/v3lockpb.Lock) on a real member: one body per test runs against etcd 3.4 and etcdpy.

Mutual exclusion is checked with revisions, which need no clock: a holder holds
from its Lock response's revision to its Unlock's, and the next holder's Lock
must answer at or after that Unlock.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import threading
import time
from pathlib import Path

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

from etcdpy.api.v3lockpb import v3lock_pb2 as pb

pytestmark = pytest.mark.server_kinds(pytest.param("etcd", marks=pytest.mark.interop), "etcdpy")

HOLD_SECONDS = 0.3  # how long a holder keeps the lock while a rival waits (long enough to catch a rival in)


def lock(recipes: Recipes, name: bytes, lease: int) -> pb.LockResponse:
    response: pb.LockResponse = recipes.lock.Lock(pb.LockRequest(name=name, lease=lease), timeout=WAIT)
    return response


def lock_later(recipes: Recipes, name: bytes, lease: int) -> grpc.Future:
    future: grpc.Future = recipes.lock.Lock.future(pb.LockRequest(name=name, lease=lease), timeout=WAIT)
    return future


def unlock(recipes: Recipes, key: bytes) -> int:
    return int(recipes.lock.Unlock(pb.UnlockRequest(key=key), timeout=WAIT).header.revision)


def test_the_lock_key_is_name_slash_lease_hex_attached_to_the_lease(recipes: Recipes) -> None:
    lease = recipes.grant()
    held = lock(recipes, b"layout", lease)
    assert held.key == b"layout/%x" % lease
    (kv,) = recipes.keys(b"layout/")
    assert (kv.key, kv.value, kv.lease) == (held.key, b"", lease)
    assert kv.create_revision == held.header.revision  # uncontended: answered at its own put
    again = lock(recipes, b"layout", lease)  # the same lease holds already: same key, no new revision
    assert (again.key, again.header.revision) == (held.key, held.header.revision)
    released = unlock(recipes, held.key)
    assert recipes.keys(b"layout/") == []
    assert unlock(recipes, held.key) == released  # unlocking a missing key is no error


def test_lock_with_no_lease_uses_a_new_lease_as_etcd_does(recipes: Recipes) -> None:
    held = lock(recipes, b"nolease", 0)
    (kv,) = recipes.keys(b"nolease/")
    assert held.key == b"nolease/%x" % kv.lease and kv.lease != 0
    assert 0 < recipes.client.lease_time_to_live(kv.lease).TTL <= 60
    recipes.client.lease_revoke(kv.lease)


def test_errors_are_etcds(recipes: Recipes) -> None:
    assert failure_of(lambda: lock(recipes, b"err", 0x7E57)) == unknown(
        "etcdserver: requested lease not found"
    )
    assert failure_of(lambda: unlock(recipes, b"")) == unknown("etcdserver: key is not provided")


def test_concurrent_lockers_never_overlap(recipes: Recipes) -> None:
    """Four clients lock and unlock three times each: holder intervals (revisions, time) are disjoint."""
    intervals: list[tuple[int, int]] = []
    inside = 0
    most_inside = 0
    guard = threading.Lock()
    failures: list[BaseException] = []

    def worker() -> None:
        nonlocal inside, most_inside
        lease = recipes.grant()
        try:
            for _ in range(3):
                held = lock(recipes, b"mutex", lease)
                with guard:
                    inside += 1
                    most_inside = max(most_inside, inside)
                time.sleep(0.02)  # hold the lock a moment: room for a wrongly admitted rival to get in
                with guard:
                    inside -= 1
                intervals.append((held.header.revision, unlock(recipes, held.key)))
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=4 * WAIT)
    assert not failures, failures
    assert most_inside == 1
    intervals.sort()
    assert len(intervals) == 12
    for (_, released), (acquired, _) in itertools.pairwise(intervals):
        assert acquired >= released, intervals


def test_unlock_hands_the_lock_to_waiters_in_create_revision_order(recipes: Recipes) -> None:
    holder = lock(recipes, b"queue", recipes.grant())
    events = recipes.events(b"queue/", holder.header.revision + 1)
    waiters = []
    for _ in range(3):  # each waiter's key exists before the next one asks: their order is known
        lease = recipes.grant()
        waiters.append((lock_later(recipes, b"queue", lease), b"queue/%x" % lease))
        events.expect(PUT, waiters[-1][1])
    released = unlock(recipes, holder.key)
    for i, (future, key) in enumerate(waiters):
        got = future.result(timeout=WAIT)
        assert got.key == key
        assert got.header.revision >= released
        assert not any(f.done() for f, _ in waiters[i + 1 :]), "a later waiter got the lock too"
        time.sleep(HOLD_SECONDS)  # the holder holds a while; the later waiters must keep waiting
        assert not any(f.done() for f, _ in waiters[i + 1 :]), "a later waiter got the lock too"
        released = unlock(recipes, key)


def test_a_holder_whose_lease_dies_hands_the_lock_over(recipes: Recipes) -> None:
    expiring = recipes.grant(2)  # the minimum TTL of both servers with their default election timeout
    first = lock(recipes, b"death", expiring)
    events = recipes.events(b"death/", first.header.revision + 1)
    revoked = recipes.grant()
    second = lock_later(recipes, b"death", revoked)
    events.expect(PUT, b"death/%x" % revoked)
    third = lock_later(recipes, b"death", recipes.grant())
    expiry = events.expect(DELETE, first.key)  # nobody keeps the 2 s lease alive
    assert second.result(timeout=WAIT).header.revision >= expiry.kv.mod_revision
    revoke_rev = int(recipes.client.lease_revoke(revoked).header.revision)
    assert third.result(timeout=WAIT).header.revision >= revoke_rev


def test_a_waiter_whose_lease_is_revoked_gets_an_error_never_the_lock(
    recipes: Recipes, shared_server: ServerProcess, request: pytest.FixtureRequest
) -> None:
    if shared_server.kind == "etcd":
        request.applymarker(pytest.mark.xfail(reason=ETCD_JEPSEN_BUG, strict=True))
    holder = lock(recipes, b"jepsen", recipes.grant())
    events = recipes.events(b"jepsen/", holder.header.revision + 1)
    doomed = recipes.grant()
    waiter = lock_later(recipes, b"jepsen", doomed)
    events.expect(PUT, b"jepsen/%x" % doomed)
    recipes.client.lease_revoke(doomed)
    unlock(recipes, holder.key)
    assert failure_of(lambda: waiter.result(timeout=WAIT)) == unknown("mutex: session is expired")
    assert recipes.keys(b"jepsen/") == []


def test_a_cancelled_waiter_removes_its_key(recipes: Recipes) -> None:
    holder = lock(recipes, b"cancel", recipes.grant())
    events = recipes.events(b"cancel/", holder.header.revision + 1)
    lease = recipes.grant()
    waiter = lock_later(recipes, b"cancel", lease)
    events.expect(PUT, b"cancel/%x" % lease)
    waiter.cancel()
    events.expect(DELETE, b"cancel/%x" % lease)  # as etcd does: a client that gave up never holds it
    assert [kv.key for kv in recipes.keys(b"cancel/")] == [holder.key]
    assert recipes.client.lease_time_to_live(lease).TTL > 0  # only the key goes; the lease is the client's


def etcdctl_lock(endpoint: str, name: str, shell: str) -> subprocess.Popen[str]:
    """`etcdctl lock name -- sh -c shell`: the shell runs while etcdctl's client-side mutex is held."""
    return etcdctl_process(endpoint, "lock", name, "--", "sh", "-c", shell)


@pytest.mark.interop
def test_rpc_lock_and_etcdctl_lock_exclude_each_other(
    recipes: Recipes, shared_server: ServerProcess, tmp_path: Path
) -> None:
    holder = lock(recipes, b"shared", recipes.grant())
    events = recipes.events(b"shared/", holder.header.revision + 1)
    # etcdctl waits for the RPC holder, then reports its key and the revision it acquired at.
    ctl = etcdctl_lock(shared_server.endpoint, "shared", 'echo "$ETCD_LOCK_KEY $ETCD_LOCK_REV"')
    ctl_key = events.expect(PUT).kv.key
    time.sleep(HOLD_SECONDS)  # the RPC holder holds a while; etcdctl must keep waiting
    assert ctl.poll() is None
    released = unlock(recipes, holder.key)
    out, err = ctl.communicate(timeout=WAIT)
    assert ctl.returncode == 0, err
    key, acquired_at = out.split()
    assert key.encode() == ctl_key and int(acquired_at) >= released
    # The other way round: etcdctl holds while its shell runs, until the test opens the fifo.
    go = tmp_path / "go"
    os.mkfifo(go)
    put = f"etcdctl --endpoints {shared_server.endpoint} put shared-cs out >/dev/null"
    ctl = etcdctl_lock(shared_server.endpoint, "shared", f"read line <{go}; {put}")
    ctl_key = events.expect(PUT).kv.key
    lease = recipes.grant()
    waiter = lock_later(recipes, b"shared", lease)
    events.expect(PUT, b"shared/%x" % lease)
    time.sleep(HOLD_SECONDS)
    assert not waiter.done()
    with go.open("w") as fifo:
        fifo.write("go\n")
    out, err = ctl.communicate(timeout=WAIT)
    assert ctl.returncode == 0, err
    left_at = recipes.client.get(b"shared-cs").kvs[0].mod_revision  # etcdctl's last write while holding
    released = events.expect(DELETE, ctl_key).kv.mod_revision
    got = waiter.result(timeout=WAIT)
    assert got.header.revision >= released > left_at
    unlock(recipes, got.key)


def test_lock_through_a_follower_of_a_three_member_cluster(tmp_path: Path) -> None:
    with running_cluster("etcdpy", tmp_path, 3) as cluster:
        leader = cluster.wait_leader()
        follower = next(m for m in cluster.members if m is not leader)
        via_leader = Recipes.open(leader.endpoint)
        via_follower = Recipes.open(follower.endpoint)
        try:
            holder = lock(via_leader, b"clustered", via_leader.grant())
            events = via_follower.events(b"clustered/", holder.header.revision + 1)
            lease = via_follower.grant()
            waiter = lock_later(via_follower, b"clustered", lease)
            events.expect(PUT, b"clustered/%x" % lease)
            time.sleep(HOLD_SECONDS)
            assert not waiter.done()
            released = unlock(via_leader, holder.key)
            got = waiter.result(timeout=WAIT)
            assert got.key == b"clustered/%x" % lease and got.header.revision >= released
            assert got.header.member_id != holder.header.member_id  # answered by the follower itself
        finally:
            via_leader.close()
            via_follower.close()
