"""Helpers for tests against real `etcdpy server` processes: gRPC stubs and one-shot runs."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import grpc
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


def run_to_exit(server: ServerProcess, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run the server's command to completion (for members that must refuse to start)."""
    return subprocess.run(server.command(), capture_output=True, text=True, timeout=timeout, check=False)
