"""etcdpy: etcd rebuilt in Python, wire-compatible with etcd's v3 API."""

__version__ = "0.1.0"
# The etcd release whose API and output etcdpy matches.
ETCD_API_VERSION = "3.4"
