"""Harness drives an Applier on a temporary LevelDB the way the server does, one raft entry per request.

Other tests import it (``from test_mvcc_harness import Harness``); the tests in
this module check the harness's own promises: reopening keeps everything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server.apply import Applier, ApplyResult, Layer, RequestHandler
from etcdpy.server.mvcc.leases import LeaseLookup
from etcdpy.server.raft_requests import RequestKind
from etcdpy.server.storage.backend import Backend

pb = rpc_pb2


class FakeLeases:
    """A lessor stand-in: a fixed set of leases, recording which keys each one holds."""

    def __init__(self, *lease_ids: int) -> None:
        self.ids = set(lease_ids)
        self.keys: dict[int, set[bytes]] = {i: set() for i in lease_ids}

    def exists(self, lease_id: int) -> bool:
        return lease_id in self.ids

    def attach(self, key: bytes, lease_id: int) -> None:
        self.keys[lease_id].add(key)

    def detach(self, key: bytes, lease_id: int) -> None:
        self.keys[lease_id].discard(key)


class Harness:
    """An Applier on ``path`` fed one InternalRaftRequest per raft entry, with helpers per request kind."""

    def __init__(
        self,
        path: Path,
        leases: LeaseLookup | None = None,
        handlers: Mapping[RequestKind, RequestHandler] | None = None,
        layers: Sequence[Layer] = (),
    ) -> None:
        self.path = path
        self.leases = leases
        self.handlers = handlers
        self.layers = layers
        self.events: list[tuple[int, list[kv_pb2.Event]]] = []
        self._open()

    def _open(self) -> None:
        self.backend = Backend(self.path)
        try:
            self.applier = Applier(
                self.backend,
                lease_lookup=self.leases,
                handlers=self.handlers,
                layers=self.layers,
                on_events=self._on_events,
            )
        except BaseException:
            self.backend.close()  # a refused Applier must not leave the LevelDB locked behind it
            raise
        self.next_id = 1

    def _on_events(self, rev: int, events: Any) -> None:
        self.events.append((rev, list(events)))

    def reopen(self) -> None:
        self.backend.close()
        self._open()

    def close(self) -> None:
        self.backend.close()

    @staticmethod
    def entry(request_id: int, **fields: Any) -> bytes:
        req = raft_internal_pb2.InternalRaftRequest(**fields)
        req.header.ID = request_id
        return req.SerializeToString()

    def apply_entries(self, *requests: dict[str, Any]) -> list[ApplyResult]:
        """Apply the requests as consecutive raft entries in one apply call."""
        entries: list[tuple[int, bytes]] = []
        for fields in requests:
            entries.append(
                (self.applier.applied_index + len(entries) + 1, self.entry(self.next_id, **fields))
            )
            self.next_id += 1
        return self.applier.apply(entries)

    def apply(self, **fields: Any) -> Any:
        """Apply one request; return its response or raise its EtcdError."""
        (result,) = self.apply_entries(fields)
        if isinstance(result.response, errors.EtcdError):
            raise result.response
        return result.response

    def put(self, key: bytes, value: bytes = b"", **kw: Any) -> rpc_pb2.PutResponse:
        resp: rpc_pb2.PutResponse = self.apply(put=pb.PutRequest(key=key, value=value, **kw))
        return resp

    def delete(self, key: bytes, range_end: bytes = b"", **kw: Any) -> rpc_pb2.DeleteRangeResponse:
        resp: rpc_pb2.DeleteRangeResponse = self.apply(
            delete_range=pb.DeleteRangeRequest(key=key, range_end=range_end, **kw)
        )
        return resp

    def txn(self, **kw: Any) -> rpc_pb2.TxnResponse:
        resp: rpc_pb2.TxnResponse = self.apply(txn=pb.TxnRequest(**kw))
        return resp

    def compact(self, revision: int) -> rpc_pb2.CompactionResponse:
        resp: rpc_pb2.CompactionResponse = self.apply(compaction=pb.CompactionRequest(revision=revision))
        return resp

    def range(self, key: bytes, range_end: bytes = b"", **kw: Any) -> rpc_pb2.RangeResponse:
        return self.applier.range(pb.RangeRequest(key=key, range_end=range_end, **kw))

    def keys(self, key: bytes = b"\x00", range_end: bytes = b"\x00", **kw: Any) -> list[bytes]:
        return [kv.key for kv in self.range(key, range_end, **kw).kvs]

    def get(self, key: bytes, **kw: Any) -> kv_pb2.KeyValue | None:
        kvs = self.range(key, **kw).kvs
        return kvs[0] if kvs else None


def op_put(key: bytes, value: bytes = b"", **kw: Any) -> rpc_pb2.RequestOp:
    return pb.RequestOp(request_put=pb.PutRequest(key=key, value=value, **kw))


def op_del(key: bytes, range_end: bytes = b"", **kw: Any) -> rpc_pb2.RequestOp:
    return pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key, range_end=range_end, **kw))


def op_range(key: bytes, range_end: bytes = b"", **kw: Any) -> rpc_pb2.RequestOp:
    return pb.RequestOp(request_range=pb.RangeRequest(key=key, range_end=range_end, **kw))


def op_txn(**kw: Any) -> rpc_pb2.RequestOp:
    return pb.RequestOp(request_txn=pb.TxnRequest(**kw))


def test_reopen_keeps_revisions_data_and_applied_index(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.put(b"a", b"1")
    h.put(b"b", b"2")
    h.delete(b"a")
    h.compact(3)
    before = (h.applier.applied_index, h.applier.current_revision, h.applier.compact_revision)
    h.reopen()
    assert (h.applier.applied_index, h.applier.current_revision, h.applier.compact_revision) == before
    assert before == (4, 4, 3)
    assert h.keys() == [b"b"]
    assert h.get(b"a", revision=3) is not None
    h.close()


def test_empty_store_starts_at_revision_one_never_compacted(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    assert (h.applier.applied_index, h.applier.current_revision, h.applier.compact_revision) == (0, 1, -1)
    assert h.range(b"a").header.revision == 1
    assert h.put(b"a").header.revision == 2
    h.close()
