"""TLS for the client and peer listeners and for the channels a member dials: files, checks, credentials.

One `TLSInfo` describes one side (client or peer), as etcd's ``transport.TLSInfo`` does.  This module
owns everything done with it:

* `check` reads the files with `cryptography` before grpc sees them (grpc fails later and silently):
  a missing or unreadable file, something that is not PEM, a key that does not match its certificate,
  a certificate outside its validity period each raise `TLSError` naming the file;
* `prepare` makes ``--auto-tls``/``--peer-auto-tls`` certificates (``cert.pem``, ``key.pem`` in
  ``<data-dir>/fixtures/client`` or ``fixtures/peer``, kept across restarts, as etcd);
* `server_credentials` serves with grpc's dynamic credentials: grpc asks `_Reloader` at every
  handshake, which compares the files' (inode, mtime, size) and re-reads them when they changed, so
  certificates replaced on disk serve the next connection without a restart;
* `Dialer` opens channels to other members: plaintext for ``http://``, TLS for ``https://`` with the
  files read again for every new channel;
* `CertificateGuard` is a server interceptor that checks the verified certificate of each call
  against ``--peer-cert-allowed-cn``/``--peer-cert-allowed-hostname`` and the CRLs, which grpcio
  cannot do;
* `cipher_suites_env` maps ``--cipher-suites`` (Go's names) to grpc's process-wide
  ``GRPC_SSL_CIPHER_SUITES`` (OpenSSL's names).

A verified client certificate's common name is in every call's ``context.auth_context()`` under
``x509_common_name``; `client_common_name` reads it.
"""

from __future__ import annotations

import asyncio
import datetime
import fnmatch
import inspect
import ipaddress
import logging
import os
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from etcdpy.server.http.splicer import client_peer

log = logging.getLogger("etcdpy.server.tls")

CERT_NAME, KEY_NAME = "cert.pem", "key.pem"  # etcd's file names under fixtures/client and fixtures/peer
SELF_CERT_DAYS = 365
CIPHER_SUITES_ENV = "GRPC_SSL_CIPHER_SUITES"
# TLS versions grpcio negotiates; it offers no way to narrow them (etcd 3.5's --tls-min/max-version).
GRPC_MIN_VERSION, GRPC_MAX_VERSION = "TLS1.2", "TLS1.3"
TLS_VERSIONS = ("TLS1.0", "TLS1.1", "TLS1.2", "TLS1.3")

# Go's cipher suite names (what --cipher-suites takes) -> OpenSSL's, for the TLS 1.2 suites BoringSSL
# (grpc's TLS library) implements; TLS 1.3 suites are not configurable, in Go as in grpc.
GO_CIPHER_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
}


class TLSError(Exception):
    """TLS files or settings a member cannot serve with; the message names the file or the check."""


@dataclass(frozen=True)
class TLSInfo:
    """One side's TLS settings (client or peer), etcd's flags with the prefix removed."""

    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    crl_file: str = ""
    auto_tls: bool = False
    allowed_cn: str = ""
    allowed_hostname: str = ""
    # Set for auto-tls certificates: members dialing with them do not verify the other side (as etcd).
    skip_verify: bool = False

    @property
    def has_cert(self) -> bool:
        return bool(self.cert_file or self.key_file)

    @property
    def requires_client_cert(self) -> bool:
        """etcd asks for a verified client certificate with --client-cert-auth or a trusted CA file."""
        return self.client_cert_auth or bool(self.trusted_ca_file)


# ---------------------------------------------------------------------------------------------- checks


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise TLSError(f"open {path}: {reason}") from None


