"""Server-side concurrency recipes (etcd's v3lock and v3election): lock, election, and their keyspace."""

from etcdpy.server.recipes.keyspace import Keyspace, Turn, contender_key, prefix_of

__all__ = ["Keyspace", "Turn", "contender_key", "prefix_of"]
