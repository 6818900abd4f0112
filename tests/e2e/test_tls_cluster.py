"""Clusters with TLS on every client and peer link: failover, a member added with an https peer URL,
HashKV agreement, and members whose peer certificate is refused (they do not join; both sides say why).

The cluster test runs against etcdpy and, marked ``interop``, against etcd 3.4 with the same files.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cluster_support import etcdctl
from cryptography import x509
from tls_support import TLSCluster, TLSServer, client_flags, etcdctl_tls, peer_flags
from tlscerts import PKI, CertPair

from etcdpy.chaos.cluster import wait_until

KINDS = ["etcdpy", pytest.param("etcd", marks=pytest.mark.interop)]


def hashes(cluster: TLSCluster) -> set[int]:
    out = etcdctl_tls(cluster.endpoints, cluster.pki, "endpoint", "hashkv", "-w", "json").stdout
    return {entry["HashKV"]["hash"] for entry in json.loads(out)}


def add_member(cluster: TLSCluster, name: str, root: Path, peer: CertPair | None = None) -> TLSServer:
    """`member add` with an https peer URL, then a process for it (not started) with `peer`'s files."""
    new = TLSServer(cluster.kind, root / f"{name}.data", name=name)
    result: list[subprocess.CompletedProcess[str]] = []

    def added() -> bool:  # refused as unhealthy until every member has been connected for 5 s
        result.append(
            etcdctl_tls(
                cluster.endpoints,
                cluster.pki,
                "member",
                "add",
                name,
                f"--peer-urls={new.peer_url}",
                check=False,
            )
        )
        return result[-1].returncode == 0

    wait_until(added, 30, f"member add kept failing: {result[-1].stderr if result else ''}")
    env = dict(line.split("=", 1) for line in result[-1].stdout.splitlines() if line.startswith("ETCD_"))
    args = cluster.member_args(env["ETCD_INITIAL_CLUSTER"].strip('"'), "existing")
    if peer is not None:
        args += peer_flags(cluster.pki, peer)  # the last of a repeated flag wins
    new.extra_args = args
    return new


@pytest.mark.parametrize("kind", KINDS)
def test_a_tls_cluster_survives_its_leader_killed_grows_by_an_https_member_and_agrees(
    tmp_path: Path, pki: PKI, kind: str
) -> None:
    cluster = TLSCluster(kind, tmp_path, 3, pki)
    try:
        cluster.start()
        for i in range(20):
            etcdctl_tls(cluster.endpoints, pki, "put", f"k{i}", f"v{i}")
        leader = cluster.wait_leader()
        # A follower forwards keep-alives to the leader's client URL, over TLS with its own certificate.
        follower = next(m for m in cluster.members if m is not leader)
        lease = etcdctl_tls(leader.endpoint, pki, "lease", "grant", "60").stdout.split()[1]
        kept = etcdctl_tls(follower.endpoint, pki, "lease", "keep-alive", "--once", lease).stdout
        assert kept == f"lease {lease} keepalived with TTL(60)\n"
        leader.kill()
        assert cluster.wait_leader() is not leader
        survivors = ",".join(m.client_url for m in cluster.alive())
        etcdctl_tls(survivors, pki, "put", "after-failover", "yes")
        leader.start()
        new = add_member(cluster, "m3", tmp_path)
        cluster.members.append(new)
        new.start()
        etcdctl_tls(cluster.endpoints, pki, "put", "after-join", "yes")
        listed = json.loads(etcdctl_tls(cluster.endpoints, pki, "member", "list", "-w", "json").stdout)
        assert sorted(m["peerURLs"][0] for m in listed["members"]) == sorted(
            m.peer_url for m in cluster.members
        )
        got = etcdctl_tls(new.endpoint, pki, "get", "after-join", "--consistency=s").stdout
        wait_until(
            lambda: etcdctl_tls(new.endpoint, pki, "get", "after-join", "--consistency=s").stdout != "",
            20,
            f"the new member never caught up: {got!r}",
        )
        wait_until(lambda: len(hashes(cluster)) == 1, 20, f"HashKV differs: {hashes(cluster)}")
        # Plaintext on a TLS port ends with an error instead of hanging.
        plain = etcdctl(f"http://{cluster.members[0].endpoint}", "get", "k1", check=False)
        assert plain.returncode != 0 and "Error:" in plain.stderr
    finally:
        cluster.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_followers_forward_keep_alives_over_tls_without_a_trusted_ca(
    tmp_path: Path, pki: PKI, kind: str
) -> None:
    cluster = TLSCluster(kind, tmp_path, 3, pki, client_cert_auth=False)  # server certificates only
    try:
        cluster.start()
        leader = cluster.wait_leader()
        follower = next(m for m in cluster.members if m is not leader)
        lease = etcdctl_tls(leader.endpoint, pki, "lease", "grant", "60").stdout.split()[1]
        kept = etcdctl_tls(follower.endpoint, pki, "lease", "keep-alive", "--once", lease).stdout
        assert kept == f"lease {lease} keepalived with TTL(60)\n"
    finally:
        cluster.stop()


