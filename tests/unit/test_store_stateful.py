"""The store against a tiny in-memory model over random operation sequences (hypothesis).

The model keeps the whole key space at every revision in dicts and answers
each request from them with etcd's rules written out plainly; every response
of the real store (puts, deletes, txns with compares and nested txns, ranges at
past revisions with limits, sorting and filters, compactions) must equal the
model's, across batches of several entries, physical compaction steps and
close-and-reopen restarts.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from test_mvcc_harness import FakeLeases, Harness, op_del, op_put, op_txn

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server.mvcc import layout, validate

R, C = pb.RangeRequest, pb.Compare
KEYS = [b"a", b"a\x00", b"a\x00\x01", b"a\x01", b"ab", b"b", b"b\xff", b"c"]
LEASE = 7
# LevelDB fsyncs on open; a RAM disk keeps hundreds of short-lived stores fast
_SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None


@dataclass(frozen=True)
class MKV:
    key: bytes
    create: int
    mod: int
    version: int
    value: bytes
    lease: int

    def proto(self, keys_only: bool = False) -> kv_pb2.KeyValue:
        return kv_pb2.KeyValue(
            key=self.key,
            create_revision=self.create,
            mod_revision=self.mod,
            version=self.version,
            value=b"" if keys_only else self.value,
            lease=self.lease,
        )


def in_range(k: bytes, key: bytes, end: bytes) -> bool:
    if not end:
        return k == key
    if end == b"\x00":
        return k >= key
    return key <= k < end


class Model:
    """Every revision's whole state; etcd's request rules in the plainest form."""

    def __init__(self) -> None:
        self.rev = 1
        self.compact = -1
        self.states: dict[int, dict[bytes, MKV]] = {1: {}}

    # ---- reads ----

    def range(self, req: pb.RangeRequest, state: dict[bytes, MKV] | None = None, now: int = 0) -> Any:
        now = now or self.rev
        rev = req.revision
        if rev > now:
            raise errors.ErrFutureRev()
        if rev <= 0:
            rev = now
        if rev < self.compact:
            raise errors.ErrCompacted()
        view = state if state is not None and rev == now else self.states[rev]
        kvs = sorted(
            (kv for k, kv in view.items() if in_range(k, req.key, req.range_end)), key=lambda kv: kv.key
        )
        resp = pb.RangeResponse(count=len(kvs))
        resp.header.revision = now
        if req.count_only:
            return resp
        filtered = any(
            (req.min_mod_revision, req.max_mod_revision, req.min_create_revision, req.max_create_revision)
        )
        if req.limit > 0 and req.sort_order == R.NONE and not filtered:
            kvs = kvs[: req.limit + 1]
        kvs = [
            kv
            for kv in kvs
            if (not req.min_mod_revision or kv.mod >= req.min_mod_revision)
            and (not req.max_mod_revision or kv.mod <= req.max_mod_revision)
            and (not req.min_create_revision or kv.create >= req.min_create_revision)
            and (not req.max_create_revision or kv.create <= req.max_create_revision)
        ]
        order = R.ASCEND if (req.sort_order == R.NONE and req.sort_target != R.KEY) else req.sort_order
        field = {R.KEY: "key", R.VERSION: "version", R.CREATE: "create", R.MOD: "mod", R.VALUE: "value"}
        if order != R.NONE:
            kvs.sort(key=lambda kv: getattr(kv, field[req.sort_target]), reverse=order == R.DESCEND)
        if req.limit > 0 and len(kvs) > req.limit:
            kvs, resp.more = kvs[: req.limit], True
        resp.kvs.extend(kv.proto(req.keys_only) for kv in kvs)
        return resp

    def compare(self, cmp: pb.Compare) -> bool:
        kvs = [kv for k, kv in self.states[self.rev].items() if in_range(k, cmp.key, cmp.range_end)]
        if not kvs and cmp.target == C.VALUE:
            return False
        field = {C.VERSION: "version", C.CREATE: "create_revision", C.MOD: "mod_revision"}
        field |= {C.VALUE: "value", C.LEASE: "lease"}
        name = field[cmp.target]
        for kv in [k.proto() for k in kvs] or [kv_pb2.KeyValue()]:
            a = getattr(kv, name)
            b = getattr(cmp, name) if cmp.WhichOneof("target_union") == name else type(a)()
            ok = {C.EQUAL: a == b, C.NOT_EQUAL: a != b, C.GREATER: a > b, C.LESS: a < b}[cmp.result]
            if not ok:
                return False
        return True

    # ---- writes: a write works on a copy of the state at revision `main` ----

    def _put(self, state: dict[bytes, MKV], main: int, req: pb.PutRequest, resp: pb.PutResponse) -> None:
        prev = state.get(req.key)
        if prev is not None and req.prev_kv:
            resp.prev_kv.CopyFrom(prev.proto())
        state[req.key] = MKV(
            key=req.key,
            create=prev.create if prev else main,
            mod=main,
            version=prev.version + 1 if prev else 1,
            value=prev.value if (prev and req.ignore_value) else req.value,
            lease=prev.lease if (prev and req.ignore_lease) else req.lease,
        )

    def _delete(
        self, state: dict[bytes, MKV], req: pb.DeleteRangeRequest, resp: pb.DeleteRangeResponse
    ) -> int:
        gone = sorted(k for k in state if in_range(k, req.key, req.range_end))
        if req.prev_kv:
            resp.prev_kvs.extend(state[k].proto() for k in gone)
        for k in gone:
            del state[k]
        resp.deleted = len(gone)
        return len(gone)

    def _commit(self, state: dict[bytes, MKV], changed: bool) -> None:
        if changed:
            self.rev += 1
            self.states[self.rev] = state

    def put(self, req: pb.PutRequest) -> pb.PutResponse:
        if req.lease and req.lease != LEASE:
            raise errors.ErrLeaseNotFound()
        if (req.ignore_value or req.ignore_lease) and req.key not in self.states[self.rev]:
            raise errors.ErrKeyNotFound()
        state = dict(self.states[self.rev])
        resp = pb.PutResponse()
        self._put(state, self.rev + 1, req, resp)
        self._commit(state, True)
        resp.header.revision = self.rev
        return resp

    def delete(self, req: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        state = dict(self.states[self.rev])
        resp = pb.DeleteRangeResponse()
        self._commit(state, self._delete(state, req, resp) > 0)
        resp.header.revision = self.rev
        return resp

    def txn(self, req: pb.TxnRequest) -> pb.TxnResponse:
        chosen = self._choose(req)
        flat = self._flatten(req, list(chosen))
        before = self.states[self.rev]
        for op in flat:
            if op.HasField("request_put"):
                p = op.request_put
                if (p.ignore_value or p.ignore_lease) and p.key not in before:
                    raise errors.ErrKeyNotFound()
                if p.lease and p.lease != LEASE:
                    raise errors.ErrLeaseNotFound()
        for op in flat:
            if op.HasField("request_range"):
                rev = op.request_range.revision
                if rev > self.rev:
                    raise errors.ErrFutureRev()
                if rev != 0 and rev < self.compact:
                    raise errors.ErrCompacted()
        state = dict(before)
        changed = [False]
        resp = pb.TxnResponse()
        self._run(req, chosen, state, changed, resp)
        self._commit(state, changed[0])
        resp.header.revision = self.rev
        return resp

    def _choose(self, req: pb.TxnRequest) -> list[bool]:
        """Branch decisions in pre-order: this txn's, then its chosen branch's nested txns'."""
        ok = all(self.compare(c) for c in req.compare)
        out = [ok]
        for op in req.success if ok else req.failure:
            if op.HasField("request_txn"):
                out += self._choose(op.request_txn)
        return out

    def _flatten(self, req: pb.TxnRequest, chosen: list[bool]) -> list[pb.RequestOp]:
        ok = chosen.pop(0)
        out: list[pb.RequestOp] = []
        for op in req.success if ok else req.failure:
            out += self._flatten(op.request_txn, chosen) if op.HasField("request_txn") else [op]
        return out

    def _run(
        self, req: pb.TxnRequest, chosen: list[bool], state: dict[bytes, MKV], changed: list[bool], resp: Any
    ) -> None:
        ok = chosen.pop(0)
        resp.succeeded = ok
        for op in req.success if ok else req.failure:
            out = resp.responses.add()
            if op.HasField("request_range"):
                out.response_range.CopyFrom(
                    self.range(op.request_range, state, self.rev + 1 if changed[0] else self.rev)
                )
            elif op.HasField("request_put"):
                self._put(state, self.rev + 1, op.request_put, out.response_put)
                changed[0] = True
                out.response_put.header.revision = self.rev + 1
            elif op.HasField("request_delete_range"):
                if self._delete(state, op.request_delete_range, out.response_delete_range):
                    changed[0] = True
                out.response_delete_range.header.revision = self.rev + 1 if changed[0] else self.rev
            else:
                out.response_txn.header.SetInParent()
                self._run(op.request_txn, chosen, state, changed, out.response_txn)

    def do_compact(self, rev: int) -> pb.CompactionResponse:
        if rev <= self.compact:
            raise errors.ErrCompacted()
        if rev > self.rev:
            raise errors.ErrFutureRev()
        self.compact = rev
        resp = pb.CompactionResponse()
        resp.header.revision = self.rev
        return resp


