"""The real etcdctl 3.4 works against etcdpy: put/get/txn, endpoint status and hashkv, member list."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest
from procs import ETCDCTL_BIN, ServerProcess

from etcdpy.server.consensus.membership import cluster_id, member_id

pytestmark = pytest.mark.interop


def etcdctl(server: ServerProcess, *args: str, stdin: str | None = None) -> str:
    if ETCDCTL_BIN is None:
        pytest.fail("reference etcdctl not installed: run ./scripts/test")
    env = {**os.environ, "ETCDCTL_API": "3"}
    result = subprocess.run(
        [ETCDCTL_BIN, f"--endpoints={server.endpoint}", "--dial-timeout=5s", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def status_json(server: ServerProcess) -> dict[str, Any]:
    [entry] = json.loads(etcdctl(server, "endpoint", "status", "-w", "json"))
    status: dict[str, Any] = entry["Status"]
    return status


def test_put_get_and_del(etcdpy_server: ServerProcess) -> None:
    assert etcdctl(etcdpy_server, "put", "foo", "bar") == "OK\n"
    assert etcdctl(etcdpy_server, "get", "foo") == "foo\nbar\n"
    got = json.loads(etcdctl(etcdpy_server, "get", "foo", "-w", "json"))
    assert got["kvs"][0]["create_revision"] == 2
    assert got["header"]["member_id"] == member_id([etcdpy_server.peer_url], "etcd-cluster")
    assert etcdctl(etcdpy_server, "del", "foo") == "1\n"
    assert etcdctl(etcdpy_server, "get", "foo") == ""


def test_txn_from_stdin(etcdpy_server: ServerProcess) -> None:
    etcdctl(etcdpy_server, "put", "k", "v1")
    script = 'value("k") = "v1"\n\nput k v2\n\nput k lost\n\n'
    assert etcdctl(etcdpy_server, "txn", stdin=script) == "SUCCESS\n\nOK\n"
    assert etcdctl(etcdpy_server, "txn", stdin=script) == "FAILURE\n\nOK\n"
    assert etcdctl(etcdpy_server, "get", "k", "--print-value-only") == "lost\n"


def test_endpoint_status_matches_a_fresh_etcd_apart_from_ids_and_size(
    etcdpy_server: ServerProcess, etcd_server: ServerProcess
) -> None:
    for server in (etcdpy_server, etcd_server):
        etcdctl(server, "put", "a", "1")
    ours, theirs = status_json(etcdpy_server), status_json(etcd_server)
    mid = member_id([etcdpy_server.peer_url], "etcd-cluster")
    assert (ours["header"]["member_id"], ours["leader"]) == (mid, mid)
    assert ours["header"]["cluster_id"] == cluster_id([mid])

    def masked(status: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in status.items() if k not in ("leader", "dbSize", "dbSizeInUse")}
        out["header"] = {k: v for k, v in status["header"].items() if k not in ("cluster_id", "member_id")}
        return out

    assert masked(ours) == masked(theirs)
    assert ours["raftIndex"] == ours["raftAppliedIndex"] == 5


def test_member_list(etcdpy_server: ServerProcess) -> None:
    mid = member_id([etcdpy_server.peer_url], "etcd-cluster")
    line = f"{mid:x}, started, default, {etcdpy_server.peer_url}, {etcdpy_server.client_url}, false\n"
    assert etcdctl(etcdpy_server, "member", "list") == line


def test_endpoint_hashkv_changes_with_writes_and_is_stable_without(etcdpy_server: ServerProcess) -> None:
    etcdctl(etcdpy_server, "put", "h", "1")

    def hashkv() -> int:
        [entry] = json.loads(etcdctl(etcdpy_server, "endpoint", "hashkv", "-w", "json"))
        value: int = entry["HashKV"]["hash"]
        return value

    first = hashkv()
    assert hashkv() == first
    etcdctl(etcdpy_server, "put", "h", "2")
    assert hashkv() != first