def _refused_join(cluster: TLSCluster, tmp_path: Path, peer: CertPair) -> tuple[TLSServer, str]:
    new = add_member(cluster, "intruder", tmp_path, peer)
    result = subprocess.run(new.command(), capture_output=True, text=True, timeout=60, check=False)
    return new, result.stderr if result.returncode != 0 else f"exited {result.returncode}: {result.stderr}"


def test_a_member_whose_peer_certificate_another_ca_signed_does_not_join_and_both_sides_say_why(
    tmp_path: Path, pki: PKI
) -> None:
    cluster = TLSCluster("etcdpy", tmp_path, 3, pki)
    try:
        cluster.start()
        _new, stderr = _refused_join(cluster, tmp_path, pki.other_server)
        assert "cannot join the cluster" in stderr, stderr
        assert "may have refused this member's certificate" in stderr, stderr
        logs = "".join(m.read_log() for m in cluster.members)
        assert "CERTIFICATE_VERIFY_FAILED" in logs  # grpc's line: the handshake's verdict on the peer
        etcdctl_tls(cluster.endpoints, pki, "put", "still", "serving")
    finally:
        cluster.stop()


def _cn_not_allowed(pki: PKI) -> tuple[list[str], CertPair, str]:
    intruder = pki.leaf("intruder-peer", common_name="intruder")
    reason = f"certificate CN 'intruder' is not --peer-cert-allowed-cn '{pki.peer.common_name}'"
    return ["--peer-cert-allowed-cn", pki.peer.common_name], intruder, reason


def _revoked(pki: PKI) -> tuple[list[str], CertPair, str]:
    revoked = pki.leaf("revoked-peer")
    crl = pki.crl([revoked.cert], name="revokes-peer.crl")
    serial = x509.load_pem_x509_certificate(revoked.cert.read_bytes()).serial_number
    return ["--peer-crl-file", str(crl)], revoked, f"certificate serial {serial:x} is revoked by {crl}"


@pytest.mark.parametrize("refusal", [_cn_not_allowed, _revoked], ids=["cn-not-allowed", "revoked-by-crl"])
def test_a_member_whose_certificate_the_guard_refuses_does_not_join_and_both_sides_say_why(
    tmp_path: Path, pki: PKI, refusal: Callable[[PKI], tuple[list[str], CertPair, str]]
) -> None:
    flags, intruder, reason = refusal(pki)
    cluster = TLSCluster("etcdpy", tmp_path, 3, pki, flags)
    try:
        cluster.start()  # the members' own certificates pass
        _new, stderr = _refused_join(cluster, tmp_path, intruder)
        assert reason in stderr, stderr
        assert "PERMISSION_DENIED" in stderr
        logs = "".join(m.read_log() for m in cluster.members)
        assert "refused a peer connection from ipv4:127.0.0.1:" in logs and reason in logs
    finally:
        cluster.stop()


def test_peer_auto_tls_members_form_a_cluster(tmp_path: Path) -> None:
    members = [
        TLSServer("etcdpy", tmp_path / f"a{i}.data", name=f"a{i}", client_scheme="http", extra_args=[])
        for i in range(3)
    ]
    initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
    for m in members:
        m.extra_args = ["--initial-cluster", initial, "--peer-auto-tls", "--heartbeat-interval", "20",
                        "--election-timeout", "200"]  # fmt: skip
    try:
        for m in members:
            m.start(wait=False)
        for m in members:
            m.wait_ready()
        etcdctl(",".join(m.endpoint for m in members), "put", "auto", "tls")
        for m in members:
            assert (m.data_dir / "fixtures" / "peer" / "cert.pem").exists()
    finally:
        for m in members:
            m.stop()


def test_a_founding_member_with_another_cas_certificate_never_joins_and_every_side_logs_why(
    tmp_path: Path, pki: PKI
) -> None:
    members = [TLSServer("etcdpy", tmp_path / f"b{i}.data", name=f"b{i}") for i in range(3)]
    initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
    for i, m in enumerate(members):
        peer = pki.other_server if i == 2 else pki.peer
        times = ["--heartbeat-interval", "20", "--election-timeout", "200"]
        m.extra_args = ["--initial-cluster", initial, *times, *client_flags(pki), *peer_flags(pki, peer)]
    good, bad = members[:2], members[2]
    try:
        for m in members:
            m.start(wait=False)
        for m in good:
            m.wait_ready()
        etcdctl_tls(",".join(m.client_url for m in good), pki, "put", "two", "of three")
        refused = "over TLS: failed to connect to all addresses"
        wait_until(lambda: "may have refused this member's certificate" in bad.read_log(), 20, bad.read_log())
        for m in good:
            wait_until(lambda m=m: refused in m.read_log(), 20, m.read_log())
            assert "CERTIFICATE_VERIFY_FAILED" in m.read_log()  # grpc's line: the handshake's verdict
        assert f"serving client requests on {bad.client_url}" not in bad.read_log()
    finally:
        for m in members:
            m.stop()