keys = st.sampled_from(KEYS)
ends = st.sampled_from([b"", b"", b"\x00", b"a\x00", b"a\x01", b"b", b"c", b"d"])
values = st.sampled_from([b"", b"v1", b"v2", b"\x00"])


@st.composite
def put_requests(draw: st.DrawFn) -> pb.PutRequest:
    ignore = draw(st.sampled_from(["", "", "", "value", "lease"]))
    return pb.PutRequest(
        key=draw(keys),
        value=b"" if ignore == "value" else draw(values),
        lease=0 if ignore == "lease" else draw(st.sampled_from([0, 0, 0, LEASE, 9])),
        prev_kv=draw(st.booleans()),
        ignore_value=ignore == "value",
        ignore_lease=ignore == "lease",
    )


delete_requests = st.builds(
    pb.DeleteRangeRequest,
    key=keys | st.just(b"\x00"),
    range_end=st.one_of(st.just(b""), ends),
    prev_kv=st.booleans(),
)


@st.composite
def range_requests(draw: st.DrawFn) -> pb.RangeRequest:
    filtered = draw(st.booleans())
    filt = st.one_of(st.just(0), st.integers(1, 30)) if filtered else st.just(0)
    return pb.RangeRequest(
        key=draw(keys | st.just(b"\x00")),
        range_end=draw(ends | st.just(b"\x00")),
        limit=draw(st.sampled_from([0, 1, 2, 3, -1])),
        revision=draw(st.sampled_from([0, 0, 0, -1, 1, 2])),
        sort_order=draw(st.sampled_from([R.NONE, R.NONE, R.ASCEND, R.DESCEND])),
        sort_target=draw(st.sampled_from([R.KEY, R.KEY, R.VERSION, R.CREATE, R.MOD, R.VALUE])),
        keys_only=draw(st.booleans()),
        count_only=draw(st.sampled_from([False, False, False, True])),
        min_mod_revision=draw(filt),
        max_mod_revision=draw(filt),
        min_create_revision=draw(filt),
        max_create_revision=draw(filt),
    )


