"""A third-party client, aetcd (from PyPI), works unchanged against etcdpy.

The same scenario (aetcd_scenario.py: put, get, prefix get, txn both ways,
delete) runs against the reference etcd, which proves the scenario itself, and
against an etcdpy server.  It runs in a child process: aetcd's bundled protos
cannot share a process with etcdpy.api's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from procs import ServerProcess

SCENARIO = Path(__file__).with_name("aetcd_scenario.py")


@pytest.mark.server_kinds("etcd", "etcdpy")
def test_aetcd_put_get_delete_txn(server: ServerProcess) -> None:
    run = subprocess.run(
        [sys.executable, str(SCENARIO), "127.0.0.1", str(server.client_port)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, f"aetcd scenario failed against {server.kind}:\n{run.stderr}"
