"""Server-side concurrency recipes (etcd's v3lock and v3election): lock, election, and their keyspace."""

from etcdpy.server.recipes.keyspace import Keyspace, contender_key, prefix_of

__all__ = ["Keyspace", "contender_key", "prefix_of"]
