"""Test certificates: a small PKI generated with `cryptography`, written as PEM files.

`make_pki(directory)` writes, under ``directory``:

- ``ca.crt``/``ca.key``: the trusted CA; ``other-ca.crt``/``other-ca.key``: a second CA that nothing
  trusts (the "wrong CA" case), with ``other-server.*`` and ``other-client.*`` signed by it;
- ``server.*`` and ``peer.*``: valid for 127.0.0.1, ::1 and localhost (IP and DNS SANs), with both
  the serverAuth and clientAuth key usages, as etcd's own guide makes them (a peer dials and serves;
  etcd 3.4's gateway dials its own client port with the server certificate);
- ``client.*``: a client certificate whose common name is ``root``; `PKI.client` makes more;
- ``expired.*``, ``not-yet-valid.*``: correct names and CA, dates outside validity;
- ``wrong-host.*``: signed by the CA, but for ``wrong.example`` / 10.255.255.1 only;
- ``mismatched.key``: a key that belongs to no certificate (pair it with ``server.crt``);
- ``not-pem.txt``: a text file without any PEM block (for a certificate, key or CA that is no PEM).

Keys are P-256 derived from fixed numbers (`ec.derive_private_key`), so generation is fast (a few
milliseconds for the whole set) and the keys are the same on every run; validity periods are relative
to now. Each certificate also has a ``.pem`` twin holding the certificate followed by its CA, for
programs that want the chain in one file.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["PKI", "CertPair", "make_pki"]

LOCAL_HOSTS = ("127.0.0.1", "::1", "localhost")
WRONG_HOSTS = ("10.255.255.1", "wrong.example")

_DAY = datetime.timedelta(days=1)


def _key(label: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 key that is always the same for ``label`` (tests need no secrecy, they need speed)."""
    digest = hashlib.sha256(b"etcdpy-test-key:" + label.encode()).digest()
    # The scalar must be in [1, n-1]; 255 bits are always below P-256's order.
    scalar = int.from_bytes(digest, "big") >> 1 or 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def _serial(label: str) -> int:
    return int.from_bytes(hashlib.sha256(b"etcdpy-test-serial:" + label.encode()).digest()[:16], "big") >> 1


def _san(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class CertPair:
    """One certificate and its key on disk; ``chain`` is the certificate followed by its CA."""

    cert: Path
    key: Path
    chain: Path
    common_name: str


@dataclass(frozen=True)
class _Authority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path
    key_path: Path

    def issue(
        self,
        directory: Path,
        name: str,
        common_name: str,
        hosts: tuple[str, ...] = (),
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> CertPair:
        """Sign a leaf certificate ``name.crt`` (key ``name.key``, chain ``name.pem``)."""
        now = datetime.datetime.now(datetime.UTC)
        start = not_before if not_before is not None else now - _DAY
        end = not_after if not_after is not None else now + 3650 * _DAY
        assert start < end, (name, start, end)
        key = _key(f"{self.cert.subject.rfc4514_string()}/{name}")
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(_serial(f"{self.cert.subject.rfc4514_string()}/{name}"))
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if hosts:
            builder = builder.add_extension(_san(hosts), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        pair = CertPair(
            cert=directory / f"{name}.crt",
            key=directory / f"{name}.key",
            chain=directory / f"{name}.pem",
            common_name=common_name,
        )
        pair.cert.write_bytes(_pem(cert))
        pair.chain.write_bytes(_pem(cert) + _pem(self.cert))
        _write_key(pair.key, key)
        return pair


def _authority(directory: Path, name: str, common_name: str) -> _Authority:
    now = datetime.datetime.now(datetime.UTC)
    key = _key(f"ca/{name}")
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "etcdpy tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(_serial(f"ca/{name}"))
        .not_valid_before(now - 2 * _DAY)
        .not_valid_after(now + 3650 * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(_pem(cert))
    _write_key(key_path, key)
    return _Authority(cert=cert, key=key, cert_path=cert_path, key_path=key_path)


@dataclass(frozen=True)
class PKI:
    """The files `make_pki` wrote (see the module docstring for what each one is)."""

    directory: Path
    ca: Path
    ca_key: Path
    other_ca: Path
    other_ca_key: Path
    server: CertPair
    peer: CertPair
    client_root: CertPair
    expired: CertPair
    not_yet_valid: CertPair
    wrong_host: CertPair
    other_server: CertPair
    other_client: CertPair
    mismatched_key: Path
    not_pem: Path
    _ca: _Authority
    _other: _Authority

    def client(self, common_name: str, *, other_ca: bool = False) -> CertPair:
        """A client certificate (files ``client-<common_name>.*``) for ``common_name``, signed by the CA
        (or by the untrusted second CA); made on first call, reused after."""
        authority = self._other if other_ca else self._ca
        prefix = "other-client" if other_ca else "client"
        name = f"{prefix}-{common_name}"
        path = self.directory / f"{name}.crt"
        if path.exists():
            return CertPair(path, self.directory / f"{name}.key", self.directory / f"{name}.pem", common_name)
        return authority.issue(self.directory, name, common_name)

    def leaf(self, name: str, hosts: tuple[str, ...] = LOCAL_HOSTS, *, common_name: str = "") -> CertPair:
        """Another certificate signed by the CA for ``hosts`` (files ``name.*``), e.g. a second server
        certificate to test a reload with."""
        return self._ca.issue(self.directory, name, common_name or name, hosts)

    def crl(self, revoked: list[Path], name: str = "ca.crl") -> Path:
        """A CRL signed by the CA that revokes the certificates at ``revoked`` (PEM, file ``name``)."""
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self._ca.cert.subject)
            .last_update(now - _DAY)
            .next_update(now + 30 * _DAY)
        )
        for cert_path in revoked:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(cert.serial_number)
                .revocation_date(now - _DAY)
                .build()
            )
        path = self.directory / name
        path.write_bytes(builder.sign(self._ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        return path


def make_pki(directory: Path) -> PKI:
    """Write the test PKI into ``directory`` (created if missing) and return its paths."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca = _authority(directory, "ca", "etcdpy test CA")
    other = _authority(directory, "other-ca", "etcdpy untrusted CA")
    mismatched_key = directory / "mismatched.key"
    _write_key(mismatched_key, _key("mismatched"))
    not_pem = directory / "not-pem.txt"
    not_pem.write_text("this file holds no PEM block\n")
    pki = PKI(
        directory=directory,
        ca=ca.cert_path,
        ca_key=ca.key_path,
        other_ca=other.cert_path,
        other_ca_key=other.key_path,
        server=ca.issue(directory, "server", "etcdpy server", LOCAL_HOSTS),
        peer=ca.issue(directory, "peer", "etcdpy peer", LOCAL_HOSTS),
        client_root=ca.issue(directory, "client", "root"),
        expired=ca.issue(directory, "expired", "expired", LOCAL_HOSTS, now - 3 * _DAY, now - _DAY),
        not_yet_valid=ca.issue(
            directory, "not-yet-valid", "not-yet-valid", LOCAL_HOSTS, now + _DAY, now + 3 * _DAY
        ),
        wrong_host=ca.issue(directory, "wrong-host", "wrong-host", WRONG_HOSTS),
        other_server=other.issue(directory, "other-server", "etcdpy server", LOCAL_HOSTS),
        other_client=other.issue(directory, "other-client", "root"),
        mismatched_key=mismatched_key,
        not_pem=not_pem,
        _ca=ca,
        _other=other,
    )
    return pki
