"""`etcdpy server` with TLS on its client URL: bad files refused at startup, etcdctl served as etcd
serves it (with and without client certificates), certificates reloaded from disk, auto-tls, CRLs,
cipher suites, and plaintext meeting TLS ending quickly on both sides.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cluster_support import etcdctl
from cryptography import x509
from e2e_support import run_to_exit
from procs import ServerProcess, free_port
from test_client_workers import wait_workers_listen
from tls_support import TLSServer, client_flags, etcdctl_tls, peer_flags
from tlscerts import PKI

from etcdpy.chaos.cluster import wait_until

KINDS = ["etcdpy", pytest.param("etcd", marks=pytest.mark.interop)]
# etcdctl 3.4 skips verification only with both flags (with the first alone it still verifies).
SKIP_VERIFY = ("--insecure-transport=false", "--insecure-skip-tls-verify")


def refused(tmp_path: Path, flags: list[str], *, peer_scheme: str = "http") -> str:
    """Start a member with `flags`; it must exit 1 with one line on stderr, which is returned."""
    server = TLSServer("etcdpy", tmp_path / "refused.data", peer_scheme=peer_scheme, extra_args=flags)
    result = run_to_exit(server)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("etcdpy: "), result.stderr
    return lines[0]


STARTUP_ERRORS: dict[str, tuple[Callable[[PKI], list[str]], Callable[[PKI], str]]] = {
    "missing cert file": (
        lambda p: ["--cert-file", str(p.directory / "missing.crt"), "--key-file", str(p.server.key)],
        lambda p: f"open {p.directory / 'missing.crt'}: no such file or directory",
    ),
    "unreadable cert file (a directory)": (
        lambda p: ["--cert-file", str(p.directory), "--key-file", str(p.server.key)],
        lambda p: f"open {p.directory}: is a directory",
    ),
    "key of another certificate": (
        lambda p: ["--cert-file", str(p.server.cert), "--key-file", str(p.mismatched_key)],
        lambda p: (
            f"tls: private key does not match public key (key {p.mismatched_key}, cert {p.server.cert})"
        ),
    ),
    "expired certificate": (
        lambda p: ["--cert-file", str(p.expired.cert), "--key-file", str(p.expired.key)],
        lambda p: f"certificate {p.expired.cert} expired at ",
    ),
    "not yet valid certificate": (
        lambda p: ["--cert-file", str(p.not_yet_valid.cert), "--key-file", str(p.not_yet_valid.key)],
        lambda p: f"certificate {p.not_yet_valid.cert} is not valid before ",
    ),
    "cert without key": (
        lambda p: ["--cert-file", str(p.server.cert)],
        lambda p: f"KeyFile and CertFile must both be present[key: , cert: {p.server.cert}]",
    ),
    "CA file that holds no certificate": (
        lambda p: [*client_flags(p, client_cert_auth=False), "--trusted-ca-file", str(p.server.key)],
        lambda p: f"{p.server.key}: no PEM certificate found",
    ),
    "missing CA file": (
        lambda p: [
            *client_flags(p, client_cert_auth=False),
            "--trusted-ca-file",
            str(p.directory / "no-ca.crt"),
        ],
        lambda p: f"open {p.directory / 'no-ca.crt'}: no such file or directory",
    ),
    "https without a certificate": (
        lambda p: [],
        lambda p: "TLS key/cert (--cert-file, --key-file) must be provided for client url https://",
    ),
    "unknown cipher suite": (
        lambda p: [*client_flags(p), "--cipher-suites", "TLS_NOT_A_SUITE"],
        lambda p: 'unexpected TLS cipher suite "TLS_NOT_A_SUITE"',
    ),
    "client CRL with the threaded server": (
        lambda p: [*client_flags(p), "--client-crl-file", str(p.crl([])), "--experimental-grpc-threads", "4"],
        lambda p: (
            "--client-crl-file and --client-cert-allowed-hostname are not checked by the threaded server"
        ),
    ),
    "TLS version grpcio cannot pin": (
        lambda p: [*client_flags(p), "--tls-min-version", "TLS1.3"],
        lambda p: "--tls-min-version=TLS1.3 is not supported: grpcio always negotiates TLS1.2 to TLS1.3",
    ),
}


@pytest.mark.parametrize("case", list(STARTUP_ERRORS))
def test_bad_tls_input_refuses_to_start_with_one_message_naming_it(
    tmp_path: Path, pki: PKI, case: str
) -> None:
    flags, expected = STARTUP_ERRORS[case]
    assert expected(pki) in refused(tmp_path, flags(pki))


def test_a_bad_peer_certificate_is_refused_naming_the_file(tmp_path: Path, pki: PKI) -> None:
    flags = [*client_flags(pki), *peer_flags(pki, pki.expired)]
    assert f"certificate {pki.expired.cert} expired at " in refused(tmp_path, flags, peer_scheme="https")


@pytest.fixture
def tls_server(request: pytest.FixtureRequest, tmp_path: Path, pki: PKI) -> Iterator[ServerProcess]:
    """A one-member server (etcdpy, or etcd for the interop parameter) with client certificates required."""
    server = TLSServer(request.param, tmp_path / "tls.data", peer_scheme="http", extra_args=client_flags(pki))
    server.start()
    yield server
    server.stop()


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1] if text.strip() else ""


@pytest.mark.parametrize("tls_server", KINDS, indirect=True)
def test_etcdctl_with_a_client_certificate_is_served_and_without_one_refused(
    tls_server: ServerProcess, pki: PKI
) -> None:
    url = tls_server.client_url
    transcript = [
        etcdctl_tls(url, pki, "put", "tls-key", "v1").stdout,
        etcdctl_tls(url, pki, "get", "tls-key").stdout,
        etcdctl_tls(url, pki, "get", "tls", "--prefix", "--keys-only").stdout,
        etcdctl_tls(url, pki, "del", "tls-key").stdout,
    ]
    assert transcript == ["OK\n", "tls-key\nv1\n", "tls-key\n\n", "1\n"]
    for args in (["--cacert", str(pki.ca)], ["--cacert", str(pki.ca), "--cert", str(pki.other_client.cert),
                 "--key", str(pki.other_client.key)]):  # fmt: skip
        result = etcdctl(url, *args, "get", "tls-key", check=False)
        assert (result.returncode, _last_line(result.stderr)) == (1, "Error: context deadline exceeded")


@pytest.mark.parametrize("kind", KINDS)
def test_etcdctl_without_client_certificates_needs_only_the_ca(tmp_path: Path, pki: PKI, kind: str) -> None:
    flags = client_flags(pki, client_cert_auth=False)
    server = TLSServer(kind, tmp_path / "s.data", peer_scheme="http", extra_args=flags).start()
    try:
        assert etcdctl(server.client_url, "--cacert", str(pki.ca), "put", "k", "v").stdout == "OK\n"
        assert etcdctl(server.client_url, "--cacert", str(pki.ca), "get", "k").stdout == "k\nv\n"
        unverified = etcdctl(server.client_url, "get", "k", check=False)  # the system's CAs do not know ours
        assert (unverified.returncode, _last_line(unverified.stderr)) == (
            1,
            "Error: context deadline exceeded",
        )
    finally:
        server.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_plaintext_and_tls_clients_on_the_wrong_port_end_with_an_error(
    tmp_path: Path, pki: PKI, kind: str
) -> None:
    server = TLSServer(kind, tmp_path / "s.data", peer_scheme="http")
    plain = free_port()  # a second, plaintext listener beside the TLS one
    listen = f"{server.client_url},http://127.0.0.1:{plain}"
    server.extra_args = [*client_flags(pki, client_cert_auth=False), "--listen-client-urls", listen]
    server.start()
    try:
        assert etcdctl(f"http://127.0.0.1:{plain}", "put", "k", "plain").stdout == "OK\n"
        assert (
            etcdctl(server.client_url, "--cacert", str(pki.ca), "get", "k", "--print-value-only").stdout
            == "plain\n"
        )
        on_tls = etcdctl(f"http://{server.endpoint}", "get", "k", check=False)
        assert on_tls.returncode == 1 and "Error:" in on_tls.stderr
        on_plain = etcdctl(f"https://127.0.0.1:{plain}", "--cacert", str(pki.ca), "get", "k", check=False)
        assert on_plain.returncode == 1 and "Error:" in on_plain.stderr
    finally:
        server.stop()


def _served_serial(port: int, alpn: str | None = None) -> int:
    """The serial of the certificate a new connection to `port` is shown (offering `alpn`: h2 is gRPC,
    which the client port's front hands to grpcio; without it the front ends TLS itself, for HTTP)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn is not None:
        context.set_alpn_protocols([alpn])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as tls_socket,
    ):
        der = tls_socket.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


