"""Servers and clusters with TLS on the client and peer URLs, for the TLS tests of etcdpy and etcd.

`TLSServer` is a `ServerProcess` whose URLs are ``https://`` (each side on its own); `server_flags`
gives etcd's TLS flags for the test PKI (tests/tlscerts.py); `TLSCluster` is a `ProcCluster` of such
members that asks its members' status through TLS; `etcdctl_tls` runs the reference etcdctl with a
client certificate.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from cluster_support import ProcCluster, etcdctl
from procs import ServerProcess
from tlscerts import PKI, CertPair


@dataclass
class TLSServer(ServerProcess):
    """A member whose client and peer URLs use https (unless told otherwise)."""

    client_scheme: str = "https"
    peer_scheme: str = "https"

    @property
    def client_url(self) -> str:
        return f"{self.client_scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.peer_scheme}://127.0.0.1:{self.peer_port}"


def client_flags(pki: PKI, *, client_cert_auth: bool = True, server: CertPair | None = None) -> list[str]:
    """etcd's client-side TLS flags: the server certificate, and client certificates checked."""
    pair = server or pki.server
    flags = ["--cert-file", str(pair.cert), "--key-file", str(pair.key)]
    if client_cert_auth:
        flags += ["--trusted-ca-file", str(pki.ca), "--client-cert-auth"]
    return flags


def peer_flags(pki: PKI, peer: CertPair | None = None, *, trusted_ca: Path | None = None) -> list[str]:
    """etcd's peer-side TLS flags, peer certificates checked against the CA."""
    pair = peer or pki.peer
    return [
        "--peer-cert-file", str(pair.cert),
        "--peer-key-file", str(pair.key),
        "--peer-trusted-ca-file", str(trusted_ca or pki.ca),
        "--peer-client-cert-auth",
    ]  # fmt: skip


def tls_args(pki: PKI, client: CertPair | None = None) -> list[str]:
    """etcdctl's flags to reach a TLS member with a client certificate (root's by default)."""
    pair = client or pki.client_root
    return ["--cacert", str(pki.ca), "--cert", str(pair.cert), "--key", str(pair.key)]


def etcdctl_tls(
    endpoints: str, pki: PKI, *args: str, check: bool = True, client: CertPair | None = None
) -> subprocess.CompletedProcess[str]:
    """The reference etcdctl against https `endpoints`, with a client certificate."""
    urls = ",".join(e if "://" in e else f"https://{e}" for e in endpoints.split(","))
    return etcdctl(urls, *tls_args(pki, client), *args, check=check)


class TLSCluster(ProcCluster):
    """A `ProcCluster` whose members use TLS on every client and peer URL, with client certificates."""

    def __init__(
        self,
        kind: str,
        root: Path,
        size: int,
        pki: PKI,
        extra_args: list[str] | None = None,
        *,
        client_cert_auth: bool = True,
    ) -> None:
        self.pki = pki
        flags = [*client_flags(pki, client_cert_auth=client_cert_auth), *peer_flags(pki), *(extra_args or [])]
        super().__init__(kind, root, size, flags)
        self.members = [
            TLSServer(kind, m.data_dir, name=m.name, client_port=m.client_port, peer_port=m.peer_port)
            for m in self.members
        ]
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            m.extra_args = self.member_args(initial, "new")

    @property
    def endpoints(self) -> str:
        return ",".join(m.client_url for m in self.members)

    def status(self, member: ServerProcess) -> dict[str, object] | None:
        import json

        result = etcdctl_tls(member.endpoint, self.pki, "endpoint", "status", "-w", "json", check=False)
        if result.returncode != 0:
            return None
        statuses: list[dict[str, object]] = json.loads(result.stdout)
        found = statuses[0]["Status"] if statuses else None
        return found if isinstance(found, dict) else None
