"""Requests lost with a dead leader: the client sends them again where that is safe, and only there.

A follower forwards proposals and ReadIndex requests to its leader.  Here the
leader is stopped, then killed, just as requests reach a follower, so what the
follower forwarded is lost.  The follower learns of the new leader within two
election timeouts: it fails the lost read at once ("leader changed"), but a
lost proposal is answered only at its request timeout (5 s and two election
timeouts, here 7 s), after the client's own deadline.  So the client sends a
read again when it is told, a repeatable write (a lease grant, a lock's
put-if-absent) again once half its time has passed, and a plain put never:
that one fails, and is not applied.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from cluster_support import ProcCluster, running_cluster
from procs import ServerProcess

from etcdpy.client import Client, ContextDeadlineExceeded
from etcdpy.client.concurrency import Mutex, Session
from etcdpy.client.transport import ATTEMPT_SHARE

T = TypeVar("T")

# Long enough that a request sent right after the leader stops is surely forwarded to it: a
# follower forgets its leader only when its election timer (1 to 2 s) fires.
SLOW_ELECTIONS = ["--heartbeat-interval", "100", "--election-timeout", "1000"]
REQUEST_TIMEOUT = 5.0 + 2 * 1.0  # the server's (etcd's) for these election timeouts
CALL_TIMEOUT = 6.0  # the client's: shorter than the server's, as etcdctl's 5 s is against etcd's 5.4 s


@contextmanager
def follower_clients(cluster: ProcCluster, leader: ServerProcess, count: int) -> Iterator[list[Client]]:
    """``count`` clients of one follower only (so nothing fails over), connected already."""
    follower = next(member for member in cluster.members if member is not leader)
    with ExitStack() as stack:
        clients = [
            stack.enter_context(Client(follower.endpoint, command_timeout=CALL_TIMEOUT)) for _ in range(count)
        ]
        for client in clients:
            client.get("warm-up")
        yield clients


def timed(call: Callable[[], T]) -> Callable[[], tuple[float, T]]:
    def run() -> tuple[float, T]:
        started = time.monotonic()
        result = call()
        return time.monotonic() - started, result

    return run


def test_what_the_client_sends_again_when_the_leader_dies_with_its_requests(tmp_path: Path) -> None:
    assert CALL_TIMEOUT < REQUEST_TIMEOUT
    with running_cluster("etcdpy", tmp_path, 3, SLOW_ELECTIONS) as cluster:
        leader = cluster.wait_leader()
        with follower_clients(cluster, leader, 4) as (granter, reader, writer, locker):
            writer.put("k", "before")
            with Session(locker, ttl=30) as session, ThreadPoolExecutor(4) as pool:
                assert leader.proc is not None
                os.killpg(leader.proc.pid, signal.SIGSTOP)  # from now on, what it is sent is lost
                grant = pool.submit(timed(lambda: granter.lease_grant(30)))
                read = pool.submit(timed(lambda: reader.get("k")))
                put = pool.submit(timed(lambda: writer.put("lost", "v")))
                lock = pool.submit(timed(lambda: Mutex(session, "lock").lock()))
                leader.kill()

                # A read lost with the leader is answered "leader changed" and sent again.
                _, got = read.result()
                assert [kv.value for kv in got.kvs] == [b"before"]
                # Repeatable writes: the first attempt gets no answer in time, the second applies.
                waited, _ = grant.result()
                assert waited >= CALL_TIMEOUT * ATTEMPT_SHARE - 0.1, "the grant was not lost: no proof"
                waited, _ = lock.result()
                assert waited >= CALL_TIMEOUT * ATTEMPT_SHARE - 0.1, "the lock's txn was not lost: no proof"
                # A plain put may have been applied, for all the client knows: it is not sent again.
                with pytest.raises(ContextDeadlineExceeded):
                    put.result()
                # Each repeatable write was applied once; the put, lost, not at all.
                assert reader.get("lock/", prefix=True).count == 1
                assert len(reader.lease_leases().leases) == 2  # the session's and the grant's
                assert reader.get("lost").count == 0