@st.composite
def compares(draw: st.DrawFn) -> pb.Compare:
    target = draw(st.sampled_from([C.VERSION, C.CREATE, C.MOD, C.VALUE, C.LEASE]))
    cmp = pb.Compare(
        key=draw(keys),
        range_end=draw(ends),
        target=target,
        result=draw(st.sampled_from([C.EQUAL, C.GREATER, C.LESS, C.NOT_EQUAL])),
    )
    field = {C.VERSION: "version", C.CREATE: "create_revision", C.MOD: "mod_revision", C.LEASE: "lease"}
    if target == C.VALUE:
        cmp.value = draw(values)
    else:
        setattr(cmp, field[target], draw(st.integers(0, 12)))
    return cmp


def _ops(depth: int) -> st.SearchStrategy[pb.RequestOp]:
    leaf = st.one_of(
        put_requests().map(lambda r: op_put(r.key, r.value, lease=r.lease, ignore_value=r.ignore_value)),
        delete_requests.map(lambda r: op_del(r.key, r.range_end, prev_kv=r.prev_kv)),
        range_requests().map(lambda r: pb.RequestOp(request_range=r)),
    )
    if depth == 0:
        return leaf
    nested = st.builds(
        lambda c, s, f: op_txn(compare=c, success=s, failure=f),
        st.lists(compares(), max_size=2),
        st.lists(_ops(depth - 1), max_size=2),
        st.lists(_ops(depth - 1), max_size=2),
    )
    return st.one_of(leaf, leaf, nested)


txn_requests = st.builds(
    lambda c, s, f: pb.TxnRequest(compare=c, success=s, failure=f),
    st.lists(compares(), max_size=2),
    st.lists(_ops(1), max_size=3),
    st.lists(_ops(1), max_size=3),
)

