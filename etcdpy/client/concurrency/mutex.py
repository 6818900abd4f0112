"""`Mutex`: a lock shared with etcd's Go recipe (``etcdctl lock``), with a fencing revision."""

from __future__ import annotations

import contextlib
from types import TracebackType

from etcdpy.api.errors import EtcdError
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.client import requests as rq
from etcdpy.client.concurrency.errors import SessionExpired
from etcdpy.client.concurrency.session import Session
from etcdpy.client.concurrency.waiting import Deadline, first_created, queue_key, wait_for_turn
from etcdpy.client.errors import ContextDeadlineExceeded
from etcdpy.client.requests import Bytes, CompareResult, CompareTarget

__all__ = ["Mutex"]


class Mutex:
    """A distributed lock named ``name``; holders are fenced by `revision`.

    The key layout and algorithm are those of etcd's ``concurrency.Mutex``, so
    an etcdpy Mutex and ``etcdctl lock`` exclude each other: a session queues
    ``<name>/<lease-id hex>`` (attached to its lease) and holds the lock while
    its key has the lowest create revision under ``<name>/``.  A lease that
    ends releases the lock, so a holder can lose it without knowing; guard the
    writes the lock protects with `is_owner` (or compare against `revision`,
    which strictly increases from one holder to the next)::

        with Session(client, ttl=10) as session:
            with Mutex(session, "jobs/nightly") as lock:
                client.txn([lock.is_owner()], [op_put(put_request("jobs/out", "done"))])
    """

    def __init__(self, session: Session, name: Bytes) -> None:
        self.session = session
        self.prefix = rq.to_bytes(name) + b"/"
        # invariant: key == b"" exactly when revision == -1 (neither holding nor queued).
        self.key = b""
        self.revision = -1
        self.header: pb.ResponseHeader | None = None

    def lock(self, timeout: float | None = None) -> None:
        """Block until this session holds the lock (TimeoutError after ``timeout`` seconds).

        On every failure (timeout, SessionExpired, a server error) the session's
        key is deleted again, so it does not hold up the queue.
        """
        deadline = Deadline(timeout, f"lock {self.prefix.decode(errors='replace')}")
        try:
            response = self._enqueue(deadline)
            if not self._at_head(response):
                self.header = wait_for_turn(self.session, self.prefix, self.key, self.revision, deadline)
        except BaseException as err:
            self._leave_queue()
            if isinstance(err, ContextDeadlineExceeded) and deadline.expired():
                raise deadline.error() from None
            raise

    def try_lock(self) -> bool:
        """Take the lock if it is free (or already this session's); never waits for another holder."""
        try:
            response = self._enqueue(Deadline(None, "try lock"))
        except BaseException:
            self._leave_queue()
            raise
        if self._at_head(response):
            return True
        self._delete_key()
        return False

    def unlock(self) -> None:
        """Release the lock (delete the session's key); does nothing when not holding it."""
        if self.key:
            self._delete_key()

    def is_owner(self) -> pb.Compare:
        """A txn compare that holds only while this lock is still held: the key's create revision."""
        if not self.key:
            # Never true: no key has create revision -1.
            return rq.compare(b"\0", CompareTarget.CREATE, CompareResult.EQUAL, -1)
        return rq.compare(self.key, CompareTarget.CREATE, CompareResult.EQUAL, self.revision)

    def __enter__(self) -> Mutex:
        self.lock()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.unlock()

    def _enqueue(self, deadline: Deadline) -> pb.TxnResponse:
        """Put the session's key unless it is there already; also read the queue's head, in one txn."""
        if self.session.ended:
            raise SessionExpired()
        client = self.session.client
        key = queue_key(self.prefix, self.session)
        self.key = key
        head = rq.op_get(first_created(self.prefix))
        request = pb.TxnRequest(
            compare=[rq.compare(key, CompareTarget.CREATE, CompareResult.EQUAL, 0)],
            success=[rq.op_put(rq.put_request(key, lease=self.session.lease_id)), head],
            failure=[rq.op_get(rq.range_request(key)), head],  # the session queued already: keep its place
        )
        # Repeatable: sent again after its first attempt was applied, it reads the key that attempt put.
        response = client.send_txn(
            request, timeout=deadline.rpc_timeout(client.command_timeout), repeatable=True
        )
        if response.succeeded:
            self.revision = response.header.revision
        else:
            self.revision = response.responses[0].response_range.kvs[0].create_revision
        return response

    def _at_head(self, response: pb.TxnResponse) -> bool:
        head = response.responses[1].response_range.kvs
        if head and head[0].create_revision != self.revision:
            return False
        self.header = response.header
        return True

    def _leave_queue(self) -> None:
        """Best-effort delete of the session's key after a failure (the lease would remove it later)."""
        with contextlib.suppress(EtcdError):
            self._delete_key()
        self._forget()

    def _delete_key(self) -> None:
        """Delete the session's key (leaving the queue), then forget it.

        With its create revision known the delete is guarded by it, so it may be
        sent again: a late copy cannot delete the key this session puts next.
        """
        client = self.session.client
        if self.revision != -1:
            delete = rq.op_delete(rq.delete_request(self.key))
            client.send_txn(pb.TxnRequest(compare=[self.is_owner()], success=[delete]), repeatable=True)
        elif self.key:
            client.delete(self.key)
        self._forget()

    def _forget(self) -> None:
        self.key = b""
        self.revision = -1
