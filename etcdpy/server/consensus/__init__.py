"""The Raft glue of a member: everything between `etcdpy.raft` and the applier.

- `node`: RaftNode, the member's Ready loop over RawNode (asyncio);
- `replication`: Replication, the node wired to the peer transport, the member table and snapshots;
- `transport`: PeerTransport, raft messages and snapshots between members;
- `membership`: Cluster, the member table and its IDs;
- `memberops`: MemberOps, member add/remove/update/promote through the log.
"""
