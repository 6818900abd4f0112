"""Client TLS: the PEM files, checked as etcdctl checks them, and a pre-flight handshake that names the
check a connection fails.

`TLSConfig` is what a caller gives (``--cacert --cert --key``, whether every endpoint uses TLS, whether
the server's certificate is verified).  `TLSConfig.load` reads the files once and fails with
`TLSFileError` (etcdctl's text: ``open ca.crt: no such file or directory``, ``tls: private key does not
match public key`` ...) before any connection is made.

grpc reports a refused handshake only as an unavailable endpoint, retried until the call's deadline,
and logs the cause on stderr.  So before a transport opens a TLS channel it shakes hands once with
Python's `ssl` (`probe`): the same files, the same host name check, ALPN ``h2``, then an HTTP/2 preface
so that a server refusing the client certificate after a TLS 1.3 handshake is heard too.  A failure is a
verdict (`TLSHandshakeError`, naming the endpoint and the check); a connection that cannot be made at
all is no verdict (the server may be starting), and grpc's own retries apply.  The reverse mistake, a
plaintext client on a TLS port, is found the same way (`speaks_tls`) once a plaintext call fails.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from etcdpy.client.endpoints import Endpoint
from etcdpy.client.errors import ContextDeadlineExceeded

T = TypeVar("T")

__all__ = [
    "TLSConfig",
    "TLSFileError",
    "TLSHandshakeError",
    "TLSMaterial",
    "host_port",
    "probe",
    "speaks_tls",
]

_PEM_BLOCK = re.compile(rb"-----BEGIN ([^-\r\n]+)-----\r?\n(.*?)-----END \1-----", re.S)
# The client's first bytes on an HTTP/2 connection, then an empty SETTINGS frame: a server that accepts
# the connection answers with its own SETTINGS; one that refused the client certificate, with an alert.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"

# OpenSSL's verification results (X509_V_ERR_*) in the words of the check that failed.
_UNKNOWN_ISSUER = (2, 20, 21)
_SELF_SIGNED = (18, 19)
_NOT_YET_VALID = 9
_EXPIRED = 10
_HOSTNAME_MISMATCH = 62
_IP_MISMATCH = 64
# Alerts a server sends when it refuses the client's certificate (or its absence).
_CLIENT_CERT_ALERTS = (
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_REVOKED",
    "TLSV1_ALERT_ACCESS_DENIED",
)
# Go's tls.X509KeyPair tells "wrong kind of key" from "another key of the right kind".
_KEY_KINDS = (
    (rsa.RSAPrivateKey, rsa.RSAPublicKey),
    (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey),
    (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey),
)
_NOT_TLS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNEXPECTED_RECORD", "HTTP_REQUEST")
_NOT_TLS_REASON = "the server does not speak TLS (a plaintext port? use http:// and no TLS flags)"


class TLSFileError(ValueError):
    """A TLS file that cannot be read or used; the text is etcdctl's for the same file."""


class TLSHandshakeError(ContextDeadlineExceeded):
    """The TLS handshake with an endpoint failed a check (or the endpoint and client disagree on TLS).

    etcd's Go client reports these only as ``context deadline exceeded`` once the call's time is up; a
    subclass, so callers (and the CLI's exit codes) treat it the same, but raised at once and naming
    the check.
    """

    def __init__(self, endpoint: Endpoint, reason: str) -> None:
        super().__init__(f"{endpoint.text}: {reason}")
        self.endpoint = endpoint
        self.reason = reason


@dataclass(frozen=True)
class TLSConfig:
    """Client TLS: PEM files (all optional), and when and how TLS is used.

    Without ``always`` only ``https://`` endpoints use TLS; etcdctl sets it as soon as a TLS file is
    given or ``--insecure-transport=false``.  ``insecure_skip_verify`` accepts any server certificate
    (etcdctl's ``--insecure-skip-tls-verify``, which it applies only when ``always`` is set; the
    client certificate is still presented).
    """

    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    always: bool = False
    insecure_skip_verify: bool = False

    def load(self) -> TLSMaterial:
        """Read and check the files, in etcdctl's order and with its texts (`TLSFileError`)."""
        cert_pem = key_pem = root_pem = None
        if self.cert is not None or self.key is not None:
            if self.cert is None or self.key is None:
                given = f"key: {self.key or ''}, cert: {self.cert or ''}"
                raise TLSFileError(f"KeyFile and CertFile must both be present[{given}]")
            cert_pem, key_pem = _read(self.cert), _read(self.key)
            _check_key_pair(cert_pem, key_pem)
        if self.cacert is not None:
            root_pem = _read(self.cacert)
            _check_roots(root_pem)
        return TLSMaterial(self, root_pem, cert_pem, key_pem)

    def credentials(self) -> grpc.ChannelCredentials:
        """grpc channel credentials from the files (`TLSFileError` when one cannot be used)."""
        return self.load().credentials()


