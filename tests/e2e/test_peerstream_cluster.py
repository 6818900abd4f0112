"""Clusters of real members whose raft messages travel on the peer stream (--experimental-peer-protocol).

Every peer link goes through a proxy of the chaos harness (ETCDPY_PEER_PROXIES), so the links can be
cut; the members' logs and /metrics show which protocol carried the messages.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from etcdpy.chaos.cluster import ChaosCluster, MemberProcess, wait_until
from etcdpy.chaos.proxy import LinkFault
from etcdpy.client import Client
from etcdpy.client.errors import EtcdError


class _Cluster(ChaosCluster):
    """A chaos cluster whose members each run the peer protocol given for them."""

    def __init__(self, root: Path, protocols: Sequence[str], *, tls: bool = False) -> None:
        super().__init__(root, len(protocols), tls=tls)
        self.protocols = list(protocols)

    def command(self, member: MemberProcess, state: str) -> list[str]:
        protocol = self.protocols[member.index]
        return [*super().command(member, state), f"--experimental-peer-protocol={protocol}"]


@contextmanager
def running(root: Path, protocols: Sequence[str]) -> Iterator[_Cluster]:
    cluster = _Cluster(root, protocols)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def peer_bytes(member: MemberProcess, direction: str) -> dict[str, float]:
    """etcd_network_peer_{direction}_bytes_total of the member, by peer (hex member ID)."""
    with urllib.request.urlopen(f"{member.client_url}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    pattern = rf'^etcd_network_peer_{direction}_bytes_total\{{(?:To|From)="([0-9a-f]+)"\}} (\S+)$'
    return {peer: float(value) for peer, value in re.findall(pattern, text, re.MULTILINE)}


def holds(member: MemberProcess, key: bytes, value: bytes) -> bool:
    """Whether the member answers `value` for `key` from its own store (False while it cannot answer)."""
    try:
        with Client([member.endpoint]) as client:
            return [kv.value for kv in client.get(key, serializable=True, timeout=2).kvs] == [value]
    except EtcdError:
        return False


def put_everywhere(cluster: ChaosCluster, key: bytes, value: bytes) -> None:
    """Put through any member, wait until every running member holds it."""
    cluster.client().put(key, value, timeout=10)
    for member in cluster.members:
        if member.running:
            wait_until(lambda m=member: holds(m, key, value), 20, f"{member.name} did not get {key!r}")  # type: ignore[misc]


def test_a_stream_cluster_survives_a_leader_kill_and_a_partition(tmp_path: Path) -> None:
    with running(tmp_path, ["stream"] * 3) as cluster:
        put_everywhere(cluster, b"k0", b"v0")
        leader = cluster.wait_leader()
        assert all(peer_bytes(leader, "sent").values())
        for member in cluster.members:
            assert any(peer_bytes(member, "received").values())
            log = member.read_log()
            assert log.count("established the peer stream to peer") >= 1
            assert "on gRPC" not in log
        cluster.kill(leader)
        new_leader = cluster.wait_leader(timeout=20)
        assert new_leader is not leader
        cluster.client().put(b"k1", b"v1", timeout=10)
        cluster.launch(leader)
        put_everywhere(cluster, b"k2", b"v2")

        leader = cluster.wait_leader()
        cluster.isolate(leader, LinkFault(cut=True))
        others = [m for m in cluster.members if m is not leader]

        def others_write() -> bool:
            try:
                with Client([m.endpoint for m in others]) as client:
                    client.put(b"k3", b"v3", timeout=2)
            except EtcdError:
                return False
            return True

        wait_until(others_write, 30, "the members cut off from the leader serve no writes")
        assert not holds(leader, b"k3", b"v3")
        cluster.heal_links()
        put_everywhere(cluster, b"k4", b"v4")
        with Client([leader.endpoint]) as client:
            assert client.get(b"k3", serializable=True).kvs[0].value == b"v3"


def test_a_mixed_cluster_replicates_and_the_stream_members_fall_back_to_grpc(tmp_path: Path) -> None:
    with running(tmp_path, ["grpc", "stream", "stream"]) as cluster:
        for i in range(5):
            put_everywhere(cluster, f"k{i}".encode(), f"v{i}".encode())
        grpc_member = cluster.members[0]
        grpc_id = f"{cluster.member_id(grpc_member):x}"
        for member in cluster.members:
            assert any(peer_bytes(member, "received").values())
        # The grpc member's grpcio owns its peer port: the stream members reach it on gRPC, each other
        # on the stream; the grpc member reaches them on gRPC (their front splices it to grpcio).
        for member in cluster.members[1:]:
            log = member.read_log()
            assert f"sending to peer {grpc_id} on gRPC: it does not answer the peer stream" in log
            assert "established the peer stream to peer" in log
        assert "peer stream" not in grpc_member.read_log()
        cluster.kill(grpc_member)
        cluster.launch(grpc_member)
        # The killed member may have led: a put sent into the election can time out with its outcome
        # unknown (etcd's "possibly due to previous leader failure"), so write once a leader serves.
        cluster.wait_writable()
        put_everywhere(cluster, b"after", b"restart")
