"""The versions etcdpy reports: its own, and the etcd release whose API, output and errors it matches.

Both the command line (``etcdpy version``) and the server (Status, the cluster
version its members agree on) read them here.
"""

__version__ = "0.1.0"

ETCD_RELEASE = "3.4.23"  # etcdctl and etcd print this version; Status reports it
API_VERSION = ".".join(ETCD_RELEASE.split(".")[:2])  # "3.4": what `etcdctl version` calls the API version
CLUSTER_VERSION = API_VERSION + ".0"  # what the members of an etcd 3.4 cluster agree on and record
