"""The queue `Mutex` and `Election` share: keys under a prefix, served in create-revision order.

Each participant puts ``<prefix><lease-id hex>`` attached to its session's
lease; the key with the lowest create revision is at the head (holds the lock,
leads the election).  A participant further back waits, through a watch, for
the deletion of the key just ahead of it (the highest create revision below its
own), then looks again, exactly as etcd's Go recipes do, so etcdctl and etcdpy
take their turns in one queue.  Reads that meet an election are sent again by
the client's transport, as etcd's Go client does (`etcdpy.client.transport`).
"""

from __future__ import annotations

import threading
import time
from contextlib import closing

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.client import requests as rq
from etcdpy.client.concurrency.errors import SessionExpired
from etcdpy.client.concurrency.session import Session
from etcdpy.client.requests import SortOrder, SortTarget
from etcdpy.client.watch import watch_create_request

__all__ = ["Deadline", "first_created", "queue_key", "wait_for_turn"]


class Deadline:
    """The end of a blocking call's time budget (``timeout`` None: no end)."""

    def __init__(self, timeout: float | None, what: str) -> None:
        self.timeout = timeout
        self.what = what
        self.at = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left (never negative), None without a deadline."""
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def error(self) -> TimeoutError:
        return TimeoutError(f"{self.what}: not done within {self.timeout} s")

    def rpc_timeout(self, command_timeout: float) -> float:
        """The timeout for one call: the client's own, cut to what is left; TimeoutError if nothing is."""
        remaining = self.remaining()
        if remaining is None:
            return command_timeout
        if remaining <= 0:
            raise self.error()
        return min(command_timeout, remaining)


def queue_key(prefix: bytes, session: Session) -> bytes:
    """A session's key in a queue: the prefix and the lease ID in lowercase hex, as Go's ``%x``."""
    return prefix + format(session.lease_id, "x").encode()


def first_created(prefix: bytes, revision: int = 0) -> pb.RangeRequest:
    """The head of the queue (the key under ``prefix`` created first), at ``revision`` (0: now)."""
    return rq.range_request(
        prefix,
        prefix=True,
        limit=1,
        revision=revision,
        sort_order=SortOrder.ASCEND,
        sort_target=SortTarget.CREATE,
    )


def _last_created_before(prefix: bytes, revision: int) -> pb.RangeRequest:
    """The key just ahead of a key created at ``revision``: the latest created before it."""
    request = rq.range_request(
        prefix, prefix=True, limit=1, sort_order=SortOrder.DESCEND, sort_target=SortTarget.CREATE
    )
    request.max_create_revision = revision - 1
    return request


def wait_for_turn(
    session: Session, prefix: bytes, key: bytes, revision: int, deadline: Deadline
) -> pb.ResponseHeader:
    """Block until ``key`` (created at ``revision``) heads the queue; the header of the final check.

    Before returning it checks that ``key`` still exists with its create
    revision: a lease that expired during the wait took the key with it, and
    the caller must not believe it holds anything (SessionExpired).  Raises
    TimeoutError at the deadline and SessionExpired as soon as the session ends.
    """
    client = session.client
    ahead = _last_created_before(prefix, revision)
    while True:
        response = client.send_range(ahead, timeout=deadline.rpc_timeout(client.command_timeout))
        if not response.kvs:
            break
        _wait_delete(session, response.kvs[0].key, response.header.revision, deadline)
    own = client.get(key, timeout=deadline.rpc_timeout(client.command_timeout))
    if not own.kvs or own.kvs[0].create_revision != revision:
        raise SessionExpired()
    header: pb.ResponseHeader = own.header
    return header


def _wait_delete(session: Session, key: bytes, revision: int, deadline: Deadline) -> None:
    """Return once ``key`` is deleted at or after ``revision`` (or the watch lost its history)."""
    watch = session.client.watch(watch_create_request(key, start_revision=revision))
    # Either ending closes the stream, which ends the iteration below.
    remove_callback = session.add_end_callback(watch.close)
    remaining = deadline.remaining()
    timer = threading.Timer(remaining, watch.close) if remaining is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        with closing(watch):
            for response in watch:
                if any(event.type == kv_pb2.Event.DELETE for event in response.events):
                    return
                if response.canceled:
                    return  # compacted past ``revision``: the caller ranges again
    finally:
        remove_callback()
        if timer is not None:
            timer.cancel()
    if session.ended:
        raise SessionExpired()
    if deadline.expired():
        raise deadline.error()
