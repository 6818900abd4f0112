"""MVCC key-value store on LevelDB: revisions, key index, range/put/delete/txn, compaction, hashes.

Modules, in import order: `layout` (every byte written; the key walkthrough),
`leases` (what the store needs from a lessor), `overlay` (an unwritten batch),
`reader` (reads at any revision, through the overlay), `writer` (batches and
write transactions), `ops` and `txn` (etcd's request semantics), `compaction`,
`hashing`, `history` (events for watch catch-up), `kvstore` (the store object),
`validate` (the stateless checks the gRPC layer runs before proposing).
`etcdpy.server.apply` drives it from raft entries.
"""

from etcdpy.server.mvcc.kvstore import KVStore
from etcdpy.server.mvcc.layout import Revision
from etcdpy.server.mvcc.leases import LeaseLookup, NoLeases

__all__ = ["KVStore", "LeaseLookup", "NoLeases", "Revision"]
