"""Mutex: mutual exclusion, fencing revisions, cleanup on failure, and one queue with ``etcdctl lock``.

Every test runs against the reference etcd and etcdpy (see conftest.py).
"""

from __future__ import annotations

import itertools
import signal
import threading
import time
from pathlib import Path

import pytest
from e2e.cluster_support import running_cluster
from recipe_support import Background, current_revision, etcdctl, read_lines, wait_for_put

from etcdpy.client import Client, op_put
from etcdpy.client.concurrency import Mutex, Session, SessionExpired
from etcdpy.client.requests import put_request


def test_uncontended_lock_is_the_session_key_and_unlocks_on_exit(
    recipe_client: Client, recipe_name: str
) -> None:
    with Session(recipe_client, ttl=10) as session:
        with Mutex(session, recipe_name) as lock:
            assert lock.key == f"{recipe_name}/{session.lease_id:x}".encode()
            stored = recipe_client.get(lock.key).kvs[0]
            assert (stored.create_revision, stored.lease) == (lock.revision, session.lease_id)
            again = Mutex(session, recipe_name)
            assert again.try_lock(), "the same session already holds it"
            assert again.revision == lock.revision
        assert recipe_client.get(recipe_name + "/", prefix=True).count == 0
        assert lock.key == b"" and lock.revision == -1


def test_threads_holding_the_lock_never_overlap_and_revisions_increase(
    recipe_client: Client, recipe_name: str
) -> None:
    threads, rounds = 6, 4
    counter = f"{recipe_name}-counter"
    recipe_client.put(counter, "0")
    holds: list[tuple[float, float, int]] = []  # (entered, left, fencing revision)
    record = threading.Lock()

    def worker() -> None:
        with Session(recipe_client, ttl=10) as session:
            lock = Mutex(session, recipe_name)
            for _ in range(rounds):
                with lock:
                    entered = time.monotonic()
                    # A read-modify-write that loses updates if two holders ever overlap.
                    value = int(recipe_client.get(counter).kvs[0].value)
                    recipe_client.put(counter, str(value + 1))
                    left = time.monotonic()
                    with record:
                        holds.append((entered, left, lock.revision))

    workers = [Background(worker) for _ in range(threads)]
    for w in workers:
        w.result(60.0)
    assert int(recipe_client.get(counter).kvs[0].value) == threads * rounds
    holds.sort()
    for (_, left, revision), (entered, _, next_revision) in itertools.pairwise(holds):
        assert left <= entered, "two holders at once"
        assert revision < next_revision, "the fencing revision must strictly increase"


def test_a_holder_whose_lease_expired_is_fenced_off(recipe_client: Client, recipe_name: str) -> None:
    fenced = f"{recipe_name}-fenced"
    with Session(recipe_client, ttl=10) as first_session, Session(recipe_client, ttl=10) as second_session:
        first = Mutex(first_session, recipe_name)
        first.lock()
        recipe_client.lease_revoke(first_session.lease_id)  # as if it expired: the holder does not know
        second = Mutex(second_session, recipe_name)
        second.lock(timeout=10)
        assert second.revision > first.revision
        stale = recipe_client.txn([first.is_owner()], [op_put(put_request(fenced, "stale"))])
        current = recipe_client.txn([second.is_owner()], [op_put(put_request(fenced, "current"))])
        assert (stale.succeeded, current.succeeded) == (False, True)
        assert recipe_client.get(fenced).kvs[0].value == b"current"
        second.unlock()
        assert not recipe_client.txn([second.is_owner()], [op_put(put_request(fenced, "late"))]).succeeded


def test_lock_timeout_deletes_the_waiters_key(recipe_client: Client, recipe_name: str) -> None:
    with Session(recipe_client, ttl=10) as holder_session, Session(recipe_client, ttl=10) as waiter_session:
        holder = Mutex(holder_session, recipe_name)
        holder.lock()
        waiter = Mutex(waiter_session, recipe_name)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            waiter.lock(timeout=0.5)
        assert time.monotonic() - started >= 0.5
        assert [kv.key for kv in recipe_client.get(recipe_name + "/", prefix=True).kvs] == [holder.key]
        assert waiter.key == b""
        assert not waiter.try_lock()
        assert recipe_client.get(recipe_name + "/", prefix=True).count == 1, "try_lock leaves no key behind"