@dataclass(frozen=True)
class TLSMaterial:
    """The checked contents of a `TLSConfig`'s files."""

    config: TLSConfig
    root_pem: bytes | None
    cert_pem: bytes | None
    key_pem: bytes | None

    @property
    def has_roots(self) -> bool:
        """False when the --cacert file holds no certificate at all (then nothing can be trusted)."""
        return self.root_pem is None or bool(_blocks(self.root_pem))

    def credentials(self) -> grpc.ChannelCredentials:
        """grpc's credentials: the CA bundle (the system's without one) and the client's pair."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_pem, private_key=self.key_pem, certificate_chain=self.cert_pem
        )

    def ssl_context(self, *, verify: bool) -> ssl.SSLContext:
        """An `ssl` client context with the same trust and client certificate (for `probe` and the
        relay of ``insecure_skip_verify``)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # as etcd's client
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif self.root_pem is None:
            context.load_default_certs()
        elif self.has_roots:
            context.load_verify_locations(cadata=self.root_pem.decode("ascii", "replace"))
        if self.config.cert is not None and self.config.key is not None:
            context.load_cert_chain(self.config.cert, self.config.key, password="")
        context.set_alpn_protocols(["h2"])
        return context


def probe(endpoint: Endpoint, material: TLSMaterial, timeout: float) -> str | None:
    """Shake hands with ``endpoint`` as its TLS channel will: None if the server accepts the connection,
    else the failed check in words.  `OSError` when no TLS conversation took place (refused, timed out):
    that is no verdict."""
    config = material.config
    verify = not config.insecure_skip_verify
    if verify and not material.has_roots:
        return f"cannot verify the server's certificate: {config.cacert} holds no PEM certificate"
    host, port = host_port(endpoint)
    context = material.ssl_context(verify=verify)
    with socket.create_connection((host, port), timeout=timeout) as raw:
        conn = _TLSOver(raw, context, host)
        try:
            conn.handshake()
        except ssl.SSLCertVerificationError as err:
            return _verification_failure(err, host, config)
        except ssl.SSLError as err:
            return _handshake_failure(err, config)
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            return _NOT_TLS_REASON  # it hung up on the client's hello
        # The handshake passed: a server that hangs up now (however abruptly) refused the client.
        try:
            conn.sendall(_H2_PREFACE)
            answer = conn.recv(9)
        except ssl.SSLEOFError:
            answer = b""
        except ssl.SSLError as err:
            return _handshake_failure(err, config)
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            answer = b""
        if not answer:
            return _refused_client_certificate(config, "the connection was closed")
    return None


def speaks_tls(endpoint: Endpoint, timeout: float) -> bool:
    """Whether ``endpoint`` answers a TLS handshake (a plaintext client failing there is on a TLS port).
    `OSError` when it cannot be reached (no answer either way)."""
    host, port = host_port(endpoint)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as raw:
        try:
            _TLSOver(raw, context, None).handshake()
        except ssl.SSLError as err:
            # A server that demands a client certificate may refuse the handshake with an alert: it
            # still speaks TLS.  Anything else (a plaintext server's answer, a hang-up) does not.
            return any(alert in str(err) for alert in (*_CLIENT_CERT_ALERTS, "HANDSHAKE_FAILURE"))
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            return False
    return True


class _TLSOver:
    """A TLS client conversation over a connected socket, through memory BIOs.

    The probes do not use `ssl.SSLContext.wrap_socket`: when the server resets the connection before
    the handshake, the SSLSocket it builds raises before returning and is left unclosed, holding the
    descriptor until the garbage collector finds it.  Here the socket stays the caller's.  Errors are
    those of an SSLSocket (SSLError and its kinds; OSError from the socket; `recv` gives b"" at a
    clean end).
    """

    def __init__(self, raw: socket.socket, context: ssl.SSLContext, host: str | None) -> None:
        self._raw = raw
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=host)

    def handshake(self) -> None:
        self._run(self._tls.do_handshake)

    def sendall(self, data: bytes) -> None:
        self._run(lambda: self._tls.write(data))

    def recv(self, size: int) -> bytes:
        return self._run(lambda: self._tls.read(size))

    def _run(self, step: Callable[[], T]) -> T:
        """``step`` until it needs no more bytes from the server, sending what TLS has to say meanwhile."""
        while True:
            try:
                result = step()
            except ssl.SSLWantReadError:
                self._flush()
                data = self._raw.recv(65536)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
                continue
            self._flush()
            return result

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending:
            self._raw.sendall(pending)


def host_port(endpoint: Endpoint) -> tuple[str, int]:
    """The host and port an endpoint's target dials (`ValueError` for a unix socket or no port)."""
    if endpoint.target.startswith("unix:"):
        raise ValueError(f"{endpoint.text} is a unix socket")
    host, sep, port = endpoint.target.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"no port in {endpoint.text}")
    return host.strip("[]"), int(port)


