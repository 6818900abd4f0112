"""grpcio's options for the servers of client calls: the member's own, and every client worker's."""

from __future__ import annotations

MAX_PENDING_CALLS = 100_000  # calls received but not yet taken up by a handler, before grpc refuses


def grpc_server_options(max_receive_bytes: int, max_concurrent_streams: int) -> list[tuple[str, int]]:
    """grpcio's options for a server of client calls (the member's, and every client worker's)."""
    return [
        ("grpc.so_reuseport", 0),  # a port in use must fail, not be shared with another server
        ("grpc.max_receive_message_length", max_receive_bytes),
        ("grpc.max_send_message_length", 2**31 - 1),
        ("grpc.max_concurrent_streams", min(max_concurrent_streams, 2**31 - 1)),
        # grpc cancels calls at random once more than 1,000 wait for the server to take them up (a
        # busy loop falls behind a burst): queue them instead, as etcd does (see bench/RESULTS.md).
        ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
        ("grpc.server.max_pending_requests_hard_limit", 2 * MAX_PENDING_CALLS),
    ]
