"""Fixtures for tests against real `etcdpy server` processes: gRPC stubs and one-shot runs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from procs import ServerProcess

from etcdpy.api.etcdserverpb import rpc_pb2_grpc


@dataclass
class Stubs:
    """Generated etcd stubs on one channel to a server."""

    channel: grpc.Channel
    kv: rpc_pb2_grpc.KVStub
    maintenance: rpc_pb2_grpc.MaintenanceStub
    cluster: rpc_pb2_grpc.ClusterStub
    lease: rpc_pb2_grpc.LeaseStub


def connect(server: ServerProcess) -> Stubs:
    channel = grpc.insecure_channel(server.endpoint)
    return Stubs(
        channel,
        rpc_pb2_grpc.KVStub(channel),
        rpc_pb2_grpc.MaintenanceStub(channel),
        rpc_pb2_grpc.ClusterStub(channel),
        rpc_pb2_grpc.LeaseStub(channel),
    )


@pytest.fixture
def stubs(etcdpy_server: ServerProcess) -> Iterator[Stubs]:
    client = connect(etcdpy_server)
    yield client
    client.channel.close()


def run_to_exit(server: ServerProcess, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run the server's command to completion (for members that must refuse to start)."""
    return subprocess.run(server.command(), capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "member.data"
