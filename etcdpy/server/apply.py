"""Applier: committed raft entries -> MVCC store changes, deterministically.

`Applier.apply` takes a run of committed entries and writes all their effects,
plus the new applied index, in ONE unsynced LevelDB write batch: after a crash
the store holds exactly the entries up to the stored applied index, and replay
starts right after it.  Nothing applied reads the clock or depends on the member,
so every member computes the same store and the same HashKV (the clock only
times each batch's write, for etcd_disk_backend_commit_duration_seconds).

Each entry's request goes down a chain, as in etcd's applier (etcdserver/apply.go):

    corrupt -> capped -> *layers -> the handler of the request's kind

- `Layer`: gets (batch, request, apply_next) and answers the request itself
  (refuses it) or passes it on.  The first two are the applied alarms
  (`Alarms.corrupt_layer`, `Alarms.capped_layer`, etcd's applierV3Corrupt and
  applierV3Capped).  The constructor's ``layers`` come next: the place of auth's
  permission check (etcd's authApplierV3), so adding it is one entry in the
  ``layers`` the member passes.  etcd's quotaApplierV3 has no counterpart: it
  reads this member's disk, so the quota is checked before proposing, by the
  services that admit writes (`etcdpy.server.quota`), never while applying.
- `RequestHandler`: the innermost step for one `RequestKind`.  The applier's own
  (range, put, delete_range, txn, compaction, alarm) plus the ``handlers`` it is
  given (the lessor's, membership's, auth's); a kind in `NOT_SERVED`, or one nothing
  handles, is answered ErrNotCapable.  `Applier.unhandled_kinds` names the
  latter, and a test requires it empty for the member as it is built.

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

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from google.protobuf.message import Message

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server import raft_requests as kinds
from etcdpy.server.alarm import Alarms
from etcdpy.server.metrics import NO_METRICS, KvCounts, Observe
from etcdpy.server.mvcc import ops, txn
from etcdpy.server.mvcc.kvstore import KVStore
from etcdpy.server.mvcc.leases import LeaseLookup
from etcdpy.server.mvcc.writer import Batch
from etcdpy.server.raft_requests import NOT_SERVED, REQUEST_KINDS, Request, RequestKind
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

ApplyFn = Callable[[Batch, Request], Message]
"""The rest of the chain below a layer: applies `Request` in the batch, returns its response."""

Layer = Callable[[Batch, Request, ApplyFn], Message]
"""A layer of the chain: raises the request's EtcdError itself, or returns ``apply_next(batch, request)``.

