"""The peer stream under peer TLS with client certificates: the certificate checks of the gRPC path
(--peer-cert-allowed-cn, the CRL) refuse a stream too, and a cluster on the stream replicates over TLS."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from tls_support import TLSCluster, etcdctl_tls
from tlscerts import PKI

from etcdpy.server.consensus import peerstream
from etcdpy.server.consensus.replication import fetch_cluster
from etcdpy.server.tls import Dialer, TLSInfo

STREAM = ["--experimental-peer-protocol=stream"]


def dial(url: str, pki: PKI, cert: Path, key: Path, cluster_id: int) -> int:
    """Open a peer stream to `url` with a certificate; the handshake's status (200: the stream opened)."""

    async def attempt() -> int:
        dialer = Dialer(TLSInfo(cert_file=str(cert), key_file=str(key), trusted_ca_file=str(pki.ca)))
        try:
            _reader, writer = await peerstream.dial(dialer, url, cluster_id=cluster_id, local_id=1, peer_id=2)
        except peerstream.HandshakeRefused as exc:
            dial.text = exc.text  # type: ignore[attr-defined]
            return exc.status
        writer.transport.abort()  # a probe: no TLS goodbye, which asyncio.run's end would cut short
        return 200

    return asyncio.run(attempt())


def test_the_stream_refuses_a_certificate_the_allowed_cn_refuses_and_checks_ids_of_one_it_allows(
    tmp_path: Path, pki: PKI
) -> None:
    cluster = TLSCluster(
        "etcdpy", tmp_path, 3, pki, ["--peer-cert-allowed-cn", pki.peer.common_name, *STREAM]
    )
    try:
        cluster.start()
        etcdctl_tls(cluster.endpoints, pki, "put", "over", "tls")
        listed = json.loads(etcdctl_tls(cluster.endpoints, pki, "member", "list", "-w", "json").stdout)
        cluster_id = int(listed["header"]["cluster_id"])
        member = cluster.members[0]
        for m in cluster.members:
            assert "established the peer stream to peer" in m.read_log()
            assert "on gRPC" not in m.read_log()

        intruder = pki.leaf("intruder-peer", common_name="intruder")
        assert dial(member.peer_url, pki, intruder.cert, intruder.key, cluster_id) == 403
        reason = f"certificate CN 'intruder' is not --peer-cert-allowed-cn '{pki.peer.common_name}'"
        assert dial.text == f"peer {reason}"  # type: ignore[attr-defined]
        assert "refused a peer stream from ipv4:127.0.0.1:" in member.read_log()
        assert reason in member.read_log()

        # gRPC through the peer port's front: the guard refuses it too, naming the client's address.
        info = TLSInfo(cert_file=str(intruder.cert), key_file=str(intruder.key), trusted_ca_file=str(pki.ca))
        with pytest.raises(ConnectionError, match="PERMISSION_DENIED"):
            asyncio.run(fetch_cluster([member.peer_url], Dialer(info)))
        assert "refused a peer connection from ipv4:127.0.0.1:" in member.read_log()

        # The members' own certificate passes the check: the handshake goes on to the cluster ID.
        assert dial(member.peer_url, pki, pki.peer.cert, pki.peer.key, cluster_id + 1) == 412
        assert dial.text.startswith("cluster ID mismatch")  # type: ignore[attr-defined]
        etcdctl_tls(cluster.endpoints, pki, "put", "still", "serving")
    finally:
        cluster.stop()


@pytest.mark.parametrize("protocols", [["grpc", "stream", "stream"]], ids=["mixed"])
def test_a_mixed_tls_cluster_replicates(tmp_path: Path, pki: PKI, protocols: list[str]) -> None:
    cluster = TLSCluster("etcdpy", tmp_path, 3, pki)
    for m, protocol in zip(cluster.members, protocols, strict=True):
        m.extra_args = [*m.extra_args, f"--experimental-peer-protocol={protocol}"]
    try:
        cluster.start()
        for i, m in enumerate(cluster.members):
            etcdctl_tls(m.endpoint, pki, "put", f"k{i}", f"v{i}")
        for m in cluster.members:
            got = etcdctl_tls(m.endpoint, pki, "get", "k", "--prefix", "--print-value-only").stdout.split()
            assert got == ["v0", "v1", "v2"]
        for m in cluster.members[1:]:
            assert "on gRPC: " in m.read_log()  # to the grpc member
            assert "established the peer stream to peer" in m.read_log()  # to each other
    finally:
        cluster.stop()
