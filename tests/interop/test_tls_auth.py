"""Client-certificate auth end to end: the certificate's common name is the user when no token is given.

A real etcd 3.4 and etcdpy, each with an https client URL, ``--client-cert-auth``, ``--trusted-ca-file``
and a server certificate from tests/tlscerts.py, get the same users: root (role root, with a password)
and alice (role ``a``: readwrite on the prefix ``a/``), then auth is enabled.  Then etcdctl and
etcdpy's CLI, each with a client certificate and no ``--user``:

- CN alice: ``put a/1 x`` is allowed, ``put b/1 x`` is refused with etcd's permission-denied error,
  ``get a/1`` reads the value;
- CN root: an admin call (``user list``) works;
- CN nobody (no such user): a read is refused as etcd refuses it.

The reference is etcdctl against etcd; the three other pairs (etcdpy's CLI against etcd, etcdctl and
etcdpy's CLI against etcdpy) must print the same stdout and ``Error:`` lines and exit with the same code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from procs import ETCDCTL_BIN, ServerProcess
from tls_procs import client_tls_args, tls_server
from tlscerts import PKI

from etcdpy.client import Client, TLSConfig
from etcdpy.client.auth import PermissionType

pytestmark = pytest.mark.interop

# A hang guard, not a measurement: every command here ends by itself long before.
_GUARD = 120

# (certificate common name, command) in the order they run.
STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("alice", ("put", "a/1", "x")),
    ("alice", ("put", "b/1", "x")),
    ("alice", ("get", "a/1")),
    ("alice", ("get", "b/1")),
    ("root", ("user", "list")),
    ("root", ("put", "b/1", "y")),
    ("nobody", ("get", "a/1")),
    ("nobody", ("put", "a/1", "z")),
    ("alice", ("get", "a/1")),
)


def _tool_argv(tool: str) -> list[str]:
    if tool == "etcdctl":
        assert ETCDCTL_BIN is not None, "the reference etcdctl is not installed"
        return [ETCDCTL_BIN, "--dial-timeout=2s", "--command-timeout=5s"]
    return [sys.executable, "-m", "etcdpy", "--command-timeout=1h"]


def _run(tool: str, *argv: str) -> tuple[str, list[str], int]:
    """One command (ETCDCTL_* variables removed): stdout, its ``Error:`` lines, exit code."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ETCDCTL_", "GRPC_"))}
    proc = subprocess.run(
        [*_tool_argv(tool), *argv], capture_output=True, text=True, env=clean, timeout=_GUARD, check=False
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    if tool == "etcdpy":  # etcdctl also logs JSON warnings on stderr; etcdpy prints its error alone
        assert proc.stderr.splitlines() == errors, proc.stderr
    return proc.stdout, errors, proc.returncode


def _set_up_auth(server: ServerProcess, pki: PKI) -> None:
    """root (role root, password) and alice (role a: readwrite on a/), then auth enabled."""
    tls = TLSConfig(pki.ca, pki.client_root.cert, pki.client_root.key)
    with Client([server.client_url], tls=tls) as admin:
        admin.user_add("root", "rootpw")
        admin.role_add("root")
        admin.user_grant_role("root", "root")
        admin.role_add("a")
        admin.role_grant_permission("a", "a/", perm_type=PermissionType.READWRITE, prefix=True)
        admin.user_add("alice", "apw")
        admin.user_grant_role("alice", "a")
        admin.auth_enable()


@pytest.fixture(scope="module")
def servers(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    """One TLS member of each kind with the users above and auth enabled."""
    started: dict[str, ServerProcess] = {}
    try:
        for kind in ("etcd", "etcdpy"):
            started[kind] = tls_server(kind, tmp_path_factory.mktemp(f"tlsauth-{kind}") / "data", pki)
            _set_up_auth(started[kind], pki)
        yield started
    finally:
        for server in started.values():
            server.stop()


Transcript = list[tuple[str, str, tuple[str, list[str], int]]]


def transcript(tool: str, server: ServerProcess, pki: PKI) -> Transcript:
    """Every step through ``tool`` against ``server``, each with the certificate of its common name."""
    rows: Transcript = []
    for name, argv in STEPS:
        certificate = pki.client_root if name == "root" else pki.client(name)
        assert certificate.common_name == name
        flags = [f"--endpoints={server.client_url}", *client_tls_args(pki, certificate)]
        rows.append((name, " ".join(argv), _run(tool, *flags, *argv)))
    return rows


@pytest.fixture(scope="module")
def reference(servers: dict[str, ServerProcess], pki: PKI) -> Transcript:
    """etcdctl against etcd, and what it must say (so a change of the reference is seen, not copied)."""
    rows = transcript("etcdctl", servers["etcd"], pki)
    said = {(name, command): result for name, command, result in rows}
    assert said["alice", "put a/1 x"] == ("OK\n", [], 0)
    assert said["alice", "put b/1 x"] == ("", ["Error: etcdserver: permission denied"], 1)
    assert said["alice", "get a/1"] == ("a/1\nx\n", [], 0)
    assert said["root", "user list"] == ("alice\nroot\n", [], 0)
    assert said["nobody", "get a/1"] == ("", ["Error: etcdserver: permission denied"], 1)
    return rows


@pytest.mark.parametrize(
    ("kind", "tool"),
    [("etcd", "etcdpy"), ("etcdpy", "etcdctl"), ("etcdpy", "etcdpy")],
    ids=["etcdpy-cli-vs-etcd", "etcdctl-vs-etcdpy", "etcdpy-cli-vs-etcdpy"],
)
def test_common_name_is_the_user(
    kind: str, tool: str, servers: dict[str, ServerProcess], pki: PKI, reference: Transcript
) -> None:
    assert transcript(tool, servers[kind], pki) == reference