write_requests = st.one_of(
    put_requests().map(lambda r: {"put": r}),
    delete_requests.map(lambda r: {"delete_range": r}),
    txn_requests.map(lambda r: {"txn": r}),
)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="mvcc-stateful-", dir=_SCRATCH))
        self.h = Harness(self.dir, leases=FakeLeases(LEASE))
        self.model = Model()
        self.hashes: dict[int, tuple[int, int, int]] = {}

    def teardown(self) -> None:
        self.h.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _expect(self, fields: dict[str, Any]) -> Any:
        kind, req = next(iter(fields.items()))
        try:
            if kind == "put":
                return self.model.put(req)
            if kind == "delete_range":
                return self.model.delete(req)
            if kind == "txn":
                return self.model.txn(req)
            if kind == "range":
                return self.model.range(req)
            return self.model.do_compact(req.revision)
        except errors.EtcdError as exc:
            return type(exc)

    @staticmethod
    def _proposable(requests: Any) -> list[dict[str, Any]]:
        valid = []
        for fields in requests:
            if "txn" in fields:
                try:
                    validate.check_txn_request(fields["txn"])
                except errors.EtcdError:
                    continue  # the server refuses it before proposing
            valid.append(fields)
        return valid

    def _apply(self, *requests: dict[str, Any]) -> None:
        valid = self._proposable(requests)
        expected = [self._expect(f) for f in valid]
        self._check(valid, expected)

    def _check(self, requests: list[dict[str, Any]], expected: list[Any]) -> None:
        results = self.h.apply_entries(*requests)
        got = [type(r.response) if isinstance(r.response, errors.EtcdError) else r.response for r in results]
        assert got == expected

    @initialize(pairs=st.lists(st.tuples(keys, values), min_size=3, max_size=10))
    def seed(self, pairs: list[tuple[bytes, bytes]]) -> None:
        """Start from a few keys with several versions, so ranges, sorts and limits have material."""
        self._apply(*({"put": pb.PutRequest(key=k, value=v)} for k, v in pairs))

    @rule(req=put_requests())
    def put(self, req: pb.PutRequest) -> None:
        self._apply({"put": req})

    @rule(req=delete_requests)
    def delete(self, req: pb.DeleteRangeRequest) -> None:
        self._apply({"delete_range": req})

    @rule(req=txn_requests)
    def txn(self, req: pb.TxnRequest) -> None:
        self._apply({"txn": req})

    @rule(
        reqs=st.lists(write_requests, min_size=2, max_size=4), read=range_requests(), back=st.integers(0, 4)
    )
    def several_entries_in_one_batch(
        self, reqs: list[dict[str, Any]], read: pb.RangeRequest, back: int
    ) -> None:
        """Writes, then a read of a revision the same batch may have written (through the overlay)."""
        valid = self._proposable(reqs)
        expected = [self._expect(f) for f in valid]
        read.revision = self.model.rev - back
        valid.append({"range": read})
        expected.append(self._expect({"range": read}))
        self._check(valid, expected)

    @rule(req=range_requests(), back=st.one_of(st.none(), st.integers(-1, 8)))
    def range(self, req: pb.RangeRequest, back: int | None) -> None:
        if back is not None:
            req.revision = self.model.rev - back  # a recent past revision (or the next, future one)
        try:
            expected: Any = self.model.range(req)
        except errors.EtcdError as exc:
            expected = type(exc)
        try:
            got: Any = self.h.applier.range(req)
        except errors.EtcdError as exc:
            got = type(exc)
        assert got == expected

    @rule(back=st.integers(-1, 6))
    def compact(self, back: int) -> None:
        self._apply({"compaction": pb.CompactionRequest(revision=self.model.rev - back)})

    @rule(max_records=st.integers(1, 5))
    def compact_step(self, max_records: int) -> None:
        self.h.applier.compact_step(max_records)

    @rule()
    def restart(self) -> None:
        self.h.reopen()

    @rule(rev=st.integers(0, 40))
    def hash_kv(self, rev: int) -> None:
        try:
            got = self.h.applier.hash_kv(rev)
        except errors.ErrCompacted:
            assert 0 < rev <= self.model.compact
            return
        except errors.ErrFutureRev:
            assert rev > self.model.rev
            return
        assert got[1:] == (self.model.compact, rev or self.model.rev)
        key = got[2]
        earlier = self.hashes.get(key)
        # a revision's hash only changes when a compaction passes over it
        if earlier is not None and earlier[1] == got[1]:
            assert earlier == got
        self.hashes[key] = got

    @invariant()
    def live_keys_mirror_current(self) -> None:
        db = self.h.backend.db
        current = [
            k[1:]
            for k in db.iterator(start=layout.CURRENT_START, stop=layout.CURRENT_STOP, include_value=False)
        ]
        live = [
            k[1:] for k in db.iterator(start=layout.LIVE_START, stop=layout.LIVE_STOP, include_value=False)
        ]
        assert live == current == sorted(self.model.states[self.model.rev])

    @invariant()
    def revisions_agree(self) -> None:
        assert (self.h.applier.current_revision, self.h.applier.compact_revision) == (
            self.model.rev,
            self.model.compact,
        )


StoreMachine.TestCase.settings = settings(max_examples=120, stateful_step_count=40, deadline=None)
test_store_matches_model = StoreMachine.TestCase


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_store_matches_model_long_run() -> None:
    """The same comparison over many more and longer sequences (``--long``; minutes)."""
    run_state_machine_as_test(
        StoreMachine, settings=settings(max_examples=1000, stateful_step_count=80, deadline=None)
    )
