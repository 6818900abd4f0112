"""One-member servers with TLS on the client URL, and the command-line flags that reach them.

`tls_server` starts a `ServerProcess` (etcd or etcdpy) whose client URL is ``https://`` and whose
client TLS flags use the test PKI (tests/tlscerts.py): a server certificate (``server`` by default, or
the expired, not yet valid or wrong-host one), client certificates required and checked against the CA.
The caller stops it (the fixtures do).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from procs import ServerProcess
from tlscerts import PKI, CertPair


@dataclass
class HttpsServer(ServerProcess):
    """A member whose client URL is https (its peer URL stays plaintext: peers are not under test)."""

    @property
    def client_url(self) -> str:
        return f"https://127.0.0.1:{self.client_port}"


def server_tls_flags(pki: PKI, certificate: CertPair | None = None) -> list[str]:
    """etcd's client TLS flags: ``certificate`` served, client certificates required from the CA."""
    pair = certificate or pki.server
    return [
        "--cert-file", str(pair.cert),
        "--key-file", str(pair.key),
        "--trusted-ca-file", str(pki.ca),
        "--client-cert-auth",
    ]  # fmt: skip


def client_tls_args(pki: PKI, client: CertPair | None = None) -> list[str]:
    """etcdctl's flags for a client with a certificate (CN root unless told) trusting the CA."""
    pair = client or pki.client_root
    return ["--cacert", str(pki.ca), "--cert", str(pair.cert), "--key", str(pair.key)]


def tls_server(kind: str, data_dir: Path, pki: PKI, certificate: CertPair | None = None) -> HttpsServer:
    """A started one-member ``kind`` server with client TLS (see the module docstring)."""
    server = HttpsServer(kind, data_dir, extra_args=server_tls_flags(pki, certificate))
    server.start()
    return server
