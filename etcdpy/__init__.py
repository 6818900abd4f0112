"""etcdpy: etcd rebuilt in Python, wire-compatible with etcd's v3 API."""

from etcdpy import grpcenv as _grpcenv

__version__ = "0.1.0"
# The etcd release whose API and output etcdpy matches.
ETCD_API_VERSION = "3.4"

# Before anything imports grpc: it reads its settings from the environment once.
_grpcenv.apply()
