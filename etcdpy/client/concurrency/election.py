"""`Election`: leader election shared with etcd's Go recipe (``etcdctl elect``), and its observers."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Generator, Iterator
from types import TracebackType

from etcdpy.api.errors import ErrCompacted, EtcdError
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.client import requests as rq
from etcdpy.client.client import Client
from etcdpy.client.concurrency.errors import NoLeader, NotLeader, SessionExpired
from etcdpy.client.concurrency.session import Session
from etcdpy.client.concurrency.waiting import Deadline, first_created, queue_key, wait_for_turn
from etcdpy.client.errors import ContextDeadlineExceeded
from etcdpy.client.requests import Bytes, CompareResult, CompareTarget
from etcdpy.client.watch import Watch, watch_create_request

__all__ = ["Election", "Observation"]


class Election:
    """Campaigns for leadership of the election ``name``; the leader announces a value.

    Key layout and algorithm are those of etcd's ``concurrency.Election``, so
    etcdpy and ``etcdctl elect`` candidates stand in one queue: a candidate puts
    ``<name>/<lease-id hex>`` holding its value, and the key created first
    leads.  The leader's `revision` (its key's create revision) fences its
    writes, like a lock's::

        with Session(client, ttl=10) as session:
            election = Election(session, "scheduler")
            election.campaign(b"node-1")        # blocks until elected
            election.proclaim(b"node-1 at v2")  # leaders may change their value
            election.resign()                   # the next candidate takes over

        for kv in Election(session, "scheduler").observe():  # from anywhere
            print(kv.key, kv.value)
    """

    def __init__(self, session: Session, name: Bytes) -> None:
        self.session = session
        self.prefix = rq.to_bytes(name) + b"/"
        # invariant: key == b"" exactly when revision == -1 (neither leading nor campaigning).
        self.key = b""
        self.revision = -1
        self._leading = False  # campaign returned; cleared by resign or a failed proclaim
        self.header: pb.ResponseHeader | None = None

    def campaign(self, value: Bytes, timeout: float | None = None) -> None:
        """Stand for election with ``value``; return once leading (TimeoutError after ``timeout`` s).

        A session already standing keeps its place and takes the new value.  On
        any failure (timeout, SessionExpired, a server error) the candidacy is
        withdrawn, so it cannot win later unnoticed.
        """
        deadline = Deadline(timeout, f"campaign {self.prefix.decode(errors='replace')}")
        data = rq.to_bytes(value)
        try:
            self._stand(data, deadline)
            self.header = wait_for_turn(self.session, self.prefix, self.key, self.revision, deadline)
        except BaseException as err:
            self._withdraw()
            if isinstance(err, ContextDeadlineExceeded) and deadline.expired():
                raise deadline.error() from None
            raise
        self._leading = True

    def proclaim(self, value: Bytes) -> None:
        """Announce a new value as leader; NotLeader unless this election's campaign won and still holds."""
        if not self._leading:
            raise NotLeader()
        self._put_value(rq.to_bytes(value), Deadline(None, "proclaim"))

    def resign(self) -> None:
        """Give up leadership (or a pending candidacy); the next candidate leads.  No-op otherwise."""
        if not self.key:
            return
        self.header = self._delete_mine().header
        self._forget()

    def leader(self) -> kv_pb2.KeyValue:
        """The current leader's key and value (NoLeader if nobody stands)."""
        response = self.session.client.send_range(first_created(self.prefix))
        if not response.kvs:
            raise NoLeader()
        leader: kv_pb2.KeyValue = response.kvs[0]
        return leader

    def observe(self) -> Observation:
        """Follow the leaders from the current one on: see `Observation`."""
        return Observation(self.session.client, self.prefix)

    def _stand(self, value: bytes, deadline: Deadline) -> None:
        """Put the candidate key with ``value``, or adopt the session's existing key (then set ``value``)."""
        if self.session.ended:
            raise SessionExpired()
        client = self.session.client
        self.key = queue_key(self.prefix, self.session)
        request = pb.TxnRequest(
            compare=[rq.compare(self.key, CompareTarget.CREATE, CompareResult.EQUAL, 0)],
            success=[rq.op_put(rq.put_request(self.key, value, lease=self.session.lease_id))],
            failure=[rq.op_get(rq.range_request(self.key))],
        )
        # Repeatable: sent again after its first attempt was applied, it reads the key that attempt put.
        response = client.send_txn(
            request, timeout=deadline.rpc_timeout(client.command_timeout), repeatable=True
        )
        if response.succeeded:
            self.revision = response.header.revision
            return
        existing = response.responses[0].response_range.kvs[0]
        self.revision = existing.create_revision
        if existing.value != value:
            self._put_value(value, deadline)

    def _put_value(self, value: bytes, deadline: Deadline) -> None:
        put = rq.op_put(rq.put_request(self.key, value, lease=self.session.lease_id))
        response = self._if_still_mine(put, deadline.rpc_timeout(self.session.client.command_timeout))
        if not response.succeeded:
            self._forget()
            raise NotLeader()
        self.header = response.header

    def _if_still_mine(
        self, op: pb.RequestOp, timeout: float | None = None, *, repeatable: bool = False
    ) -> pb.TxnResponse:
        """Run ``op`` only if the key is still the one this campaign created."""
        mine = rq.compare(self.key, CompareTarget.CREATE, CompareResult.EQUAL, self.revision)
        request = pb.TxnRequest(compare=[mine], success=[op])
        return self.session.client.send_txn(request, timeout=timeout, repeatable=repeatable)

    def _withdraw(self) -> None:
        """Best-effort removal of this campaign's key after a failure (the lease would remove it later)."""
        if self.key:
            with contextlib.suppress(EtcdError):
                if self.revision == -1:  # unknown whether the key was put: it is this session's anyway
                    self.session.client.delete(self.key)
                else:
                    self._delete_mine()
        self._forget()

    def _delete_mine(self) -> pb.TxnResponse:
        """Delete the campaign's key if it is still the one it created (repeatable: the guard holds once)."""
        return self._if_still_mine(rq.op_delete(rq.delete_request(self.key)), repeatable=True)

    def _forget(self) -> None:
        self.key = b""
        self.revision = -1
        self._leading = False