Like a handler, it must not write before it raises, and it must read only
applied state (never the clock, never this member's own settings).
"""

_APPLIED_INDEX_KEY = schema.META + schema.META_APPLIED_INDEX


class ApplyResult(NamedTuple):
    """ApplyResult is one applied entry's outcome: the proposal id and its response or error."""

    request_id: int  # InternalRaftRequest.header.ID
    response: Message | errors.EtcdError  # response.header.revision is set; other header fields are not


def _link(layer: Layer, apply_next: ApplyFn) -> ApplyFn:
    def apply(batch: Batch, request: Request) -> Message:
        return layer(batch, request, apply_next)

    return apply


class Applier:
    """Applier applies committed entries to the store and serves local reads of it.

    Single writer: call `apply` from one place at a time.  `range`, `hash` and
    `hash_kv` read a snapshot and may run concurrently with `apply`.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        store: KVStore | None = None,
        lease_lookup: LeaseLookup | None = None,
        handlers: Mapping[RequestKind, RequestHandler] | None = None,
        layers: Sequence[Layer] = (),
        on_events: EventSink | None = None,
        on_reload: Sequence[Callable[[], None]] = (),
        commit_seconds: Observe = NO_METRICS.backend_commit_seconds,
        kv_counts: KvCounts = NO_METRICS.kv,
    ) -> None:
        """Apply to `backend`'s store; `handlers` apply the kinds beyond the KV ones (leases, membership).

        `layers` sit between the alarms and the handlers, outermost first (auth's goes there).
        Each batch's write time goes to `commit_seconds` (etcd_disk_backend_commit_duration_seconds).
        """
        self.backend = backend
        # A member builds its store first (its watch hub reads it); tests may let the applier make one.
        self.store = store if store is not None else KVStore(backend, leases=lease_lookup)
        assert store is None or (store.backend is backend and lease_lookup is None), "one store, one backend"
        self.on_events = on_events
        self.commit_seconds = commit_seconds
        self.kv_counts = kv_counts  # etcd_mvcc_range_total, _delete_total, _txn_total
        # Called after `reload`: state kept beside the store (leases, watchers) must follow a new database.
        self.on_reload = tuple(on_reload)
        self.alarms = Alarms(backend)  # applied state too: its layers refuse requests under NOSPACE/CORRUPT
        self._handlers: dict[RequestKind, RequestHandler] = {
            kinds.RANGE: self._range,
            kinds.PUT: self._put,
            kinds.DELETE_RANGE: self._delete_range,
            kinds.TXN: self._txn,
            kinds.COMPACTION: self._compaction,
            kinds.ALARM: lambda batch, req: self.alarms.apply(batch.wb, req),
        }
        for kind, handler in (handlers or {}).items():
            assert kind in REQUEST_KINDS and kind not in NOT_SERVED, f"no handler belongs to {kind!r}"
            assert kind not in self._handlers, f"{kind!r} is the applier's own"
            self._handlers[kind] = handler
        self._apply_request: ApplyFn = self._dispatch
        for layer in reversed((self.alarms.corrupt_layer, self.alarms.capped_layer, *layers)):
            self._apply_request = _link(layer, self._apply_request)
        self._applied_index = 0
        self._load()

    def _load(self) -> None:
        raw = self.backend.get(_APPLIED_INDEX_KEY)
        self._applied_index = int.from_bytes(raw, "big") if raw is not None else 0
        self.store.reload()
        self.alarms.reload()

    def pin_reads(self) -> None:
        """Serve reads from the state as it is now until `reload` (an install replaces it meanwhile)."""
        self.store.pin()

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
        started = time.perf_counter()  # etcd_server_slow_apply_total
        with self.backend.batch(sync=False) as wb:
            batch = self.store.begin(wb)
            for index, data in entries:
                if index <= new_index:
                    continue
                new_index = index
                if data:
                    req = raft_internal_pb2.InternalRaftRequest.FromString(data)
                    results.append(ApplyResult(req.header.ID or req.ID, self._apply_one(batch, req, index)))
            batch.finish()
            wb.put(_APPLIED_INDEX_KEY, new_index.to_bytes(8, "big"))
            # Measured, never applied: the clock only times the write that ends the block.
            writing = time.perf_counter()
        self.commit_seconds.observe(time.perf_counter() - writing)
        self.kv_counts.applied(time.perf_counter() - started)
        self.store.published(batch)
        self._applied_index = new_index
        if self.on_events is not None:
            for rev, events in batch.events:
                self.on_events(rev, events)
        return results

    @property
    def unhandled_kinds(self) -> frozenset[RequestKind]:
        """Kinds with no handler and not in `NOT_SERVED` either: answered ErrNotCapable, by omission."""
        return REQUEST_KINDS - self._handlers.keys() - NOT_SERVED

    def _apply_one(
        self, batch: Batch, entry: raft_internal_pb2.InternalRaftRequest, index: int
    ) -> Message | errors.EtcdError:
        request = Request.of(entry, index)
        if request is None:
            return errors.ErrNotCapable()  # no request field this build knows (a newer member's)
        try:
            return self._apply_request(batch, request)
        except errors.EtcdError as exc:
            return exc

    def _dispatch(self, batch: Batch, request: Request) -> Message:
        """The innermost step: the handler of the request's kind."""
        handler = self._handlers.get(request.kind)
        if handler is None:
            raise errors.ErrNotCapable()  # NOT_SERVED, or nothing was given for it (a test's applier)
        return handler(batch, request.body)

    def _put(self, batch: Batch, req: rpc_pb2.PutRequest) -> rpc_pb2.PutResponse:
        with batch.writing() as w:
            ops.check_put(w, req, self.store.leases, lease_first=True)
            self.kv_counts.put(req)
            return ops.put_request(w, req)

    def _delete_range(self, batch: Batch, req: rpc_pb2.DeleteRangeRequest) -> rpc_pb2.DeleteRangeResponse:
        with batch.writing() as w:
            self.kv_counts.delete(req)
            return ops.delete_request(w, req)

    def _txn(self, batch: Batch, req: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
        with batch.writing() as w:
            return self.kv_counts.txn(req, txn.txn_request(w, req, self.store.leases), writes=True)

    def _range(self, batch: Batch, req: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
        self.kv_counts.range()
        return ops.range_request(batch.reader(), req)

    def _compaction(self, batch: Batch, req: rpc_pb2.CompactionRequest) -> rpc_pb2.CompactionResponse:
        batch.compact(req.revision)
        self.kv_counts.range()  # etcd reads its "compaction" key back through a range
        resp = rpc_pb2.CompactionResponse()
        resp.header.revision = batch.rev
        return resp

    # ---- reads and maintenance (not through raft) ----

    def range(self, req: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
        """Serve a range from the local store; header.revision is the store's current revision."""
        self.kv_counts.range()
        with self.store.read() as reader:
            return ops.range_request(reader, req)

    def read_only_txn(self, req: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
        """Serve a txn that only reads from the local store, as `range` serves a range."""
        with self.store.read() as reader:
            return self.kv_counts.txn(req, txn.read_only_txn(reader, req, self.store.leases), writes=False)

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