@pytest.mark.parametrize("end", ["revoke", "close"])
def test_a_waiter_whose_session_ends_gets_session_expired(
    recipe_client: Client, recipe_name: str, end: str
) -> None:
    with Session(recipe_client, ttl=10) as holder_session:
        Mutex(holder_session, recipe_name).lock()
        waiter_session = Session(recipe_client, ttl=3)
        waiter = Mutex(waiter_session, recipe_name)
        start = current_revision(recipe_client) + 1
        waiting = Background(waiter.lock)
        wait_for_put(recipe_client, recipe_name, start)
        if end == "revoke":
            recipe_client.lease_revoke(waiter_session.lease_id)
        else:
            waiter_session.close()
        with pytest.raises(SessionExpired):
            waiting.result()
        assert waiter.key == b""
        waiter_session.close()


def test_a_waiter_rechecks_its_own_key_before_taking_the_lock(
    recipe_client: Client, recipe_name: str
) -> None:
    with Session(recipe_client, ttl=10) as holder_session, Session(recipe_client, ttl=10) as waiter_session:
        holder = Mutex(holder_session, recipe_name)
        holder.lock()
        waiter = Mutex(waiter_session, recipe_name)
        start = current_revision(recipe_client) + 1
        waiting = Background(waiter.lock)
        waiter_key = wait_for_put(recipe_client, recipe_name, start)
        recipe_client.delete(waiter_key)  # its place in the queue is gone while its session lives on
        holder.unlock()
        with pytest.raises(SessionExpired):
            waiting.result()
        assert not waiter_session.lost.is_set()


def test_etcdctl_lock_excludes_a_mutex(recipe_client: Client, recipe_name: str) -> None:
    endpoint = recipe_client.endpoints[0].target
    start = current_revision(recipe_client) + 1
    with (
        etcdctl(endpoint, "lock", "--ttl", "10", recipe_name) as locker,
        Session(recipe_client, ttl=10) as session,
    ):
        etcdctl_key = wait_for_put(recipe_client, recipe_name, start)
        assert read_lines(locker, 1) == [etcdctl_key.decode()], "etcdctl holds the lock"
        etcdctl_revision = recipe_client.get(etcdctl_key).kvs[0].create_revision
        mutex = Mutex(session, recipe_name)
        assert not mutex.try_lock()
        start = current_revision(recipe_client) + 1
        waiting = Background(mutex.lock)
        wait_for_put(recipe_client, recipe_name, start)
        assert not waiting.done.is_set()
        locker.send_signal(signal.SIGINT)  # etcdctl unlocks on interrupt
        waiting.result()
        assert mutex.revision > etcdctl_revision
        mutex.unlock()


def test_a_mutex_excludes_etcdctl_lock(recipe_client: Client, recipe_name: str) -> None:
    endpoint = recipe_client.endpoints[0].target
    with Session(recipe_client, ttl=10) as session:
        mutex = Mutex(session, recipe_name)
        mutex.lock()
        start = current_revision(recipe_client) + 1
        with etcdctl(endpoint, "lock", "--ttl", "10", recipe_name, "echo", "etcdctl-ran") as locker:
            wait_for_put(recipe_client, recipe_name, start, other_than=mutex.key)
            assert locker.poll() is None, "etcdctl must wait while the Mutex holds the lock"
            mutex.unlock()
            out, err = locker.communicate(timeout=20)
            assert (locker.returncode, out.strip()) == (0, "etcdctl-ran"), err


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["etcd", "etcdpy"])
def test_a_holder_keeps_the_lock_when_its_clients_member_dies(kind: str, tmp_path: Path) -> None:
    ttl = 3
    with running_cluster(kind, tmp_path, 3) as cluster:
        first, second, third = (m.endpoint for m in cluster.members)
        with (
            Client([first, second, third]) as holder_client,
            Client([second, third, first]) as waiter_client,
            Session(holder_client, ttl=ttl) as holder_session,
            Session(waiter_client, ttl=ttl) as waiter_session,
        ):
            holder = Mutex(holder_session, "failover")
            holder.lock()
            start = current_revision(waiter_client) + 1
            waiting = Background(Mutex(waiter_session, "failover").lock)
            wait_for_put(waiter_client, "failover", start, other_than=holder.key)
            cluster.members[0].stop()  # the holder's first endpoint, perhaps the raft leader
            # Renewals fail over to the live members: the lease outlives two TTLs.
            assert not holder_session.lost.wait(2 * ttl)
            if waiting.done.is_set():
                waiting.result()  # re-raises the waiter's failure, if that is why it is done
                raise AssertionError("the holder's lease must still keep the waiter out")
            assert waiter_client.txn([holder.is_owner()]).succeeded
            holder.unlock()
            waiting.result()