class _Restart(Exception):
    """The followed history is gone (compacted, or the watch was cancelled): start again from now."""


class Observation:
    """The leaders of an election, in order: iterate for their KeyValues; `close` ends it.

    The first item is the leader when `Election.observe` was called (or, if
    nobody led then, the first one elected after); then every value that leader
    proclaims, and every later leader with its values, in revision order.  When
    a leader's key is deleted, its successor is read at the very revision of the
    deletion, so no leader and no value is skipped, unless that history was
    compacted meanwhile (then the observation resumes from the current leader,
    as etcd's does).  A server failure raises its EtcdError and ends the
    observation.  `close` may be called from any thread and ends a blocked
    iteration::

        with election.observe() as leaders:
            for kv in leaders:
                print(kv.key, kv.value)
    """

    def __init__(self, client: Client, prefix: bytes) -> None:
        self._client = client
        self._prefix = prefix
        self._lock = threading.Lock()
        self._closed = False  # guarded by _lock
        self._watch: Watch | None = None  # the open watch, guarded by _lock
        # Read now, so the observation starts at the call, not at the first next().
        self._items = self._observe(client.send_range(first_created(prefix)))

    def __iter__(self) -> Observation:
        return self

    def __next__(self) -> kv_pb2.KeyValue:
        return next(self._items)

    def close(self) -> None:
        """End the observation; a thread blocked in iteration stops (StopIteration)."""
        with self._lock:
            self._closed = True
            watch = self._watch
        if watch is not None:
            watch.close()

    def __enter__(self) -> Observation:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _observe(self, first: pb.RangeResponse) -> Iterator[kv_pb2.KeyValue]:
        at = 0  # the revision to read the next leader at; 0: now
        read: pb.RangeResponse | None = first
        while not self._closed:
            try:
                at = yield from self._follow_leader(at, read)
            except (_Restart, ErrCompacted):
                at = 0
            read = None

    def _follow_leader(self, at: int, read: pb.RangeResponse | None) -> Generator[kv_pb2.KeyValue, None, int]:
        """Yield the leader at ``at`` and its values until its key is deleted; return that revision.

        ``read`` is the queue's head at ``at`` if already read.
        """
        response = read if read is not None else self._client.send_range(first_created(self._prefix, at))
        known = at or response.header.revision  # the queue is known up to this revision
        leader: kv_pb2.KeyValue | None = response.kvs[0] if response.kvs else None
        if leader is None:
            with contextlib.closing(self._events(self._prefix, known + 1, prefix=True)) as events:
                leader = next((event.kv for event in events if event.type == kv_pb2.Event.PUT), None)
            if leader is None:
                return 0  # closed
            known = leader.mod_revision
        yield leader
        with contextlib.closing(self._events(leader.key, known + 1, prefix=False)) as events:
            for event in events:
                if event.type == kv_pb2.Event.DELETE:
                    return int(event.kv.mod_revision)
                yield event.kv
        return 0  # closed

    def _events(self, key: bytes, start: int, *, prefix: bool) -> Generator[kv_pb2.Event, None, None]:
        """Events on ``key`` from revision ``start`` on, across dropped streams, until `close`."""
        while True:
            with self._lock:
                if self._closed:
                    return
                watch = self._client.watch(watch_create_request(key, prefix=prefix, start_revision=start))
                self._watch = watch
            try:
                for response in watch:
                    if response.canceled:
                        raise _Restart()
                    for event in response.events:
                        start = event.kv.mod_revision + 1
                        yield event
            finally:
                watch.close()
