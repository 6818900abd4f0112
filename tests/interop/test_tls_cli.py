"""etcdpy's CLI against a real etcd 3.4 that requires client certificates, next to etcdctl.

- The same commands (put, get, del, txn, member list, endpoint status and health, lease), each tool
  against a fresh TLS etcd, give the same output once ids, ports and sizes are masked.
- Every bad input on the client side (wrong CA, expired, not yet valid or wrong-host server
  certificate, client certificate missing or refused, a key that does not match its certificate,
  unreadable files, TLS on a plaintext port and plaintext on a TLS port) ends with etcdctl's exit code
  and one ``Error:`` line: etcdctl's own where it names the problem, a line naming the failed check
  where etcdctl only says ``context deadline exceeded`` once its time is up.  etcdpy is given an hour
  for each command, so a run that waited for the deadline instead of failing at once would hang (and
  the subprocess guard would fail it); nothing else of grpc's may reach stderr.
- ``--insecure-skip-tls-verify`` reaches servers whose certificates fail those checks, as etcdctl does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from interop_cases import Step
from interop_runner import ServerFacts, mask
from procs import ETCDCTL_BIN, ServerProcess, without_zap_lines
from tls_procs import HttpsServer, client_tls_args, tls_server
from tlscerts import PKI

from etcdpy.client import Client, TLSConfig

pytestmark = pytest.mark.interop

ETCDPY = (sys.executable, "-m", "etcdpy")
# A hang guard, not a measurement: every command here ends by itself long before.
_GUARD = 120


@dataclass(frozen=True)
class Run:
    stdout: str
    stderr: str
    code: int


def run(tool: tuple[str, ...], *argv: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> Run:
    """One command of ``tool`` (etcdctl or etcdpy) as a process: ETCDCTL_* variables only from ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ETCDCTL_", "GRPC_"))}
    proc = subprocess.run(
        [*tool, *argv], input=stdin, capture_output=True, env={**clean, **(env or {})}, timeout=_GUARD
    )
    return Run(proc.stdout.decode(), proc.stderr.decode(), proc.returncode)


