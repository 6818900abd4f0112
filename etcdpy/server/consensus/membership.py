"""Membership: cluster and member IDs derived as etcd derives them, and the member table.

IDs (verified against etcd 3.4): a member ID is the first 8 bytes, read as a
big-endian uint64, of ``sha1(join(sorted(peer_urls)) + initial_cluster_token)``; the
cluster ID is the same over the concatenated big-endian member IDs, sorted.  So
``http://127.0.0.1:23800`` with token ``etcd-cluster`` is member
``0x2e1259d415f2a040`` of cluster ``324952591200643719``.

The IDs are fixed on first boot and stored in the meta keyspace; the members sit
under the ``b`` prefix as serialized `Member` messages.  A restart reads them back
and ignores the ``--initial-*`` flags, as etcd does.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.server.config import Config
from etcdpy.server.mvcc.writer import Batch
from etcdpy.server.storage import schema
from etcdpy.server.storage.backend import Backend

_U64 = struct.Struct(">Q")


def member_id(peer_urls: Iterable[str], cluster_token: str) -> int:
    """Member ID: sha1 over the sorted peer URLs joined, then the token; first 8 bytes."""
    digest = hashlib.sha1(("".join(sorted(peer_urls)) + cluster_token).encode()).digest()
    return int(_U64.unpack_from(digest)[0])


def cluster_id(member_ids: Iterable[int]) -> int:
    """Cluster ID: sha1 over the sorted member IDs as big-endian uint64s; first 8 bytes."""
    digest = hashlib.sha1(b"".join(_U64.pack(i) for i in sorted(member_ids))).digest()
    return int(_U64.unpack_from(digest)[0])


@dataclass
class Cluster:
    """The cluster as this member knows it; mutated only on the server's event loop."""

    cluster_id: int
    local_id: int
    members: dict[int, rpc_pb2.Member] = field(default_factory=dict)  # by member ID

    @classmethod
    def from_config(cls, config: Config) -> Cluster:
        """The cluster `--initial-cluster` describes (members not started yet have no name)."""
        urls_by_name: dict[str, list[str]] = {}
        for name, url in config.initial_cluster:
            urls_by_name.setdefault(name, []).append(url)
        members = {}
        for urls in urls_by_name.values():
            mid = member_id(urls, config.initial_cluster_token)
            members[mid] = rpc_pb2.Member(ID=mid, peerURLs=sorted(urls))
        local = member_id(urls_by_name[config.name], config.initial_cluster_token)
        return cls(cluster_id=cluster_id(members), local_id=local, members=members)

    @classmethod
    def load(cls, backend: Backend) -> Cluster | None:
        """The cluster stored in the data dir, or None on a fresh one."""
        raw_cluster = backend.get(schema.META + schema.META_CLUSTER_ID)
        raw_member = backend.get(schema.META + schema.META_MEMBER_ID)
        if raw_cluster is None or raw_member is None:
            return None
        members = {}
        for _key, value in backend.db.iterator(prefix=schema.MEMBERS):
            member = rpc_pb2.Member.FromString(value)
            members[member.ID] = member
        return cls(_U64.unpack(raw_cluster)[0], _U64.unpack(raw_member)[0], members)

    @property
    def local(self) -> rpc_pb2.Member:
        return self.members[self.local_id]

    def set_attributes(self, member_id: int, name: str, client_urls: Iterable[str]) -> rpc_pb2.Member | None:
        """Record a member's name and client URLs (each member publishes them at every start).

        Returns the updated member, or None if it is no longer in the cluster.
        """
        member = self.members.get(member_id)
        if member is not None:
            member.name = name
            del member.clientURLs[:]
            member.clientURLs.extend(client_urls)
        return member

    def write(self, batch: Any) -> None:
        """Put the IDs and every member into a backend write batch."""
        batch.put(schema.META + schema.META_CLUSTER_ID, _U64.pack(self.cluster_id))
        batch.put(schema.META + schema.META_MEMBER_ID, _U64.pack(self.local_id))
        for mid, member in self.members.items():
            batch.put(schema.MEMBERS + _U64.pack(mid), member.SerializeToString())

    def member_list(self) -> list[rpc_pb2.Member]:
        """Members ordered by ID, as etcd lists them."""
        return [self.members[mid] for mid in sorted(self.members)]


CLUSTER_VERSION_KEY = schema.META + b"cluster_version"


class MembershipApplier:
    """MembershipApplier applies the log's member attributes and cluster version to the member table.

    Both are applied state: every member records them at the same index, in the
    apply batch, and reads them back after a snapshot replaced its database.
    """

    def __init__(self, backend: Backend, cluster: Cluster) -> None:
        self.backend = backend
        self.cluster = cluster
        self.cluster_version = ""  # "" until the first leader records the version the members agree on
        self.reload()

    def reload(self) -> None:
        """Re-read the members and the cluster version (a snapshot replaced the database)."""
        raw_version = self.backend.get(CLUSTER_VERSION_KEY)
        self.cluster_version = raw_version.decode() if raw_version is not None else ""
        loaded = Cluster.load(self.backend)
        if loaded is not None:
            self.cluster.members = loaded.members

    def apply_member_attributes(
        self, batch: Batch, req: raft_internal_pb2.MemberAttributesRequest
    ) -> rpc_pb2.MemberUpdateResponse:
        member = self.cluster.set_attributes(req.member_ID, req.name, req.client_urls)
        if member is not None:  # else removed meanwhile: nothing to record
            batch.wb.put(schema.MEMBERS + _U64.pack(req.member_ID), member.SerializeToString())
        return rpc_pb2.MemberUpdateResponse()

    def apply_cluster_version(
        self, batch: Batch, req: raft_internal_pb2.ClusterVersionSetRequest
    ) -> rpc_pb2.MemberUpdateResponse:
        self.cluster_version = req.version
        batch.wb.put(CLUSTER_VERSION_KEY, req.version.encode())
        return rpc_pb2.MemberUpdateResponse()
