"""Keyspaces of the member's single LevelDB, declared once (like etcd's bucket.go).

Every key in the database starts with exactly one of these one-byte prefixes;
the module that owns a keyspace encodes what follows the prefix.

==========  =====================================  =================================
prefix      keyspace                               owner
==========  =====================================  =================================
``m``       meta: applied index, ids, versions     backend, apply, mvcc, consensus
``h``       MVCC history: revision -> record       server.mvcc
``i``       MVCC key index: key + inverted rev     server.mvcc
``c``       MVCC current: key -> latest record     server.mvcc
``k``       MVCC live keys: key -> empty (counts)  server.mvcc
``w``       raft log (WAL) entries by index        storage.raftlog
``s``       raft hard state, snapshot metadata     storage.raftlog
``l``       leases                                 server.lease
``a``       auth: users, roles, settings           server.auth
``b``       members                                server.consensus.membership
``x``       alarms                                 server.alarm
==========  =====================================  =================================
"""

from __future__ import annotations

META = b"m"
HISTORY = b"h"
KEY_INDEX = b"i"
CURRENT = b"c"
LIVE_KEYS = b"k"
WAL = b"w"
RAFT_STATE = b"s"
LEASES = b"l"
AUTH = b"a"
MEMBERS = b"b"
ALARMS = b"x"

_PREFIXES = (META, HISTORY, KEY_INDEX, CURRENT, LIVE_KEYS, WAL, RAFT_STATE, LEASES, AUTH, MEMBERS, ALARMS)
assert len(set(_PREFIXES)) == len(_PREFIXES) and all(len(p) == 1 for p in _PREFIXES), "one distinct byte each"

# meta keys (after the META prefix)
META_FORMAT = b"format"  # data-dir format marker; a foreign or newer format refuses to open
META_APPLIED_INDEX = b"applied_index"  # raft index of the last applied entry, written with its effects
META_CLUSTER_ID = b"cluster_id"
META_MEMBER_ID = b"member_id"
# A received raft snapshot whose state is being installed (storage.snapshot): set before the first
# bounded batch, deleted by the batch that records the snapshot point; at start it means "finish it".
META_SNAPSHOT_INSTALL = b"snapshot_install"

FORMAT_VERSION = b"etcdpy-data-v1"
