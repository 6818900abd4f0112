"""A member's apply side with a lessor on a real LevelDB, and a fake clock, for lease and watch tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server.apply import Applier
from etcdpy.server.lease import Lessor
from etcdpy.server.storage.backend import Backend


class FakeClock:
    """Seconds that move only when a test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Member:
    """Backend + lessor + applier; `propose` applies one request as the next raft entry."""

    def __init__(self, data_dir: Path, *, min_ttl: int = 2, clock: FakeClock | None = None) -> None:
        self.data_dir = data_dir
        self.min_ttl = min_ttl
        self.clock = clock or FakeClock()
        self.events: list[tuple[int, list[kv_pb2.Event]]] = []
        self._open()

    def _open(self) -> None:
        self.backend = Backend(self.data_dir)
        self.lessor = Lessor(self.backend, min_ttl=self.min_ttl, clock=self.clock)
        self.applier = Applier(
            self.backend,
            lease_lookup=self.lessor,
            on_events=lambda rev, evs: self.events.append((rev, list(evs))),
            handlers=self.lessor.handlers(),
        )
        self.lessor.restore_keys(self.applier.store.leased_keys())
        self.index = self.applier.applied_index

    def reopen(self) -> None:
        self.backend.close()
        self._open()

    def close(self) -> None:
        self.backend.close()

    def apply(self, **request: Any) -> Any:
        """Apply one InternalRaftRequest field (e.g. ``put=PutRequest(...)``); raise its EtcdError."""
        self.index += 1
        data = raft_internal_pb2.InternalRaftRequest(**request).SerializeToString()
        [result] = self.applier.apply([(self.index, data)])
        if isinstance(result.response, errors.EtcdError):
            raise result.response
        return result.response

    async def propose(self, request: raft_internal_pb2.InternalRaftRequest) -> Any:
        """The server's propose path in miniature (one member: committed = applied)."""
        field = request.ListFields()[0][0].name
        return self.apply(**{field: getattr(request, field)})

    def grant(self, lease_id: int, ttl: int) -> rpc_pb2.LeaseGrantResponse:
        req = self.lessor.check_grant(rpc_pb2.LeaseGrantRequest(ID=lease_id, TTL=ttl))
        response: rpc_pb2.LeaseGrantResponse = self.apply(lease_grant=req)
        return response

    def put(self, key: bytes, value: bytes = b"v", lease: int = 0) -> rpc_pb2.PutResponse:
        response: rpc_pb2.PutResponse = self.apply(put=rpc_pb2.PutRequest(key=key, value=value, lease=lease))
        return response

    def get(self, key: bytes) -> kv_pb2.KeyValue | None:
        kvs = self.applier.range(rpc_pb2.RangeRequest(key=key)).kvs
        return kvs[0] if kvs else None
