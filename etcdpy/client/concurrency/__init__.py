"""Concurrency recipes on etcd: sessions, locks and elections, interoperable with etcd's own.

    from etcdpy.client import Client
    from etcdpy.client.concurrency import Mutex, Session

    with Client("127.0.0.1:2379") as client, Session(client, ttl=10) as session:
        with Mutex(session, "jobs/nightly") as lock:
            print("held with fencing revision", lock.revision)

Keys and algorithms are those of etcd's Go package ``clientv3/concurrency``
(what ``etcdctl lock`` and ``etcdctl elect`` use), so Go and Python
participants queue in one line and exclude each other.  `run_stm` runs a
function as a software transaction (see `etcdpy.client.concurrency.stm`).
"""

from etcdpy.client.concurrency.election import Election, Observation
from etcdpy.client.concurrency.errors import NoLeader, NotLeader, SessionExpired
from etcdpy.client.concurrency.mutex import Mutex
from etcdpy.client.concurrency.session import Session
from etcdpy.client.concurrency.stm import STM, Isolation, run_stm

__all__ = [
    "STM",
    "Election",
    "Isolation",
    "Mutex",
    "NoLeader",
    "NotLeader",
    "Observation",
    "Session",
    "SessionExpired",
    "run_stm",
]
