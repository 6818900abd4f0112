"""LeaseLookup is what the MVCC store needs from a lessor; the lessor implements it.

The store defines the protocol (the consumer owns the interface, so mvcc never
imports the lease package).  `NoLeases` is the default: no lease exists, so a
put with a non-zero lease fails with ErrLeaseNotFound, as etcd does for an
unknown lease.
"""

from __future__ import annotations

from typing import Protocol


class LeaseLookup(Protocol):
    """LeaseLookup answers whether a lease exists and hears which keys a lease gains or loses.

    `attach` and `detach` run while an apply batch is built, before it is written;
    a crash before the write replays the same entries after restart, so both
    must be idempotent (set semantics).
    """

    def exists(self, lease_id: int) -> bool: ...

    def attach(self, key: bytes, lease_id: int) -> None: ...

    def detach(self, key: bytes, lease_id: int) -> None: ...


class NoLeases:
    """NoLeases is the lease lookup of a store without a lessor: no lease ever exists."""

    def exists(self, lease_id: int) -> bool:
        return False

    def attach(self, key: bytes, lease_id: int) -> None:
        raise AssertionError("attach without a lessor: puts with a lease are rejected before writing")

    def detach(self, key: bytes, lease_id: int) -> None:
        """Nothing to detach: no key can hold a lease without a lessor."""