def _certificates(path: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(_read(path))
    except ValueError:
        certs = []
    if not certs:
        raise TLSError(f"{path}: no PEM certificate found")
    return certs


def _check_dates(path: str, cert: x509.Certificate, now: datetime.datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise TLSError(
            f"certificate {path} is not valid before {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}"
        )
    if now > cert.not_valid_after_utc:
        raise TLSError(f"certificate {path} expired at {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")


def _public_der(key: Any) -> bytes:
    der: bytes = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def check(info: TLSInfo, flag_prefix: str = "") -> None:
    """Raise `TLSError` unless the files of `info` can serve: readable, PEM, matching, valid today."""
    now = datetime.datetime.now(datetime.UTC)
    if info.has_cert:
        if not info.cert_file or not info.key_file:
            raise TLSError(
                f"KeyFile and CertFile must both be present[key: {info.key_file}, cert: {info.cert_file}]"
                f" (--{flag_prefix}key-file, --{flag_prefix}cert-file)"
            )
        leaf = _certificates(info.cert_file)[0]
        try:
            key = serialization.load_pem_private_key(_read(info.key_file), password=None)
        except (ValueError, TypeError) as exc:
            raise TLSError(f"{info.key_file}: not a PEM private key without a passphrase ({exc})") from None
        if _public_der(leaf.public_key()) != _public_der(key.public_key()):
            raise TLSError(
                f"tls: private key does not match public key (key {info.key_file}, cert {info.cert_file})"
            )
        _check_dates(info.cert_file, leaf, now)
    if info.trusted_ca_file:
        for ca in _certificates(info.trusted_ca_file):
            _check_dates(info.trusted_ca_file, ca, now)
    if info.crl_file:
        _load_crl(info.crl_file)


def _load_crl(path: str) -> x509.CertificateRevocationList:
    data = _read(path)
    try:
        return x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
    except ValueError:
        raise TLSError(f"{path}: not a certificate revocation list") from None


# ------------------------------------------------------------------------------------------- auto-tls


def self_signed_info(directory: Path, given: TLSInfo) -> TLSInfo:
    """etcd's auto-tls settings: the self-signed files in `directory`, and nothing else of what was given.

    A self-signed certificate verifies nobody, so (as etcd) client certificate checks are dropped and
    members dialing with it do not verify the other side.
    """
    return TLSInfo(
        cert_file=str(directory / CERT_NAME),
        key_file=str(directory / KEY_NAME),
        auto_tls=True,
        skip_verify=True,
    )


def make_self_signed(cert_path: Path, key_path: Path, hosts: Sequence[str]) -> None:
    """etcd's SelfCert: a self-signed certificate for `hosts`, a year long (made once, kept).

    etcd's key is P-521; BoringSSL (grpc's TLS) offers no signature algorithm for P-521 in TLS 1.3
    (NO_COMMON_SIGNATURE_ALGORITHMS), so the key here is P-256.
    """
    cert_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "etcd")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=SELF_CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.info("created self-signed certificate %s for %s", cert_path, ", ".join(hosts))


def prepare(info: TLSInfo, urls: Sequence[str], flag_prefix: str = "") -> None:
    """Make the auto-tls files (for the hosts of `urls`) if they are missing, then `check` the files."""
    if info.auto_tls:
        cert_path, key_path = Path(info.cert_file), Path(info.key_file)
        if info.skip_verify and not (cert_path.exists() and key_path.exists()):
            hosts = [urlsplit(url).hostname or "" for url in urls]
            make_self_signed(cert_path, key_path, [h for h in hosts if h])
        elif not info.skip_verify:
            log.warning("ignoring --%sauto-tls: certificate files were given", flag_prefix)
    check(info, flag_prefix)


# ----------------------------------------------------------------------------------- server credentials


def _stamp(paths: Sequence[str]) -> tuple[tuple[int, int, int], ...]:
    """What tells a file replaced or rewritten, cheaply: (inode, mtime, size) of each path."""
    stamps = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            stamps.append((-1, -1, -1))
        else:
            stamps.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(stamps)


class _Reloader:
    """grpc's certificate fetcher: the files again when they changed on disk, else nothing new."""

    def __init__(self, info: TLSInfo) -> None:
        self.info = info
        self.paths = [p for p in (info.cert_file, info.key_file, info.trusted_ca_file) if p]
        self.stamp = _stamp(self.paths)  # of the files served now
        self.refused: tuple[tuple[int, int, int], ...] | None = None  # of files refused (logged once)

    def configuration(self) -> Any:
        info = self.info
        return grpc.ssl_server_certificate_configuration(
            [(_read(info.key_file), _read(info.cert_file))],
            root_certificates=_read(info.trusted_ca_file) if info.trusted_ca_file else None,
        )

    def __call__(self) -> Any:
        stamp = _stamp(self.paths)
        if stamp in (self.stamp, self.refused):
            return None
        try:
            check(self.info)
            config = self.configuration()
        except TLSError as exc:
            # A file half-written or replaced by a bad one: keep serving the last good certificate.
            log.warning("not reloading the TLS certificate: %s", exc)
            self.refused = stamp
            return None
        self.stamp = stamp
        log.info("reloaded the TLS certificate %s", self.info.cert_file)
        return config


def server_credentials(info: TLSInfo) -> grpc.ServerCredentials:
    """Credentials that re-read the certificate files whenever they change on disk."""
    reloader = _Reloader(info)
    return grpc.dynamic_ssl_server_credentials(
        reloader.configuration(), reloader, require_client_authentication=info.requires_client_cert
    )


def _ssl_context(info: TLSInfo) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(info.cert_file, info.key_file)
    if info.trusted_ca_file:
        context.load_verify_locations(info.trusted_ca_file)
    if info.crl_file:
        context.load_verify_locations(info.crl_file)
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    context.verify_mode = ssl.CERT_REQUIRED if info.requires_client_cert else ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    suites = os.environ.get(CIPHER_SUITES_ENV)  # --cipher-suites, set for grpc before it started
    if suites:
        context.set_ciphers(suites)
    return context


def server_ssl_context(info: TLSInfo) -> ssl.SSLContext:
    """The context HTTP/1.1 over TLS is served with (the front ends TLS for HTTP; grpcio does for gRPC).

    Like `server_credentials`, it follows the files on disk: at each handshake (OpenSSL's server name
    callback runs for every ClientHello) files that changed are checked and loaded into a new context
    the connection then uses; files that do not check keep the last good ones (logged once).
    """
    reloader = _Reloader(info)
    current = [_ssl_context(info)]

    def follow_files(conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext) -> None:
        stamp = _stamp(reloader.paths)
        if stamp not in (reloader.stamp, reloader.refused):
            try:
                check(info)
                fresh = _ssl_context(info)
            except (TLSError, ssl.SSLError, OSError) as exc:
                log.warning("not reloading the TLS certificate: %s", exc)
                reloader.refused = stamp
            else:
                fresh.sni_callback = follow_files
                current[0] = fresh
                reloader.stamp = stamp
                log.info("reloaded the TLS certificate %s", info.cert_file)
        if conn.context is not current[0]:
            conn.context = current[0]

    current[0].sni_callback = follow_files
    return current[0]


# ------------------------------------------------------------------------------------------- dialing


def _server_certificate(host: str, port: int) -> bytes:
    """The certificate a server presents, unverified (auto-tls members trust what they are shown)."""
    return ssl.get_server_certificate((host, port), timeout=2.0).encode()


def _any_name(cert_pem: bytes) -> str | None:
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for name in san:
        if isinstance(name, (x509.DNSName, x509.IPAddress)):
            return str(name.value)
    return None


@dataclass(frozen=True)
class Dialer:
    """Opens channels to other members' URLs with one side's TLS settings (plaintext for http://)."""

    info: TLSInfo = TLSInfo()
    map_address: Callable[[str], str] = lambda address: address  # where to dial instead (test proxies)

    async def channel(self, url: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
        """A channel to `url`; OSError when a file cannot be read now or an auto-tls peer shows nothing."""
        try:
            return await self._channel(url, options)
        except TLSError as exc:  # e.g. a certificate being replaced on disk: the caller retries later
            raise OSError(str(exc)) from None

    def target(self, url: str) -> tuple[str, str]:
        """(the host `url` names, the ``host:port`` to dial for it: a test proxy's, if one is mapped)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        address = f"[{host}]" if ":" in host else host
        return host, self.map_address(f"{'127.0.0.1' if host == 'localhost' else address}:{parts.port}")

    def ssl_context(self, alpn: Sequence[str]) -> ssl.SSLContext:
        """A client TLS context with this side's files (read now) offering `alpn`, for streams not on grpcio.

        auto-tls trusts whatever the peer shows, as `channel` does; TLSError when a file cannot be read.
        """
        info = self.info
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if info.skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif info.trusted_ca_file:
            context.load_verify_locations(cadata=_read(info.trusted_ca_file).decode())
        if info.cert_file and info.key_file:
            context.load_cert_chain(info.cert_file, info.key_file)
        context.set_alpn_protocols(list(alpn))
        return context

    async def _channel(self, url: str, options: Sequence[tuple[str, Any]]) -> grpc.aio.Channel:
        host, target = self.target(url)
        if urlsplit(url).scheme != "https":
            return grpc.aio.insecure_channel(target, options=list(options))
        info = self.info
        root: bytes | None = _read(info.trusted_ca_file) if info.trusted_ca_file else None
        name: str | None = host
        if info.skip_verify:
            # grpcio cannot skip verification: trust the certificate the server shows right now.
            t_host, _, t_port = target.rpartition(":")
            root = await asyncio.to_thread(_server_certificate, t_host.strip("[]"), int(t_port))
            name = _any_name(root) or host
        key = _read(info.key_file) if info.key_file else None
        cert = _read(info.cert_file) if info.cert_file else None
        credentials = grpc.ssl_channel_credentials(root, key, cert)
        return grpc.aio.secure_channel(
            target, credentials, options=[*options, ("grpc.ssl_target_name_override", name)]
        )


def explain_failure(url: str, details: str) -> str:
    """grpc's text for a failed call to `url`, with a hint when it looks like a refused certificate.

    A server that refuses the client's certificate closes the connection at the end of the TLS 1.3
    handshake: all the client sees is "Socket closed" (the server's log has the reason).
    """
    if url.startswith("https:") and "Socket closed" in details:
        return f"{details} (the peer may have refused this member's certificate)"
    return details


def client_dialer(info: TLSInfo) -> Dialer:
    """The dialer of other members' client URLs (forwarded lease requests, alarms).

    Without --trusted-ca-file there is nothing to verify another member's client certificate with
    (its CA is rarely among the system's): the member trusts the certificate it is shown, as with
    auto-tls, rather than fail every forwarded request.
    """
    return Dialer(info if info.trusted_ca_file else replace(info, skip_verify=True))


PLAINTEXT = Dialer()  # dials http:// URLs only (https:// ones get TLS without a certificate or a CA)


# -------------------------------------------------------------------------------- certificate checks


def client_common_name(context: Any) -> str | None:
    """The common name of the client's verified certificate, or None (no TLS or no client certificate)."""
    names = context.auth_context().get("x509_common_name")
    return names[0].decode() if names else None


def _host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return (
            "." in host
            and fnmatch.fnmatchcase(host.lower(), pattern.lower())
            and host.count(".") == pattern.count(".")
        )
    return pattern.lower() == host.lower()


@dataclass
class CertificateGuard(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses calls whose verified certificate is not allowed: by CN, by host name, or revoked by a CRL."""

    side: str  # "peer" or "client", for the log
    allowed_cn: str = ""
    allowed_hostname: str = ""
    crl_file: str = ""

    def __post_init__(self) -> None:
        self._crl_stamp: tuple[tuple[int, int, int], ...] = ()
        self._revoked: frozenset[int] = frozenset()

    @staticmethod
    def for_info(side: str, info: TLSInfo) -> CertificateGuard | None:
        if not (info.allowed_cn or info.allowed_hostname or info.crl_file):
            return None
        return CertificateGuard(side, info.allowed_cn, info.allowed_hostname, info.crl_file)

    def _revoked_serials(self) -> frozenset[int]:
        stamp = _stamp([self.crl_file])
        if stamp != self._crl_stamp:
            crl = _load_crl(self.crl_file)
            self._revoked = frozenset(r.serial_number for r in crl)
            self._crl_stamp = stamp
        return self._revoked

    def refusal(self, auth: dict[str, list[bytes]]) -> str | None:
        """Why the certificate in `auth` (a call's auth context) is refused, or None."""
        cns = [v.decode() for v in auth.get("x509_common_name", [])]
        if self.allowed_cn and self.allowed_cn not in cns:
            shown = repr(cns[0]) if cns else "(none)"
            return f"certificate CN {shown} is not --{self.side}-cert-allowed-cn {self.allowed_cn!r}"
        if self.allowed_hostname:
            sans = [v.decode() for v in auth.get("x509_subject_alternative_name", [])]
            if not any(_host_matches(san, self.allowed_hostname) for san in sans):
                return (
                    f"certificate (names {', '.join(sans) or 'none'}) is not valid for"
                    f" --{self.side}-cert-allowed-hostname {self.allowed_hostname!r}"
                )
        if self.crl_file:
            pems = auth.get("x509_pem_cert", [])
            if pems:
                serial = x509.load_pem_x509_certificate(pems[0]).serial_number
                if serial in self._revoked_serials():
                    return f"certificate serial {serial:x} is revoked by {self.crl_file}"
        return None

    async def _check(self, context: Any) -> None:
        reason = self.refusal(context.auth_context())
        if reason is not None:
            peer = client_peer(context.peer())  # behind the front, grpcio's peer names the client
            log.warning("refused a %s connection from %s: %s", self.side, peer, reason)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{self.side} {reason}")

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        wrapped = {}
        for field in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            behavior = getattr(handler, field)
            if behavior is not None:
                wrapped[field] = self._guard(behavior)
        return handler._replace(**wrapped)

    def _guard(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isasyncgenfunction(behavior):

            async def streaming(request: Any, context: Any) -> Any:
                await self._check(context)
                async for response in behavior(request, context):
                    yield response

            return streaming

        async def call(request: Any, context: Any) -> Any:
            await self._check(context)
            result = behavior(request, context)
            return await result if inspect.isawaitable(result) else result

        return call


# --------------------------------------------------------------------------------- process settings


def cipher_suites_env(suites: Sequence[str]) -> str:
    """``GRPC_SSL_CIPHER_SUITES`` for Go's cipher suite names; raises `TLSError` on one BoringSSL lacks."""
    names = []
    for suite in suites:
        name = GO_CIPHER_SUITES.get(suite)
        if name is None:
            raise TLSError(f'unexpected TLS cipher suite "{suite}"')
        names.append(name)
    return ":".join(dict.fromkeys(names))


def check_versions(min_version: str, max_version: str) -> None:
    """Refuse TLS versions grpcio cannot be told to use (it always negotiates TLS 1.2 to 1.3)."""
    for flag, value, supported in (
        ("--tls-min-version", min_version, GRPC_MIN_VERSION),
        ("--tls-max-version", max_version, GRPC_MAX_VERSION),
    ):
        if value and value not in TLS_VERSIONS:
            raise TLSError(f'unexpected TLS version "{value}" ({flag}; one of {", ".join(TLS_VERSIONS)})')
        if value and value != supported:
            raise TLSError(
                f"{flag}={value} is not supported: grpcio always negotiates {GRPC_MIN_VERSION} to"
                f" {GRPC_MAX_VERSION} and offers no setting to change it"
            )
