"""etcdpy.server.tls's pure pieces: the file checks, the certificate guard's verdicts, cipher names,
TLS versions and auto-tls certificates (files in temp dirs; no process, no port)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography import x509
from tlscerts import PKI

from etcdpy.server import tls


def auth(cn: str = "", sans: tuple[str, ...] = (), pem: bytes = b"") -> dict[str, list[bytes]]:
    """An auth context as grpc gives it for a verified client certificate."""
    context: dict[str, list[bytes]] = {"transport_security_type": [b"ssl"]}
    if cn:
        context["x509_common_name"] = [cn.encode()]
    if sans:
        context["x509_subject_alternative_name"] = [s.encode() for s in sans]
    if pem:
        context["x509_pem_cert"] = [pem]
    return context


def test_the_allowed_cn_admits_only_that_common_name() -> None:
    guard = tls.CertificateGuard("peer", allowed_cn="etcd-peer")
    assert guard.refusal(auth("etcd-peer")) is None
    assert (
        guard.refusal(auth("intruder"))
        == "certificate CN 'intruder' is not --peer-cert-allowed-cn 'etcd-peer'"
    )
    assert guard.refusal(auth()) == "certificate CN (none) is not --peer-cert-allowed-cn 'etcd-peer'"


@pytest.mark.parametrize(
    ("sans", "admitted"),
    [
        (("m1.example.com",), True),
        (("M1.Example.com",), True),
        (("*.example.com",), True),
        (("*.other.com", "m1.example.com"), True),
        (("*.com",), False),
        (("m2.example.com",), False),
        ((), False),
    ],
)
def test_the_allowed_hostname_must_be_among_the_certificates_names(
    sans: tuple[str, ...], admitted: bool
) -> None:
    guard = tls.CertificateGuard("peer", allowed_hostname="m1.example.com")
    assert (guard.refusal(auth("x", sans)) is None) is admitted


def test_a_crl_refuses_the_serials_it_lists_and_is_reread_when_replaced(pki: PKI, tmp_path: Path) -> None:
    crl = tmp_path / "current.crl"
    crl.write_bytes(pki.crl([pki.client_root.cert], name="one.crl").read_bytes())
    guard = tls.CertificateGuard("client", crl_file=str(crl))
    root, alice = pki.client_root.cert.read_bytes(), pki.client("alice").cert.read_bytes()
    serial = x509.load_pem_x509_certificate(root).serial_number
    assert guard.refusal(auth("root", pem=root)) == f"certificate serial {serial:x} is revoked by {crl}"
    assert guard.refusal(auth("alice", pem=alice)) is None
    crl.write_bytes(pki.crl([pki.client("alice").cert], name="two.crl").read_bytes())
    assert guard.refusal(auth("root", pem=root)) is None
    assert guard.refusal(auth("alice", pem=alice)) is not None


def test_go_cipher_names_map_to_boringssl_names_and_unknown_ones_are_refused() -> None:
    suites = ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"]
    assert tls.cipher_suites_env(suites) == "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305"
    with pytest.raises(tls.TLSError, match='unexpected TLS cipher suite "TLS_FOO"'):
        tls.cipher_suites_env(["TLS_FOO"])


def test_only_the_tls_versions_grpcio_negotiates_are_accepted() -> None:
    tls.check_versions("", "")
    tls.check_versions("TLS1.2", "TLS1.3")
    with pytest.raises(tls.TLSError, match=re.escape("--tls-max-version=TLS1.2 is not supported")):
        tls.check_versions("TLS1.2", "TLS1.2")
    with pytest.raises(tls.TLSError, match='unexpected TLS version "SSL3"'):
        tls.check_versions("SSL3", "")


def test_check_accepts_a_good_pair_and_names_the_file_of_a_bad_one(pki: PKI) -> None:
    tls.check(
        tls.TLSInfo(cert_file=str(pki.server.cert), key_file=str(pki.server.key), trusted_ca_file=str(pki.ca))
    )
    with pytest.raises(tls.TLSError, match=re.escape(f"{pki.wrong_host.cert}: not a PEM private key")):
        tls.check(tls.TLSInfo(cert_file=str(pki.server.cert), key_file=str(pki.wrong_host.cert)))


def test_auto_tls_files_are_made_once_for_the_urls_hosts(tmp_path: Path) -> None:
    info = tls.self_signed_info(tmp_path / "fixtures" / "client", tls.TLSInfo(client_cert_auth=True))
    assert (info.skip_verify, info.client_cert_auth) == (True, False)  # a self-signed cert verifies nobody
    tls.prepare(info, ["https://127.0.0.1:2379", "https://node1.example:2379"])
    cert = x509.load_pem_x509_certificate(Path(info.cert_file).read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(str(n.value) for n in names) == ["127.0.0.1", "node1.example"]
    made = Path(info.cert_file).read_bytes()
    tls.prepare(info, ["https://127.0.0.1:2379"])
    assert Path(info.cert_file).read_bytes() == made


def test_the_reloader_hands_grpc_new_files_only_when_they_changed_and_pass(
    pki: PKI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(pki.server.cert.read_bytes())
    key.write_bytes(pki.server.key.read_bytes())
    reloader = tls._Reloader(tls.TLSInfo(cert_file=str(cert), key_file=str(key)))
    assert reloader() is None  # unchanged: grpc keeps what it has
    renewed = pki.leaf("reloader-renewed")
    (tmp_path / "new.pem").write_bytes(renewed.cert.read_bytes())
    (tmp_path / "new.pem").replace(cert)  # the new certificate, the old key: refused, logged once
    assert reloader() is None
    assert reloader() is None
    assert caplog.text.count("not reloading the TLS certificate: tls: private key does not match") == 1
    (tmp_path / "new.key").write_bytes(renewed.key.read_bytes())
    (tmp_path / "new.key").replace(key)
    assert reloader() is not None  # both replaced: grpc gets the new pair
    assert reloader() is None