def etcdctl(*argv: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> Run:
    assert ETCDCTL_BIN is not None
    # etcdctl waits for its command timeout before it reports a refused handshake: keep it short.
    return run((ETCDCTL_BIN,), "--dial-timeout=1s", "--command-timeout=2s", *argv, stdin=stdin, env=env)


def etcdpy(*argv: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> Run:
    return run(ETCDPY, "--command-timeout=1h", *argv, stdin=stdin, env=env)


def error_lines(stderr: str) -> list[str]:
    """etcdctl's ``Error:`` lines (it also logs JSON warnings on stderr)."""
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


# -- the same output


TXN = b'value("greeting") = "hello"\n\nput greeting bonjour\n\nput greeting hallo\n\n'
STEPS = (
    Step(("put", "greeting", "hello")),
    Step(("put", "greeting", "hello", "--prev-kv")),
    Step(("get", "greeting")),
    Step(("get", "greeting", "-w", "json")),
    Step(("txn", "-w", "json"), TXN),
    Step(("get", "greeting", "--print-value-only")),
    Step(("del", "greeting")),
    Step(("del", "greeting")),
    Step(("member", "list")),
    Step(("member", "list", "-w", "json")),
    Step(("endpoint", "status")),
    Step(("endpoint", "status", "-w", "json")),
    Step(("endpoint", "health")),
    Step(("endpoint", "health", "--cluster")),
    Step(("endpoint", "status", "--cluster", "-w", "json")),
    Step(("lease", "grant", "600")),
    Step(("lease", "list")),
)


def _mask_more(text: str) -> str:
    """Lease ids (random per server), raft indexes (a fresh member may append an entry any time)."""
    text = re.sub(r"lease [0-9a-f]+ granted", "lease <LEASE> granted", text)
    text = re.sub(
        r"(?m)^found (\d+) leases\n((?:[0-9a-f]+\n)*)", lambda m: f"found {m[1]} leases\n<IDS>\n", text
    )
    text = re.sub(r'"(raft_index|raftIndex|raftAppliedIndex)":\d+', r'"\1":<INDEX>', text)
    return re.sub(r"(true|false), <TERM>, \d+, \d+, ", r"\1, <TERM>, <INDEX>, <INDEX>, ", text)


# Per step: the command, its masked stdout and stderr, its exit code.
Transcript = list[tuple[str, str, str, int]]


def transcript(tool: Callable[..., Run], server: HttpsServer, pki: PKI) -> Transcript:
    """Every step through ``tool`` against ``server``: the command, masked stdout and errors, exit code."""
    endpoint = server.client_url
    with Client([endpoint], tls=TLSConfig(pki.ca, pki.client_root.cert, pki.client_root.key)) as client:
        header = client.member_list().header
    facts = ServerFacts(endpoint, (server.client_port, server.peer_port), header.cluster_id, header.member_id)
    rows = []
    for step in STEPS:
        result = tool(f"--endpoints={endpoint}", *client_tls_args(pki), *step.argv, stdin=step.stdin)
        rows.append(
            (
                " ".join(step.argv),
                _mask_more(mask(result.stdout, facts, step)),
                # etcdctl's stderr without its JSON log lines; for etcdpy all of it (a grpc log line
                # would show here): health reports go there too.
                mask(without_zap_lines(result.stderr), facts, step),
                result.code,
            )
        )
    return rows


def transcript_on(kind: str, tool: Callable[..., Run], pki: PKI, directory: Path) -> Transcript:
    """`transcript` against a fresh one-member TLS ``kind`` server, stopped afterwards."""
    server = tls_server(kind, directory / "data", pki)
    try:
        return transcript(tool, server, pki)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def reference(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Transcript:
    """etcdctl against a TLS etcd: the transcript the others must match."""
    rows = transcript_on("etcd", etcdctl, pki, tmp_path_factory.mktemp("reference"))
    assert [row[3] for row in rows] == [0] * len(STEPS), rows
    return rows


@pytest.mark.parametrize(
    ("kind", "tool"),
    [("etcd", etcdpy), ("etcdpy", etcdctl), ("etcdpy", etcdpy)],
    ids=["etcdpy-cli-vs-etcd", "etcdctl-vs-etcdpy", "etcdpy-cli-vs-etcdpy"],
)
def test_same_output_as_etcdctl_against_tls_etcd(
    kind: str, tool: Callable[..., Run], reference: Transcript, pki: PKI, tmp_path: Path
) -> None:
    assert transcript_on(kind, tool, pki, tmp_path) == reference


# -- bad input


Servers = Callable[..., ServerProcess]


@pytest.fixture(scope="module")
def servers(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """Servers by name and kind (etcd unless told), started on first use, all stopped with the module:
    ``good`` (the CA's server certificate, client certificates required), ``expired``,
    ``not-yet-valid``, ``wrong-host`` (the same with that server certificate) and ``plain`` (no TLS)."""
    started: dict[tuple[str, str], ServerProcess] = {}
    certificates = {"expired": pki.expired, "not-yet-valid": pki.not_yet_valid, "wrong-host": pki.wrong_host}

    def get(name: str, kind: str = "etcd") -> ServerProcess:
        if (name, kind) not in started:
            data = tmp_path_factory.mktemp(f"{kind}-{name}") / "data"
            if name == "plain":
                started[name, kind] = ServerProcess(kind, data).start()
            else:
                started[name, kind] = tls_server(kind, data, pki, certificates.get(name))
        return started[name, kind]

    yield get
    for server in started.values():
        server.stop()


def _https(server: ServerProcess) -> str:
    return f"https://127.0.0.1:{server.client_port}"


def _http(server: ServerProcess) -> str:
    return f"http://127.0.0.1:{server.client_port}"


@dataclass(frozen=True)
class BadInput:
    """A command line that must fail: the server it goes to, its flags, and etcdpy's Error line
    (``{ep}`` stands for the endpoint); None where etcdctl's own line is expected."""

    server: str
    flags: Callable[[PKI, ServerProcess], list[str]]
    message: str | None = None


def _with(**files: str) -> Callable[[PKI, ServerProcess], list[str]]:
    """TLS flags to an https endpoint: the default client's files, some replaced (attribute paths of
    the PKI, e.g. ``cacert="other_ca"``, or literal paths, or "" to leave the flag out)."""

    def flags(pki: PKI, server: ServerProcess) -> list[str]:
        chosen = {"cacert": str(pki.ca), "cert": str(pki.client_root.cert), "key": str(pki.client_root.key)}
        for name, value in files.items():
            chosen[name] = _resolve(pki, value)
        given = [f"--{name}={path}" for name, path in chosen.items() if path]
        return [f"--endpoints={_https(server)}", *given]

    return flags


def _resolve(pki: PKI, value: str) -> str:
    if not value or value.startswith("/"):
        return value
    target: object = pki
    for part in value.split("."):
        target = getattr(target, part)
    return str(target)


_UNKNOWN_CA = (
    "{ep}: the server's certificate is not signed by the CA in {other_ca}"
    " (certificate signed by unknown authority)"
)
_NO_CLIENT_CERT = "{ep}: the server requires a client certificate, and none was given (--cert, --key)"
# How the server said no: etcd sends an alert, etcdpy's listener closes the connection.
_HOW_REFUSED = r"; (it answered: bad certificate|the connection was closed)"


def _refused(name: str) -> str:
    return "{ep}: the server refused the client certificate {" + name + "}"


BAD_INPUTS = {
    "wrong CA": BadInput("good", _with(cacert="other_ca"), _UNKNOWN_CA),
    "expired server certificate": BadInput("expired", _with(), "{ep}: the server's certificate has expired"),
    "not yet valid server certificate": BadInput(
        "not-yet-valid", _with(), "{ep}: the server's certificate is not valid yet"
    ),
    "wrong host": BadInput(
        "wrong-host",
        _with(),
        "{ep}: the server's certificate is not valid for 127.0.0.1 (it names other hosts)",
    ),
    "no client certificate": BadInput("good", _with(cert="", key=""), _NO_CLIENT_CERT),
    "client certificate of another CA": BadInput(
        "good", _with(cert="other_client.cert", key="other_client.key"), _refused("other_client_cert")
    ),
    "expired client certificate": BadInput(
        "good", _with(cert="expired.cert", key="expired.key"), _refused("expired_cert")
    ),
    "key that does not match its certificate": BadInput("good", _with(key="mismatched_key")),
    "missing CA file": BadInput("good", _with(cacert="/nonexistent/ca.crt")),
    "missing key file": BadInput("good", _with(key="/nonexistent/client.key")),
    "certificate file is a directory": BadInput("good", _with(cert="/")),
    "key file holds a certificate": BadInput("good", _with(key="client_root.cert")),
    "certificate file holds a key": BadInput("good", _with(cert="client_root.key")),
    "certificate without its key": BadInput("good", _with(key="")),
    "certificate file without PEM data": BadInput("good", _with(cert="not_pem")),
    "key file without PEM data": BadInput("good", _with(key="not_pem")),
    "CA file without a certificate": BadInput(
        "good",
        _with(cacert="not_pem"),
        "{ep}: cannot verify the server's certificate: {not_pem} holds no PEM certificate",
    ),
    "TLS client on a plaintext port": BadInput(
        "plain",
        _with(),
        "{ep}: the server does not speak TLS (a plaintext port? use http:// and no TLS flags)",
    ),
    "plaintext client on a TLS port": BadInput(
        "good",
        lambda pki, server: [f"--endpoints={_http(server)}"],
        "{ep}: the server expects TLS (use an https:// endpoint, or --cacert, --cert and --key)",
    ),
}


# Every case against etcd; those that need only a well configured server against etcdpy too.
_BAD_INPUT_RUNS = [(name, "etcd") for name in BAD_INPUTS] + [
    (name, "etcdpy") for name, case in BAD_INPUTS.items() if case.server in ("good", "plain")
]


@pytest.mark.parametrize(("name", "kind"), _BAD_INPUT_RUNS)
def test_bad_input_fails_at_once_with_one_clear_line(
    name: str, kind: str, pki: PKI, servers: Servers
) -> None:
    case = BAD_INPUTS[name]
    server = servers(case.server, kind)
    flags = case.flags(pki, server)
    reference = etcdctl(*flags, "get", "greeting")
    ours = etcdpy(*flags, "get", "greeting")
    assert ours.code == reference.code != 0, (reference, ours)
    assert ours.stdout == reference.stdout == ""
    if case.message is None:
        # etcdctl names the problem itself: the same line, word for word.
        assert ours.stderr.splitlines() == error_lines(reference.stderr), (reference, ours)
        return
    assert error_lines(reference.stderr) == ["Error: context deadline exceeded"]
    endpoint = next(flag.split("=", 1)[1] for flag in flags if flag.startswith("--endpoints="))
    paths = {
        "other_ca": pki.other_ca,
        "other_client_cert": pki.other_client.cert,
        "expired_cert": pki.expired.cert,
        "not_pem": pki.not_pem,
    }
    expected = re.escape("Error: " + case.message.format(ep=endpoint, **paths))
    if case.message in (_NO_CLIENT_CERT, _refused("other_client_cert"), _refused("expired_cert")):
        expected += _HOW_REFUSED
    assert len(ours.stderr.splitlines()) == 1, ours.stderr
    assert re.fullmatch(expected, ours.stderr.rstrip("\n")), ours.stderr


# -- skipping verification


@pytest.mark.parametrize(
    ("server_name", "cacert"),
    [("expired", "ca"), ("not-yet-valid", "ca"), ("wrong-host", "ca"), ("good", "other_ca")],
)
def test_insecure_skip_tls_verify_reaches_servers_that_fail_the_checks(
    server_name: str, cacert: str, pki: PKI, servers: Servers
) -> None:
    server = servers(server_name)
    flags = [*_with(cacert=cacert)(pki, server), "--insecure-skip-tls-verify"]
    key = f"skip-{server_name}"
    for tool in (etcdctl, etcdpy):
        put = tool(*flags, "put", key, "v")
        assert (put.stdout, put.code) == ("OK\n", 0), put
    reference, ours = etcdctl(*flags, "get", key), etcdpy(*flags, "get", key)
    assert (ours.stdout, ours.code) == (reference.stdout, reference.code) == (f"{key}\nv\n", 0)
    assert ours.stderr == ""


# -- the same through ETCDCTL_* variables


def test_tls_options_from_etcdctl_variables(pki: PKI, servers: Servers) -> None:
    good, expired = servers("good"), servers("expired")
    files = {
        "ETCDCTL_CACERT": str(pki.ca),
        "ETCDCTL_CERT": str(pki.client_root.cert),
        "ETCDCTL_KEY": str(pki.client_root.key),
    }
    for tool in (etcdctl, etcdpy):
        put = tool("put", "from-env", "v", env={**files, "ETCDCTL_ENDPOINTS": _https(good)})
        assert (put.stdout, put.code) == ("OK\n", 0), put
    env = {**files, "ETCDCTL_ENDPOINTS": _https(good)}
    reference, ours = etcdctl("get", "from-env", env=env), etcdpy("get", "from-env", env=env)
    assert (
        (ours.stdout, ours.stderr, ours.code)
        == (reference.stdout, "", reference.code)
        == ("from-env\nv\n", "", 0)
    )
    skipping = {**files, "ETCDCTL_ENDPOINTS": _https(expired), "ETCDCTL_INSECURE_SKIP_TLS_VERIFY": "true"}
    reference, ours = etcdctl("get", "nothing", env=skipping), etcdpy("get", "nothing", env=skipping)
    assert (ours.stdout, ours.stderr, ours.code) == (reference.stdout, "", reference.code) == ("", "", 0)
    wrong_ca = {**env, "ETCDCTL_CACERT": str(pki.other_ca)}
    reference, ours = etcdctl("get", "from-env", env=wrong_ca), etcdpy("get", "from-env", env=wrong_ca)
    assert ours.code == reference.code == 1
    assert ours.stderr.startswith(
        f"Error: {_https(good)}: the server's certificate is not signed by the CA in"
    )


def test_watch_with_a_failed_handshake_ends_at_once(pki: PKI, servers: Servers) -> None:
    # etcdctl's watch retries for ever here (so it is not run); etcdpy's ends with etcdctl's exit code
    # for a failed command and the check named.
    good = servers("good")
    flags = _with(cacert="other_ca")(pki, good)
    ours = etcdpy(*flags, "watch", "greeting")
    assert (ours.stdout, ours.code) == ("", 1)
    assert ours.stderr == (
        f"Error: {_https(good)}: the server's certificate is not signed by the CA in {pki.other_ca}"
        " (certificate signed by unknown authority)\n"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ("put", "greeting", "hello"),
        ("del", "greeting"),
        ("member", "list"),
        ("endpoint", "health"),
        ("endpoint", "status"),
        ("endpoint", "hashkv"),
        ("lease", "grant", "10"),
    ],
    ids=" ".join,
)
def test_every_command_names_the_failed_check_where_etcdctl_says_it_timed_out(
    argv: tuple[str, ...], pki: PKI, servers: Servers
) -> None:
    good = servers("good")
    flags = _with(cacert="other_ca")(pki, good)
    reference, ours = etcdctl(*flags, *argv), etcdpy(*flags, *argv)
    assert (ours.stdout, ours.code) == (reference.stdout, reference.code) != ("", 0)
    reason = _UNKNOWN_CA.format(ep=_https(good), other_ca=pki.other_ca)
    assert "context deadline exceeded" in reference.stderr
    assert ours.stderr == without_zap_lines(reference.stderr).replace("context deadline exceeded", reason)
