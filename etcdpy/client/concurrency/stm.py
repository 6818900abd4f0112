"""Software transactional memory over etcd: `run_stm` retries a function's reads and writes until they commit.

The function reads keys through `STM.get`, buffers writes with `STM.put` and
`STM.delete`, and never touches the server directly; `run_stm` then commits the
buffered writes in one txn guarded by compares on what was read, and runs the
function again from scratch whenever another writer got in between.  The
algorithm and the isolation levels are those of etcd's Go ``concurrency.NewSTM``::

    from etcdpy.client import Client
    from etcdpy.client.concurrency import STM, Isolation, run_stm

    def transfer(stm: STM) -> None:
        a, b = int(stm.get("accounts/a") or 0), int(stm.get("accounts/b") or 0)
        stm.put("accounts/a", str(a - 10))
        stm.put("accounts/b", str(b + 10))

    with Client("127.0.0.1:2379") as client:
        run_stm(client, transfer, isolation=Isolation.SERIALIZABLE, prefetch=["accounts/a", "accounts/b"])

The function may run several times, so it must have no effect besides its
calls on the STM.  An exception it raises aborts the transaction (nothing is
written) and propagates, as does a failed request to the server.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Protocol

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.client import requests as rq
from etcdpy.client.client import Client
from etcdpy.client.requests import Bytes, CompareResult, CompareTarget

__all__ = ["STM", "Isolation", "run_stm"]


class Isolation(enum.Enum):
    """How concurrent transactions may interfere (etcd's ``concurrency.Isolation``), strongest first."""

    # Reads see one snapshot (the first read's revision); the commit fails if any key
    # read or written changed since that snapshot.
    SERIALIZABLE_SNAPSHOT = "serializable-snapshot"
    # Reads see one snapshot; the commit fails if any key read changed since it was read.
    SERIALIZABLE = "serializable"
    # Each key is read once (later reads repeat it); the commit fails if any key read changed.
    REPEATABLE_READS = "repeatable-reads"
    # Each key is read once; the commit never fails (writes may overwrite concurrent ones).
    READ_COMMITTED = "read-committed"


class STM(Protocol):
    """What the function given to `run_stm` may do: read keys and buffer writes."""

    def get(self, key: Bytes) -> bytes:
        """The key's value (``b""`` if absent), as written by this transaction or read from the server."""
        ...

    def rev(self, key: Bytes) -> int:
        """The modification revision of the key as read (0 if absent)."""
        ...

    def put(self, key: Bytes, value: Bytes, *, lease: int = 0) -> None:
        """Buffer a write of ``value`` under ``key`` (attached to ``lease`` if not 0)."""
        ...

    def delete(self, key: Bytes) -> None:
        """Buffer the deletion of ``key``."""
        ...


class _Transaction:
    """One attempt's read set and write set, and the commit that checks them."""

    def __init__(self, client: Client, isolation: Isolation) -> None:
        self.client = client
        self.isolation = isolation
        # key -> its read (a RangeResponse whose header gives the revision it was read at)
        self.reads: dict[bytes, pb.RangeResponse] = {}
        # key -> (value seen by later gets, the op that commits it); a delete reads back as b""
        self.writes: dict[bytes, tuple[bytes, pb.RequestOp]] = {}
        # Reads kept from the last failed commit (serializable levels), used before asking again.
        self.prefetched: dict[bytes, pb.RangeResponse] = {}
        # invariant: 0 until the first read of a serializable attempt, then that read's revision.
        self.snapshot = 0

    def reset(self) -> None:
        """Forget the last attempt's reads and writes (not what its failed commit prefetched)."""
        self.reads = {}
        self.writes = {}
        self.snapshot = 0

    def get(self, key: Bytes) -> bytes:
        k = rq.to_bytes(key)
        if k in self.writes:
            return self.writes[k][0]
        kvs = self._read(k).kvs
        return bytes(kvs[0].value) if kvs else b""

    def rev(self, key: Bytes) -> int:
        kvs = self._read(rq.to_bytes(key)).kvs
        return int(kvs[0].mod_revision) if kvs else 0

    def put(self, key: Bytes, value: Bytes, *, lease: int = 0) -> None:
        k, v = rq.to_bytes(key), rq.to_bytes(value)
        self.writes[k] = (v, rq.op_put(rq.put_request(k, v, lease=lease)))

    def delete(self, key: Bytes) -> None:
        k = rq.to_bytes(key)
        self.writes[k] = (b"", rq.op_delete(rq.delete_request(k)))

    def fetch(self, keys: Iterable[Bytes]) -> None:
        """Read several keys in one round trip (``prefetch``)."""
        missing = [k for k in dict.fromkeys(rq.to_bytes(key) for key in keys) if k not in self.reads]
        for k in [k for k in missing if k in self.prefetched]:
            self._remember(k, self.prefetched.pop(k))
        missing = [k for k in missing if k not in self.reads]
        if missing:
            response = self.client.txn(success=[rq.op_get(self._range(k)) for k in missing])
            for k, op in zip(missing, response.responses, strict=True):
                self._remember(k, op.response_range)

    def commit(self) -> pb.TxnResponse | None:
        """Write the buffered writes if nothing read (or written) changed meanwhile; None on conflict."""
        read_keys = list(self.reads)
        response = self.client.txn(
            self._conflict_compares(),
            [op for _, op in self.writes.values()],
            # On conflict, read the keys again at once: the retry starts from them without a round trip.
            [rq.op_get(rq.range_request(k)) for k in read_keys] if self._serializable() else [],
        )
        if response.succeeded:
            return response
        if self._serializable():
            self.prefetched = {
                k: op.response_range for k, op in zip(read_keys, response.responses, strict=True)
            }
        return None

    def _read(self, key: bytes) -> pb.RangeResponse:
        if key not in self.reads:
            if key in self.prefetched:
                self._remember(key, self.prefetched.pop(key))
            else:
                self._remember(key, self.client.send_range(self._range(key)))
        return self.reads[key]

    def _remember(self, key: bytes, response: pb.RangeResponse) -> None:
        self.reads[key] = response
        if self._serializable() and self.snapshot == 0:
            # The transaction's snapshot is the revision of its first read.
            self.snapshot = response.header.revision

    def _range(self, key: bytes) -> pb.RangeRequest:
        if self.isolation in (Isolation.REPEATABLE_READS, Isolation.READ_COMMITTED):
            return rq.range_request(key, serializable=True)
        if self.snapshot:
            return rq.range_request(key, revision=self.snapshot, serializable=True)
        return rq.range_request(key)

    def _serializable(self) -> bool:
        return self.isolation in (Isolation.SERIALIZABLE_SNAPSHOT, Isolation.SERIALIZABLE)

    def _conflict_compares(self) -> list[pb.Compare]:
        if self.isolation == Isolation.READ_COMMITTED:
            return []
        compares = [
            rq.compare(k, CompareTarget.MOD, CompareResult.EQUAL, r.kvs[0].mod_revision if r.kvs else 0)
            for k, r in self.reads.items()
        ]
        if self.isolation == Isolation.SERIALIZABLE_SNAPSHOT:
            # Nothing may have written a key this transaction writes since its snapshot either.
            first = min((r.header.revision for r in self.reads.values()), default=2**63 - 2)
            compares += [rq.compare(k, CompareTarget.MOD, CompareResult.LESS, first + 1) for k in self.writes]
        return compares


def run_stm(
    client: Client,
    apply_fn: Callable[[STM], object],
    *,
    isolation: Isolation = Isolation.SERIALIZABLE_SNAPSHOT,
    prefetch: Iterable[Bytes] = (),
) -> pb.TxnResponse:
    """Run ``apply_fn`` against a fresh STM and commit its writes; start again on every conflict.

    ``prefetch`` names keys every attempt reads: they are fetched in one round
    trip before ``apply_fn`` runs.  Returns the response of the txn that
    committed.  An exception from ``apply_fn`` or the server aborts (nothing
    is written) and propagates.
    """
    keys = [rq.to_bytes(k) for k in prefetch]
    transaction = _Transaction(client, isolation)
    while True:
        transaction.reset()
        if keys:
            transaction.fetch(keys)
        apply_fn(transaction)
        response = transaction.commit()
        if response is not None:
            return response
