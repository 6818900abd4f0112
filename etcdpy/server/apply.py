"""Applier: committed raft entries -> MVCC store changes, deterministically.

`Applier.apply` takes a run of committed entries and writes all their effects,
plus the new applied index, in ONE unsynced LevelDB write batch: after a crash
the store holds exactly the entries up to the stored applied index, and replay
starts right after it.  Nothing here reads the clock or depends on the member,
so every member computes the same store and the same HashKV.

A request that fails while applying (e.g. ErrKeyNotFound for ignore_value)
yields its error as the result and changes nothing; its entry still counts as
applied.  Other exceptions are bugs or disk failures: they propagate and the
batch (and the applied index) is not written.

Events: after a batch is written, ``on_events(revision, events)`` is called once
per revision that changed something, in order, with the mvccpb.Events of that
revision (PUT events carry prev_kv when the key existed; DELETE events carry the
deleted KeyValue as prev_kv; a watch hub strips prev_kv for watchers that did
not ask for it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from google.protobuf.message import Message

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server.alarm import Alarms
from etcdpy.server.mvcc import ops, txn
from etcdpy.server.mvcc.kvstore import KVStore
from etcdpy.server.mvcc.leases import LeaseLookup
from etcdpy.server.mvcc.writer import Batch
from etcdpy.server.storage import schema
from etcdpy.server.storage.backend import Backend

EventSink = Callable[[int, Sequence[kv_pb2.Event]], None]

RequestHandler = Callable[[Batch, Any], Message]
"""Applies one request kind (given the set field's message) inside the batch, returning the response.

It must raise its EtcdError before writing anything, so a failed request
changes nothing.  Write keys through ``with batch.writing() as w`` (one
revision, events published) and other state through ``batch.wb`` (same atomic
batch).
"""

_NOT_REQUESTS = frozenset({"header", "ID"})

_APPLIED_INDEX_KEY = schema.META + schema.META_APPLIED_INDEX


class ApplyResult(NamedTuple):
    """ApplyResult is one applied entry's outcome: the proposal id and its response or error."""

    request_id: int  # InternalRaftRequest.header.ID
    response: Message | errors.EtcdError  # response.header.revision is set; other header fields are not


class Applier:
    """Applier applies committed entries to the store and serves local reads of it.

    Single writer: call `apply` from one place at a time.  `range`, `hash` and
    `hash_kv` read a snapshot and may run concurrently with `apply`.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        lease_lookup: LeaseLookup | None = None,
        on_events: EventSink | None = None,
        handlers: Mapping[str, RequestHandler] | None = None,
        store: KVStore | None = None,
        on_reload: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.backend = backend
        # A member builds its store first (its watch hub reads it); tests may let the applier make one.
        self.store = store if store is not None else KVStore(backend, leases=lease_lookup)
        assert store is None or (store.backend is backend and lease_lookup is None), "one store, one backend"
        self.on_events = on_events
        # Called after `reload`: state kept beside the store (leases, watchers) must follow a new database.
        self.on_reload = list(on_reload)
        self.alarms = Alarms(backend)  # applied state too: refuses requests under NOSPACE/CORRUPT
        self._handlers: dict[str, RequestHandler] = {
            "put": self._put,
            "delete_range": self._delete_range,
            "txn": self._txn,
            "range": self._range,
            "compaction": self._compaction,
            "alarm": lambda batch, req: self.alarms.apply(batch.wb, req),
        }
        for kind, handler in (handlers or {}).items():
            self.register(kind, handler)
        self._applied_index = 0
        self._load()

    def _load(self) -> None:
        raw = self.backend.get(_APPLIED_INDEX_KEY)
        self._applied_index = int.from_bytes(raw, "big") if raw is not None else 0
        self.store.reload()
        self.alarms.reload()

    def reload(self) -> None:
        """Re-read the applied index and revisions after the database content was replaced (snapshot).

        Then the `on_reload` callbacks re-read the state kept beside the store.
        """
        self._load()
        for callback in self.on_reload:
            callback()

    @property
    def applied_index(self) -> int:
        """Raft index of the last applied entry (0 for a new store); stored with the data."""
        return self._applied_index

    @property
    def current_revision(self) -> int:
        return self.store.current_revision

    @property
    def compact_revision(self) -> int:
        """The last scheduled compaction revision; -1 if the store was never compacted."""
        return self.store.compact_revision

    def apply(self, entries: Sequence[tuple[int, bytes]]) -> list[ApplyResult]:
        """Apply (raft index, InternalRaftRequest bytes) entries in one write batch.

        Entries at or below the applied index are skipped (replays after a
        restart); ``b""`` is an empty entry (e.g. a new leader's) that only moves
        the applied index.  Returns one result per applied non-empty entry, in order.
        """
        results: list[ApplyResult] = []
        new_index = self._applied_index
        if all(index <= new_index for index, _ in entries):
            return results  # a pure replay: nothing to write
        with self.backend.batch(sync=False) as wb:
            batch = self.store.begin(wb)
            for index, data in entries:
                if index <= new_index:
                    continue
                new_index = index
                if data:
                    req = raft_internal_pb2.InternalRaftRequest.FromString(data)
                    results.append(ApplyResult(req.header.ID or req.ID, self._apply_one(batch, req)))
            batch.finish()
            wb.put(_APPLIED_INDEX_KEY, new_index.to_bytes(8, "big"))
        self.store.published(batch)
        self._applied_index = new_index
        if self.on_events is not None:
            for rev, events in batch.events:
                self.on_events(rev, events)
        return results

    def register(self, kind: str, handler: RequestHandler) -> None:
        """Apply InternalRaftRequests whose set field is ``kind`` (e.g. "lease_revoke") with ``handler``."""
        self._handlers[kind] = handler

    def _apply_one(
        self, batch: Batch, req: raft_internal_pb2.InternalRaftRequest
    ) -> Message | errors.EtcdError:
        for field, value in req.ListFields():
            if field.name in _NOT_REQUESTS:
                continue
            handler = self._handlers.get(field.name)
            if handler is None:
                break
            try:
                self.alarms.refuse(field.name, value)
                return handler(batch, value)
            except errors.EtcdError as exc:
                return exc
        return errors.ErrNotCapable()  # a request kind nothing here handles (yet)

    def _put(self, batch: Batch, req: rpc_pb2.PutRequest) -> rpc_pb2.PutResponse:
        with batch.writing() as w:
            ops.check_put(w, req, self.store.leases, lease_first=True)
            return ops.put_request(w, req)

    def _delete_range(self, batch: Batch, req: rpc_pb2.DeleteRangeRequest) -> rpc_pb2.DeleteRangeResponse:
        with batch.writing() as w:
            return ops.delete_request(w, req)

    def _txn(self, batch: Batch, req: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
        with batch.writing() as w:
            return txn.txn_request(w, req, self.store.leases)

    def _range(self, batch: Batch, req: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
        return ops.range_request(batch.reader(), req)

    def _compaction(self, batch: Batch, req: rpc_pb2.CompactionRequest) -> rpc_pb2.CompactionResponse:
        batch.compact(req.revision)
        resp = rpc_pb2.CompactionResponse()
        resp.header.revision = batch.rev
        return resp

    # ---- reads and maintenance (not through raft) ----

    def range(self, req: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
        """Serve a range from the local store; header.revision is the store's current revision."""
        with self.store.read() as reader:
            return ops.range_request(reader, req)

    def read_only_txn(self, req: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
        """Serve a txn that only reads from the local store, as `range` serves a range."""
        with self.store.read() as reader:
            return txn.read_only_txn(reader, req, self.store.leases)

    def hash(self) -> int:
        return self.store.hash()

    def hash_kv(self, revision: int) -> tuple[int, int, int]:
        """(hash, compact_revision, hash_revision); see `KVStore.hash_kv`."""
        return self.store.hash_kv(revision)

    @property
    def compaction_pending(self) -> bool:
        """Whether a compaction still has versions to delete; drive it with `compact_step`."""
        return self.store.compaction_pending

    def compact_step(self, max_records: int = 1000) -> bool:
        """One bounded batch of physical compaction; True when none is left (see `KVStore.compact_step`)."""
        return self.store.compact_step(max_records)
