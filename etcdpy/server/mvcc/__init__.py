"""MVCC key-value store on LevelDB: revisions, key index, range/put/delete/txn, compaction, hashes.

Public pieces: `KVStore` (open, read, batches, compaction, hashes), `Revision`,
`LeaseLookup`/`NoLeases` (what the store needs from a lessor) and the
stateless request checks in `validate`.  The byte layout is declared in `layout`.
"""

from etcdpy.server.mvcc.kvstore import KVStore
from etcdpy.server.mvcc.layout import Revision
from etcdpy.server.mvcc.leases import LeaseLookup, NoLeases

__all__ = ["KVStore", "LeaseLookup", "NoLeases", "Revision"]
