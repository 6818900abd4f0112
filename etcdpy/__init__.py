"""etcdpy: etcd rebuilt in Python, wire-compatible with etcd's v3 API.

Importing it changes nothing in the process: grpc's settings are set by ``etcdpy
server`` alone (see `etcdpy.grpcenv`).
"""

__version__ = "0.1.0"
# The etcd release whose API and output etcdpy matches.
ETCD_API_VERSION = "3.4"