def _verification_failure(err: ssl.SSLCertVerificationError, host: str, config: TLSConfig) -> str:
    code = err.verify_code
    if code in _UNKNOWN_ISSUER or code in _SELF_SIGNED:
        issuer = f"the CA in {config.cacert}" if config.cacert else "a CA the system trusts (no --cacert)"
        return f"the server's certificate is not signed by {issuer} (certificate signed by unknown authority)"
    if code == _EXPIRED:
        return "the server's certificate has expired"
    if code == _NOT_YET_VALID:
        return "the server's certificate is not valid yet"
    if code in (_HOSTNAME_MISMATCH, _IP_MISMATCH):
        return f"the server's certificate is not valid for {host} (it names other hosts)"
    return f"the server's certificate was refused: {err.verify_message}"


def _handshake_failure(err: ssl.SSLError, config: TLSConfig) -> str:
    reason = err.reason or ""
    if reason in _CLIENT_CERT_ALERTS:
        alert = re.sub(r"^(SSLV3|TLSV1|TLSV13)_ALERT_", "", reason).replace("_", " ").lower()
        return _refused_client_certificate(config, f"it answered: {alert}")
    if reason in _NOT_TLS or isinstance(err, ssl.SSLEOFError):
        return _NOT_TLS_REASON
    return f"TLS handshake failed: {err.reason or err}"


def _refused_client_certificate(config: TLSConfig, how: str) -> str:
    if config.cert is None:
        return f"the server requires a client certificate, and none was given (--cert, --key); {how}"
    return f"the server refused the client certificate {config.cert}; {how}"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise TLSFileError(f"read {path}: is a directory") from None
    except OSError as err:
        raise TLSFileError(f"open {path}: {(err.strerror or str(err)).lower()}") from None


def _blocks(pem: bytes) -> list[tuple[str, bytes]]:
    """The PEM blocks of a file: (type, DER)."""
    blocks = []
    for found in _PEM_BLOCK.finditer(pem):
        body = b"".join(line for line in found[2].split() if b":" not in line)
        try:
            blocks.append((found[1].decode("ascii", "replace"), base64.b64decode(body)))
        except ValueError:
            continue
    return blocks


def _check_key_pair(cert_pem: bytes, key_pem: bytes) -> None:
    """Go's tls.X509KeyPair checks, with its texts."""
    cert_blocks = _blocks(cert_pem)
    certs = [der for kind, der in cert_blocks if kind == "CERTIFICATE"]
    if not certs:
        kinds = [kind for kind, _ in cert_blocks]
        if not kinds:
            raise TLSFileError("tls: failed to find any PEM data in certificate input")
        if any(kind.endswith("PRIVATE KEY") for kind in kinds):
            raise TLSFileError(
                "tls: failed to find certificate PEM data in certificate input, but did find a private key;"
                " PEM inputs may have been switched"
            )
        raise TLSFileError(
            'tls: failed to find "CERTIFICATE" PEM block in certificate input after skipping PEM blocks of'
            f" the following types: [{' '.join(kinds)}]"
        )
    key_blocks = _blocks(key_pem)
    keys = [der for kind, der in key_blocks if kind == "PRIVATE KEY" or kind.endswith(" PRIVATE KEY")]
    if not keys:
        kinds = [kind for kind, _ in key_blocks]
        if not kinds:
            raise TLSFileError("tls: failed to find any PEM data in key input")
        if kinds == ["CERTIFICATE"]:
            raise TLSFileError("tls: found a certificate rather than a key in the PEM for the private key")
        raise TLSFileError(
            'tls: failed to find PEM block with type ending in "PRIVATE KEY" in key input after skipping PEM'
            f" blocks of the following types: [{' '.join(kinds)}]"
        )
    try:
        cert = x509.load_der_x509_certificate(certs[0])
    except ValueError as err:
        raise TLSFileError(f"x509: malformed certificate ({err})") from None
    try:
        key = serialization.load_der_private_key(keys[0], password=None)
    except (ValueError, TypeError):
        raise TLSFileError("tls: failed to parse private key") from None
    public = cert.public_key()
    if not any(isinstance(key, private) and isinstance(public, kind) for private, kind in _KEY_KINDS):
        raise TLSFileError("tls: private key type does not match public key type")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != public.public_bytes(*spki):
        raise TLSFileError("tls: private key does not match public key")


def _check_roots(pem: bytes) -> None:
    """Go's NewCertPool: every PEM block must be a certificate (a file without any is no error)."""
    for kind, der in _blocks(pem):
        try:
            x509.load_der_x509_certificate(der)
        except ValueError:
            raise TLSFileError(f"x509: malformed certificate (a {kind} PEM block)") from None
