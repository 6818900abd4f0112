"""etcdpy: etcd rebuilt in Python, wire-compatible with etcd's v3 API.

Importing it changes nothing in the process: grpc's settings are set by ``etcdpy
server`` alone (see `etcdpy.grpcenv`).
"""

from etcdpy.version import __version__

__all__ = ["__version__"]
