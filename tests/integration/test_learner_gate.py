"""A learner answers only Status and serializable Range, on the aio and the threaded gRPC servers."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from procs import free_port

from etcdpy.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.server.services.learner import gated
from etcdpy.server.services.threaded import on_loop

REFUSED = "etcdserver: rpc not supported for learner"


class AsyncKV(rpc_pb2_grpc.KVServicer):
    async def Range(self, request: rpc_pb2.RangeRequest, context: Any) -> rpc_pb2.RangeResponse:
        return rpc_pb2.RangeResponse(count=7)

    async def Put(self, request: rpc_pb2.PutRequest, context: Any) -> rpc_pb2.PutResponse:
        return rpc_pb2.PutResponse()


def calls(port: int) -> list[str]:
    """What each call gives: "ok" or the refusal's details."""
    out = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        for call in (
            lambda: kv.Range(rpc_pb2.RangeRequest(key=b"k", serializable=True)),
            lambda: kv.Range(rpc_pb2.RangeRequest(key=b"k")),
            lambda: kv.Put(rpc_pb2.PutRequest(key=b"k")),
        ):
            try:
                call()
                out.append("ok")
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE
                out.append(err.details())
    return out


@pytest.mark.parametrize("learner", [True, False])
def test_the_threaded_gate(learner: bool) -> None:
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever)
    runner.start()
    port = free_port()
    try:
        with ThreadPoolExecutor(4) as pool:
            server = grpc.server(pool)
            servicer = on_loop(
                gated(AsyncKV(), rpc_pb2_grpc.KVServicer, lambda: learner), rpc_pb2_grpc.KVServicer, loop
            )
            rpc_pb2_grpc.add_KVServicer_to_server(servicer, server)
            server.add_insecure_port(f"127.0.0.1:{port}")
            server.start()
            try:
                got = calls(port)
            finally:
                server.stop(0)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join()
        loop.close()
    assert got == (["ok", REFUSED, REFUSED] if learner else ["ok", "ok", "ok"])


@pytest.mark.parametrize("learner", [True, False])
def test_the_aio_gate(learner: bool) -> None:
    async def scenario() -> list[str]:
        port = free_port()
        server = grpc.aio.server()
        rpc_pb2_grpc.add_KVServicer_to_server(
            gated(AsyncKV(), rpc_pb2_grpc.KVServicer, lambda: learner), server
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        try:
            return await asyncio.get_running_loop().run_in_executor(None, calls, port)
        finally:
            await server.stop(0)

    got = asyncio.run(scenario())
    assert got == (["ok", REFUSED, REFUSED] if learner else ["ok", "ok", "ok"])


def test_streams_are_not_gated() -> None:
    class Watcher(rpc_pb2_grpc.WatchServicer):
        async def Watch(self, request_iterator: Any, context: Any) -> Any:
            yield rpc_pb2.WatchResponse(created=True)

    servicer = Watcher()
    proxy = gated(servicer, rpc_pb2_grpc.WatchServicer, lambda: True)
    assert proxy.Watch == servicer.Watch
