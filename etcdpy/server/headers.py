"""ResponseHeaders: the header every response of a member carries.

A header names the cluster and the member that answered, the raft term the
member has persisted, and the store revision the answer reflects.  It is built
before the parts that answer (the watch hub, the services, EtcdServer), from
the three things it reads, so none of them needs another to fill a header.
"""

from __future__ import annotations

from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.server.consensus.membership import Cluster
from etcdpy.server.mvcc.kvstore import KVStore
from etcdpy.server.storage.raftlog import RaftLogStorage


class ResponseHeaders:
    """ResponseHeaders fills response headers from the member table, the raft log and the store."""

    def __init__(self, cluster: Cluster, raftlog: RaftLogStorage, store: KVStore) -> None:
        self._cluster = cluster
        self._raftlog = raftlog  # its hard state is the term raft persisted, as the node reports it
        self._store = store

    def fill(self, header: rpc_pb2.ResponseHeader) -> None:
        """Set the ids and term; the revision is the store's unless the answer already set its own."""
        header.cluster_id = self._cluster.cluster_id
        header.member_id = self._cluster.local_id
        header.raft_term = self._raftlog.hard_state.term
        if not header.revision:
            header.revision = self._store.current_revision

    def new(self) -> rpc_pb2.ResponseHeader:
        """A header filled as of now."""
        header = rpc_pb2.ResponseHeader()
        self.fill(header)
        return header
