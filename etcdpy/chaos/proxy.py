"""Link proxies: one TCP forwarder per directed peer link, whose faults a test turns on and off.

A member dials `LinkProxy.address` instead of its peer (``ETCDPY_PEER_PROXIES``), so
everything one member sends to another crosses one proxy.  A link is in one of these
states (`LinkFault`), changed at any time from any thread:

- open, optionally with a ``delay`` (plus uniform ``jitter``; bytes still arrive in
  order, as over TCP) and a ``loss`` fraction: each chunk read is, with that
  probability, the last one, and the connection is reset (what the peer had in flight
  is lost; the sender reconnects);
- ``cut``: every connection is reset and new ones are refused (a partition the
  sender notices at once);
- ``blackhole``: nothing moves and nothing is closed: the proxy stops reading, so
  kernel buffers fill and the sender's writes stall until keep-alives give up (a
  partition the sender has to discover); opening the link lets the bytes through.

All proxies of a cluster share one `ProxyHub`: an asyncio loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

CHUNK = 64 * 1024


@dataclass(frozen=True)
class LinkFault:
    """LinkFault is what a link does to the bytes crossing it; `LinkFault()` forwards them untouched."""

    cut: bool = False
    blackhole: bool = False
    delay: float = 0.0  # seconds added to every chunk
    jitter: float = 0.0  # 0 <= jitter <= delay, checked below: a chunk never arrives before it was sent
    loss: float = 0.0  # probability that a chunk resets its connection

    def __post_init__(self) -> None:
        if not 0 <= self.jitter <= self.delay or not 0 <= self.loss <= 1:
            raise ValueError(f"bad link fault {self}")

    def __str__(self) -> str:
        if self.cut:
            return "cut"
        if self.blackhole:
            return "blackhole"
        parts = []
        if self.delay:
            parts.append(f"delay {self.delay * 1000:.0f}±{self.jitter * 1000:.0f}ms")
        if self.loss:
            parts.append(f"loss {self.loss:.0%}")
        return ", ".join(parts) or "open"


OPEN = LinkFault()


class ProxyHub:
    """ProxyHub runs every proxy of one cluster on an asyncio loop in a daemon thread."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)  # only touched on the loop thread
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="chaos-proxies", daemon=True)
        self._thread.start()
        self.proxies: list[LinkProxy] = []
        # Both ends of every connection the proxies hold (only touched on the loop thread): `close`
        # resets whatever is still open, whichever path left it, before the loop stops.
        self.writers: set[asyncio.StreamWriter] = set()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run `coro` on the hub's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def add(self, name: str, target: tuple[str, int]) -> LinkProxy:
        """Add a proxy forwarding to `target`, listening on a free loopback port."""
        proxy = LinkProxy(self, name, target)
        self.run(proxy.listen())
        self.proxies.append(proxy)
        return proxy

    def close(self) -> None:
        """Close every proxy and connection and stop the loop thread."""
        if not self.loop.is_running():
            return
        with contextlib.suppress(Exception):
            self.run(self._close_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    async def _close_all(self) -> None:
        for proxy in self.proxies:
            await proxy.close()
        # Connection handlers still pumping would be destroyed pending when the loop stops.
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in list(self.writers):
            _abort(writer)
        self.writers.clear()
        # An abort closes its socket in a callback of the loop's next turn: let those run before it stops.
        for _ in range(3):
            await asyncio.sleep(0)


class LinkProxy:
    """LinkProxy forwards one directed link's connections to the target, with the link's current fault."""

    def __init__(self, hub: ProxyHub, name: str, target: tuple[str, int]) -> None:
        self.hub = hub
        self.name = name
        self.target = target
        self.fault = OPEN
        self.port = 0
        self._server: asyncio.Server | None = None
        self.flowing = asyncio.Event()  # cleared while blackholed; only used on the hub's loop
        self.flowing.set()
        self._conns: set[_Connection] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def set(self, fault: LinkFault) -> None:
        """Set the link's fault (from any thread); cutting resets every open connection."""
        self.hub.run(self._apply(fault))

    async def _apply(self, fault: LinkFault) -> None:
        self.fault = fault
        if fault.blackhole:
            self.flowing.clear()
        else:
            self.flowing.set()
        if fault.cut:
            for conn in list(self._conns):
                conn.reset()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.reset()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers = self.hub.writers
        writers.add(writer)
        try:
            if self.fault.cut:
                _abort(writer)
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                _abort(writer)
                return
            writers.add(up_writer)
            conn = _Connection(self, writer, up_writer)
            self._conns.add(conn)
            try:
                await asyncio.gather(conn.pump(reader, up_writer), conn.pump(up_reader, writer))
            finally:
                conn.reset()
                self._conns.discard(conn)
                writers.discard(up_writer)
        finally:
            writers.discard(writer)


class _Connection:
    """_Connection is one proxied TCP connection: both directions pumped under the link's fault."""

    def __init__(self, link: LinkProxy, down: asyncio.StreamWriter, up: asyncio.StreamWriter) -> None:
        self.link = link
        self.writers = (down, up)
        self.closed = False

    def reset(self) -> None:
        if not self.closed:
            self.closed = True
            for writer in self.writers:
                _abort(writer)

    async def pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        due = 0.0  # when the previous chunk is delivered: later chunks never overtake it
        while not self.closed:
            await self.link.flowing.wait()
            try:
                data = await reader.read(CHUNK)
            except OSError:
                break
            if not data:
                break
            fault = self.link.fault
            if fault.loss and self.link.hub.rng.random() < fault.loss:
                break
            if fault.delay:
                spread = self.link.hub.rng.uniform(-fault.jitter, fault.jitter)
                due = max(due, loop.time() + fault.delay + spread)
                await asyncio.sleep(due - loop.time())
            await self.link.flowing.wait()
            if self.closed:
                break
            try:
                writer.write(data)
                await writer.drain()
            except OSError:
                break
        self.reset()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Reset the connection (RST, not FIN): the peer learns at once that the bytes in flight are lost."""
    transport = writer.transport
    with contextlib.suppress(Exception):
        transport.abort()