@pytest.mark.parametrize("workers", [0, 2], ids=["member", "client-workers"])
def test_certificates_replaced_on_disk_serve_new_connections_without_a_restart(
    tmp_path: Path, pki: PKI, workers: int
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    flags = []
    for side, pair in (("", pki.server), ("peer-", pki.peer)):
        shutil.copy(pair.cert, served / f"{side}cert.pem")
        shutil.copy(pair.key, served / f"{side}key.pem")
        flags += [
            f"--{side}cert-file",
            str(served / f"{side}cert.pem"),
            f"--{side}key-file",
            str(served / f"{side}key.pem"),
        ]
    flags += ["--experimental-client-workers", str(workers)]
    server = TLSServer("etcdpy", tmp_path / "s.data", extra_args=flags).start()
    try:
        wait_workers_listen(server, workers, "grpcs")
        assert _served_serial(server.client_port) == _serial(pki.server.cert)
        assert _served_serial(server.client_port, "h2") == _serial(pki.server.cert)
        assert _served_serial(server.peer_port) == _serial(pki.peer.cert)
        for side in ("", "peer-"):
            renewed = pki.leaf(f"renewed-{side}server")
            for source, target in (
                (renewed.key, served / f"{side}key.pem"),
                (renewed.cert, served / f"{side}cert.pem"),
            ):
                shutil.copy(source, target.with_suffix(".new"))
                os.replace(target.with_suffix(".new"), target)
            port = server.peer_port if side else server.client_port
            assert _served_serial(port) == _serial(renewed.cert)
            assert _served_serial(port, "h2") == _serial(renewed.cert)
        assert etcdctl(server.client_url, "--cacert", str(pki.ca), "put", "k", "v").stdout == "OK\n"
        assert server.proc is not None and server.proc.poll() is None
        log = server.read_log()

        # Each TLS server that shook hands after the renewal reloads once: the front's HTTP/1.1 side (the
        # peer stream's, on the peer port) and each grpcio h2 went to: the member's, or with client
        # workers (taken in turn) both of them, as the h2 probe and etcdctl's connection go to different ones.
        def reloads(cert: str) -> list[str]:
            said = re.findall(
                r"etcdpy\.server\.tls(?: \((\S+)\))?: reloaded the TLS certificate (\S+)\n", log
            )
            return sorted(who or "member" for who, path in said if path == str(served / cert))

        assert reloads("peer-cert.pem") == ["member", "member"]
        if workers:
            assert reloads("cert.pem") == ["grpcs-worker-0", "grpcs-worker-1", "member"]
        else:
            assert reloads("cert.pem") == ["member", "member"]
    finally:
        server.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_auto_tls_makes_a_certificate_in_the_data_dir_and_keeps_it(tmp_path: Path, kind: str) -> None:
    server = TLSServer(kind, tmp_path / "s.data", peer_scheme="http", extra_args=["--auto-tls"]).start()
    try:
        made = server.data_dir / "fixtures" / "client" / "cert.pem"
        assert (server.data_dir / "fixtures" / "client" / "key.pem").stat().st_mode & 0o077 == 0
        first = made.read_bytes()
        assert etcdctl(server.client_url, *SKIP_VERIFY, "put", "k", "v").stdout == "OK\n"
        assert _served_serial(server.client_port) == _serial(made)
        server.stop()
        server.start()
        assert made.read_bytes() == first
        assert etcdctl(server.client_url, *SKIP_VERIFY, "get", "k", "--print-value-only").stdout == "v\n"
    finally:
        server.stop()


@pytest.mark.parametrize("workers", [0, 2], ids=["member", "client-workers"])
def test_a_client_certificate_the_crl_revokes_is_refused_and_others_are_served(
    tmp_path: Path, pki: PKI, workers: int
) -> None:
    """The member's grpcio checks the CRL; so does every client worker's (they serve TLS themselves)."""
    crl = pki.crl([pki.client_root.cert], name="revokes-root.crl")
    flags = [*client_flags(pki), "--client-crl-file", str(crl), "--experimental-client-workers", str(workers)]
    server = TLSServer("etcdpy", tmp_path / "s.data", peer_scheme="http", extra_args=flags).start()
    try:
        wait_workers_listen(server, workers, "grpcs")
        revoked = etcdctl_tls(server.client_url, pki, "put", "k", "v", check=False)
        assert revoked.returncode == 1
        assert f"is revoked by {crl}" in revoked.stderr
        alice = pki.client("alice")
        assert etcdctl_tls(server.client_url, pki, "put", "k", "v", client=alice).stdout == "OK\n"
        # Streams go through the same check: a keep-alive is one.
        lease = etcdctl_tls(server.client_url, pki, "lease", "grant", "30", client=alice).stdout.split()[1]
        kept = etcdctl_tls(
            server.client_url, pki, "lease", "keep-alive", "--once", lease, client=alice
        ).stdout
        assert kept == f"lease {lease} keepalived with TTL(30)\n"
        assert "refused a client connection" in server.read_log()
        if workers:  # refused by a worker's own guard, not passed to the member's grpcio
            lines = server.read_log().splitlines()
            assert any(re.search(r" \(grpcs-worker-\d\): refused a client", line) for line in lines)
    finally:
        server.stop()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_cipher_suites_limit_what_tls_1_2_clients_may_negotiate(tmp_path: Path, pki: PKI) -> None:
    flags = [
        *client_flags(pki, client_cert_auth=False),
        "--cipher-suites",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    ]
    server = TLSServer("etcdpy", tmp_path / "s.data", peer_scheme="http", extra_args=flags).start()

    def negotiated(cipher: str) -> str:
        result = subprocess.run(
            ["openssl", "s_client", "-connect", server.endpoint, "-tls1_2", "-cipher", cipher],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        return next((line for line in result.stdout.splitlines() if "Cipher is" in line), "")

    try:
        assert negotiated("ECDHE-ECDSA-AES256-GCM-SHA384").endswith("Cipher is ECDHE-ECDSA-AES256-GCM-SHA384")
        assert negotiated("ECDHE-ECDSA-AES128-GCM-SHA256").endswith("Cipher is (NONE)")
        assert etcdctl(server.client_url, "--cacert", str(pki.ca), "put", "k", "v").stdout == "OK\n"
    finally:
        server.stop()


def test_tls_flags_are_read_from_etcd_variables(
    tmp_path: Path, pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETCD_CERT_FILE", str(pki.server.cert))
    monkeypatch.setenv("ETCD_KEY_FILE", str(pki.server.key))
    server = TLSServer("etcdpy", tmp_path / "s.data", peer_scheme="http").start()
    try:
        assert etcdctl(server.client_url, "--cacert", str(pki.ca), "put", "k", "v").stdout == "OK\n"
    finally:
        server.stop()


def test_the_threaded_grpc_server_serves_tls_with_client_certificates(tmp_path: Path, pki: PKI) -> None:
    flags = [*client_flags(pki), "--experimental-grpc-threads", "4"]
    server = TLSServer("etcdpy", tmp_path / "s.data", peer_scheme="http", extra_args=flags).start()
    try:
        assert etcdctl_tls(server.client_url, pki, "put", "k", "v").stdout == "OK\n"
        anonymous = etcdctl(server.client_url, "--cacert", str(pki.ca), "get", "k", check=False)
        assert (anonymous.returncode, _last_line(anonymous.stderr)) == (1, "Error: context deadline exceeded")
    finally:
        server.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_a_server_certificate_for_another_host_starts_but_clients_refuse_it(
    tmp_path: Path, pki: PKI, kind: str
) -> None:
    flags = client_flags(pki, client_cert_auth=False, server=pki.wrong_host)
    server = TLSServer(kind, tmp_path / "s.data", peer_scheme="http", extra_args=flags).start()
    try:
        result = etcdctl(server.client_url, "--cacert", str(pki.ca), "put", "k", "v", check=False)
        assert (result.returncode, _last_line(result.stderr)) == (1, "Error: context deadline exceeded")
    finally:
        server.stop()


def test_client_cert_allowed_hostname_admits_only_certificates_for_that_host(
    tmp_path: Path, pki: PKI
) -> None:
    flags = [*client_flags(pki), "--client-cert-allowed-hostname", "node1.example"]
    server = TLSServer("etcdpy", tmp_path / "s.data", peer_scheme="http", extra_args=flags).start()
    try:
        node1 = pki.leaf("client-node1", ("node1.example",), common_name="node1")
        assert etcdctl_tls(server.client_url, pki, "put", "k", "v", client=node1).stdout == "OK\n"
        other = etcdctl_tls(server.client_url, pki, "put", "k", "v", check=False)  # root's: no host names
        assert other.returncode == 1
        assert "is not valid for --client-cert-allowed-hostname 'node1.example'" in other.stderr
    finally:
        server.stop()


@pytest.mark.parametrize("tls_server", KINDS, indirect=True)
def test_the_json_gateway_answers_over_https_on_the_client_url(tls_server: ServerProcess, pki: PKI) -> None:
    # The client URL's HTTP/1.1 side speaks TLS too, client certificate required, as etcd's does.
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(str(pki.client_root.cert), str(pki.client_root.key))

    def post(path: str, body: bytes) -> dict[str, object]:
        request = urllib.request.Request(f"{tls_server.client_url}{path}", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=15, context=context) as reply:
            answer: dict[str, object] = json.load(reply)
            return answer

    def version() -> dict[str, object]:
        with urllib.request.urlopen(f"{tls_server.client_url}/version", timeout=15, context=context) as reply:
            answer: dict[str, object] = json.load(reply)
            return answer

    # A fresh member answers "not_decided" for a moment, etcd as etcdpy.
    wait_until(lambda: version()["etcdcluster"] != "not_decided", 20, "no cluster version decided")
    assert version() == {"etcdserver": "3.4.23", "etcdcluster": "3.4.0"}
    assert "header" in post("/v3/kv/put", b'{"key": "aHR0cHM=", "value": "b2s="}')
    kvs = post("/v3/kv/range", b'{"key": "aHR0cHM="}')["kvs"]
    assert isinstance(kvs, list) and [(kv["key"], kv["value"]) for kv in kvs] == [("aHR0cHM=", "b2s=")]
    anonymous = ssl.create_default_context(cafile=str(pki.ca))  # no client certificate: refused
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"{tls_server.client_url}/version", timeout=15, context=anonymous).read()
