"""`TLSConfig.load`: the client's PEM files are checked before any connection, with etcdctl's texts
(Go's tls.X509KeyPair and etcd's NewCertPool); the interop tests compare the common ones with
etcdctl itself.  Also `host_port`, the address a pre-flight handshake dials."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tlscerts import PKI, make_pki

from etcdpy.client import Endpoint, TLSConfig
from etcdpy.client.tls import TLSFileError, host_port


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _load(**paths: Path | None) -> str:
    with pytest.raises(TLSFileError) as failure:
        TLSConfig(**paths).load()  # type: ignore[arg-type]
    return str(failure.value)


def test_good_files_load_with_their_contents(files: PKI) -> None:
    material = TLSConfig(files.ca, files.client_root.cert, files.client_root.key).load()
    assert material.root_pem == files.ca.read_bytes()
    assert material.cert_pem == files.client_root.cert.read_bytes()
    assert material.key_pem == files.client_root.key.read_bytes()
    assert material.has_roots
    assert TLSConfig().load().root_pem is None  # the system's roots


def test_a_certificate_needs_its_key_and_the_key_its_certificate(files: PKI) -> None:
    cert, key = files.client_root.cert, files.client_root.key
    assert _load(cert=cert) == f"KeyFile and CertFile must both be present[key: , cert: {cert}]"
    assert _load(key=key) == f"KeyFile and CertFile must both be present[key: {key}, cert: ]"


def test_unreadable_files_are_named(files: PKI, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    assert _load(cacert=missing) == f"open {missing}: no such file or directory"
    assert _load(cert=missing, key=files.client_root.key) == f"open {missing}: no such file or directory"
    assert _load(cert=files.client_root.cert, key=tmp_path) == f"read {tmp_path}: is a directory"


def test_go_texts_for_files_that_hold_the_wrong_pem(files: PKI, tmp_path: Path) -> None:
    cert, key = files.client_root.cert, files.client_root.key
    assert _load(cert=files.not_pem, key=key) == "tls: failed to find any PEM data in certificate input"
    assert _load(cert=key, key=key) == (
        "tls: failed to find certificate PEM data in certificate input, but did find a private key;"
        " PEM inputs may have been switched"
    )
    assert _load(cert=cert, key=files.not_pem) == "tls: failed to find any PEM data in key input"
    assert (
        _load(cert=cert, key=cert)
        == "tls: found a certificate rather than a key in the PEM for the private key"
    )
    assert _load(cert=cert, key=files.mismatched_key) == "tls: private key does not match public key"
    rsa_key = tmp_path / "rsa.key"
    rsa_key.write_bytes(
        rsa.generate_private_key(65537, 1024).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    assert _load(cert=cert, key=rsa_key) == "tls: private key type does not match public key type"


def test_a_ca_bundle_must_hold_only_certificates(files: PKI, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(files.ca.read_bytes() + files.other_ca.read_bytes())
    assert TLSConfig(cacert=bundle).load().has_roots
    assert _load(cacert=files.ca_key) == "x509: malformed certificate (a PRIVATE KEY PEM block)"
    # No PEM at all is no error for etcdctl: nothing is trusted, every handshake fails later.
    assert not TLSConfig(cacert=files.not_pem).load().has_roots


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("https://127.0.0.1:2379", ("127.0.0.1", 2379)),
        ("localhost:23790", ("localhost", 23790)),
        ("https://[::1]:2379/", ("::1", 2379)),
    ],
)
def test_host_port_of_an_endpoint(text: str, address: tuple[str, int]) -> None:
    assert host_port(Endpoint.parse(text)) == address


def test_host_port_refuses_unix_sockets_and_missing_ports() -> None:
    for text in ("unix:///tmp/etcd.sock", "https://localhost"):
        with pytest.raises(ValueError):
            host_port(Endpoint.parse(text))
