"""Leases: the lessor (apply + leader countdown) and the driver that proposes revokes and checkpoints."""

from etcdpy.server.lease.driver import LeaseDriver
from etcdpy.server.lease.lessor import MAX_LEASE_TTL, NO_LEASE, Clock, Lease, Lessor, lease_key, min_lease_ttl

__all__ = [
    "MAX_LEASE_TTL",
    "NO_LEASE",
    "Clock",
    "Lease",
    "LeaseDriver",
    "Lessor",
    "lease_key",
    "min_lease_ttl",
]
