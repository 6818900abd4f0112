"""defrag: etcdpy's CLI and etcdctl 3.4 print the same, against etcd and against etcdpy."""

from __future__ import annotations

import subprocess
import sys

import pytest
from procs import ETCDCTL_BIN, ServerProcess, free_port

pytestmark = pytest.mark.interop


def run(tool: str, endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    if tool == "etcdctl":
        assert ETCDCTL_BIN is not None
        command = [ETCDCTL_BIN, "--endpoints", endpoint, *args]
    else:
        command = [sys.executable, "-m", "etcdpy", "--endpoints", endpoint, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("server", ["etcd", "etcdpy"], indirect=True)
@pytest.mark.parametrize("args", [(), ("--cluster",), ("-w", "json"), ("--cluster", "-w", "table")])
def test_defrag_transcripts_are_etcdctls(server: ServerProcess, args: tuple[str, ...]) -> None:
    etcdctl = run("etcdctl", server.endpoint, "defrag", *args)
    ours = run("etcdpy", server.endpoint, "defrag", *args)
    assert (ours.returncode, ours.stdout, ours.stderr) == (etcdctl.returncode, etcdctl.stdout, etcdctl.stderr)
    member = server.client_url if "--cluster" in args else server.endpoint
    assert ours.stdout == f"Finished defragmenting etcd member[{member}]\n"


def test_defrag_of_a_member_that_is_down(etcd_server: ServerProcess) -> None:
    down = f"127.0.0.1:{free_port()}"
    endpoints = f"{etcd_server.endpoint},{down}"
    etcdctl = run("etcdctl", endpoints, "--command-timeout=1s", "defrag")
    ours = run("etcdpy", endpoints, "--command-timeout=1s", "defrag")
    assert ours.returncode == etcdctl.returncode == 1
    assert ours.stdout == etcdctl.stdout == f"Finished defragmenting etcd member[{etcd_server.endpoint}]\n"
    # etcdctl's client logs a JSON warning line of its retries first; the error line is the same.
    failed = f"Failed to defragment etcd member[{down}] (context deadline exceeded)"
    assert etcdctl.stderr.splitlines()[-1] == failed
    assert ours.stderr == failed + "\n"
