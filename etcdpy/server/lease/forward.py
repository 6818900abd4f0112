"""LeaderForwarder: a follower's keep-alives and time-to-live queries, sent on to the leader.

Only the leader counts leases down, so only its answer is right; etcd forwards
these two requests to the leader the same way.  Channels to the leader's first
client URL are opened on demand (by the member's client `Dialer`: TLS for an
``https://`` URL) and kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.server.tls import Dialer

FORWARD_TIMEOUT = 5.0  # seconds, etcd's default request timeout for a forwarded lease request

_LeaseStub: Any = rpc_pb2_grpc.LeaseStub  # the generated stubs are untyped


class LeaderForwarder:
    """Forwards lease requests to whichever member ``leader_urls`` names."""

    def __init__(self, leader_urls: Callable[[], list[str]], dialer: Dialer) -> None:
        self.leader_urls = leader_urls  # the current leader's client URLs; [] while there is no leader
        self.dialer = dialer
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def _stub(self) -> Any:
        urls = self.leader_urls()
        if not urls:
            raise errors.ErrNoLeader()
        channel = self._channels.get(urls[0])
        if channel is None:
            try:
                channel = self._channels[urls[0]] = await self.dialer.channel(urls[0])
            except OSError:  # an auto-tls dial could not fetch the leader's certificate
                raise errors.ErrNoLeader() from None
        return _LeaseStub(channel)

    async def keep_alive(self, lease_id: int) -> int:
        """The leader's renewal of ``lease_id``: its TTL, 0 if the lease is gone."""
        call = (await self._stub()).LeaseKeepAlive(timeout=FORWARD_TIMEOUT)
        try:
            await call.write(rpc_pb2.LeaseKeepAliveRequest(ID=lease_id))
            response = await call.read()
        except grpc.aio.AioRpcError as err:
            raise errors.from_status(err.code(), err.details() or "") from None
        finally:
            call.cancel()
        if not isinstance(response, rpc_pb2.LeaseKeepAliveResponse):  # the stream ended without an answer
            raise errors.ErrNoLeader()
        return int(response.TTL)

    async def time_to_live(self, request: rpc_pb2.LeaseTimeToLiveRequest) -> rpc_pb2.LeaseTimeToLiveResponse:
        try:
            response: rpc_pb2.LeaseTimeToLiveResponse = await (await self._stub()).LeaseTimeToLive(
                request, timeout=FORWARD_TIMEOUT
            )
        except grpc.aio.AioRpcError as err:
            raise errors.from_status(err.code(), err.details() or "") from None
        return response

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(0)
        self._channels.clear()
