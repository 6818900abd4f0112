"""HTTP/1.1 on the client port: requests read in bounded time and size, answers whole or streamed.

`serve_connection` runs one connection the front handed over (plain or already TLS-wrapped by
asyncio): it reads each request's head and gives a `Request` to the application, a coroutine
function that answers a `Response` (whole, Content-Length) or a `StreamResponse` (chunked, its
chunks from an async iterator, then trailers).  Keep-alive as HTTP/1.1 says; a streamed answer ends
the connection, and a client that goes away cancels the stream.

What a misbehaving client gets, each time for its own connection only:

* no request within `IDLE_SECONDS` (between requests) or a head not complete `HEAD_SECONDS` after
  its first byte: the connection is closed (408 if a head had begun);
* a head over `MAX_HEAD_BYTES`: 431; a malformed one: 400; a body the application refuses as too
  large (`BodyTooLarge`): 413; a body slower than `BODY_SECONDS`: 408; each then closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger("etcdpy.server.http")

IDLE_SECONDS = 120.0  # a keep-alive connection with no request for this long is closed
HEAD_SECONDS = 10.0  # from a request's first byte to the end of its head
BODY_SECONDS = 30.0  # to read a whole request body (unary calls)
MAX_HEAD_BYTES = 64 * 1024
CHUNK_LINE_BYTES = 1024


class HTTPError(Exception):
    """A request the server refuses before the application sees it (or while it reads the body)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class BodyTooLarge(HTTPError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


@dataclass
class Response:
    """A whole answer: status, headers (name, value) in order, body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""


@dataclass
class StreamResponse:
    """A chunked answer: `chunks` are written as they come; `trailers` after the last (if any).

    `status` and `headers` may be changed by the iterator until it yields its first chunk.  A
    `long_lived` stream (watch, keep-alive) ends when the client closes its side, and ends the
    connection; a short one (an error with trailers) leaves the connection to the next request.
    """

    status: int
    headers: list[tuple[str, str]]
    chunks: AsyncIterator[bytes]
    trailers: list[tuple[str, str]] = field(default_factory=list)
    long_lived: bool = True


Reply = Response | StreamResponse


class Body:
    """A request's body, read on demand (Content-Length or chunked); 100-continue sent when first read."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._continue = headers.get("expect", "").lower() == "100-continue"
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length", "0" if not self._chunked else "")
        if not self._chunked and not length.isdigit():
            raise HTTPError(400, "invalid Content-Length")
        self._left = int(length) if length else 0
        self.finished = asyncio.Event()
        if not self._chunked and self._left == 0:
            self.finished.set()

    @property
    def declared_length(self) -> int | None:
        """The Content-Length, or None for a chunked body."""
        return None if self._chunked else self._left

    async def read_all(self, limit: int) -> bytes:
        """The whole body, refused with `BodyTooLarge` beyond `limit` bytes."""
        parts: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(BODY_SECONDS):
                async for part in self.parts():
                    size += len(part)
                    if size > limit:
                        raise BodyTooLarge(limit)
                    parts.append(part)
        except TimeoutError:
            raise HTTPError(408, "request body not received in time") from None
        return b"".join(parts)

    async def parts(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive, up to its end."""
        if self.finished.is_set():
            return
        if self._continue:
            self._continue = False
            self._writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            if not self._chunked:
                while self._left:
                    part = await self._reader.read(min(self._left, 65536))
                    if not part:
                        raise HTTPError(400, "unexpected EOF in the request body")
                    self._left -= len(part)
                    yield part
                return
            while True:
                line = await self._reader.readuntil(b"\r\n")
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise HTTPError(400, "malformed chunk size") from None
                if size == 0:
                    while (await self._reader.readuntil(b"\r\n")) != b"\r\n":
                        pass  # trailers of the request: not used
                    return
                part = await self._reader.readexactly(size)
                if await self._reader.readexactly(2) != b"\r\n":
                    raise HTTPError(400, "malformed chunk")
                yield part
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            raise HTTPError(400, "malformed request body") from None
        finally:
            self.finished.set()


@dataclass
class Request:
    """One request: method, path and query split, headers by lower-case name, the body to read."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Body
    peer: str  # "ipv4:127.0.0.1:5555", as grpc names a peer


App = Callable[[Request], Awaitable[Reply]]


def status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


class _Date:
    """The Date header's value, formatted once a second."""

    second = 0
    text = ""

    @classmethod
    def now(cls) -> str:
        second = int(time.time())
        if second != cls.second:
            cls.second, cls.text = second, email.utils.formatdate(second, usegmt=True)
        return cls.text


def _head(status: int, headers: list[tuple[str, str]], extra: list[tuple[str, str]]) -> bytes:
    lines = [status_line(status)]
    lines.extend(f"{name}: {value}\r\n".encode("latin-1") for name, value in [*headers, *extra])
    lines.append(b"\r\n")
    return b"".join(lines)


def plain_error(status: int, text: str) -> Response:
    """Go's http.Error: the text and a newline, as text/plain."""
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff")]
    return Response(status, headers, (text + "\n").encode())


async def read_head(reader: asyncio.StreamReader, first_request: bool) -> bytes | None:
    """The next request's head (without the blank line), or None when the client closed or idled out."""
    try:
        async with asyncio.timeout(HEAD_SECONDS if first_request else IDLE_SECONDS):
            first = await reader.read(1)  # a fresh connection's first bytes arrived: the front saw them
        if not first:
            return None
    except TimeoutError:
        return None
    try:
        async with asyncio.timeout(HEAD_SECONDS):
            rest = await reader.readuntil(b"\r\n\r\n")
    except TimeoutError:
        raise HTTPError(408, "request head not received in time") from None
    except asyncio.LimitOverrunError:
        raise HTTPError(431, "request head too large") from None
    except asyncio.IncompleteReadError:
        return None
    return first + rest[:-4]


def parse_head(head: bytes) -> tuple[str, str, str, dict[str, str], bool]:
    """(method, path, query, headers, keep_alive) of a request head."""
    lines = head.decode("latin-1").split("\r\n")  # latin-1 decodes any byte: bad heads fail below
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HTTPError(400, "malformed request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HTTPError(400, "malformed header line")
        key = name.lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    path, _, query = target.partition("?")
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    return method, path, query, headers, keep_alive


async def serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, app: App, peer: str
) -> None:
    """Serve requests on one connection until the client closes it, a stream ends, or an error."""
    first_request = True
    try:
        while True:
            try:
                head = await read_head(reader, first_request)
                if head is None:
                    return
                first_request = False
                method, path, query, headers, keep_alive = parse_head(head)
                body = Body(reader, writer, headers)
                reply = await app(Request(method, path, query, headers, body, peer))
                if not body.finished.is_set():
                    keep_alive = False  # the application left part of the body unread
            except HTTPError as err:
                await _write_whole(writer, plain_error(err.status, str(err)), keep_alive=False)
                return
            if isinstance(reply, StreamResponse):
                await _write_stream(reader, writer, reply, body)
                if reply.long_lived:
                    return
            else:
                await _write_whole(writer, reply, keep_alive=keep_alive)
            if not keep_alive:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return  # the client went away
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _write_whole(writer: asyncio.StreamWriter, response: Response, *, keep_alive: bool) -> None:
    extra = [("Date", _Date.now()), ("Content-Length", str(len(response.body)))]
    if not keep_alive:
        extra.append(("Connection", "close"))
    writer.write(_head(response.status, response.headers, extra) + response.body)
    await writer.drain()


async def _write_stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: StreamResponse, body: Body
) -> None:
    """Write `reply` chunked; a client that closes its side once its body is sent ends a long-lived one."""
    streaming = asyncio.current_task()
    assert streaming is not None
    extra = [("Date", _Date.now()), ("Transfer-Encoding", "chunked")]
    if reply.long_lived:
        # The connection ends with the stream: say so, or a client's pool would send its next
        # request on a connection this side is closing (and get a reset).
        extra.append(("Connection", "close"))

    async def watch_for_close() -> None:
        await body.finished.wait()
        with contextlib.suppress(ConnectionError):
            while await reader.read(4096):
                pass  # a pipelined request is not served: the stream ends the connection anyway
        streaming.cancel()

    watcher = asyncio.create_task(watch_for_close()) if reply.long_lived else None
    started = False
    try:
        async for chunk in reply.chunks:
            head = b"" if started else _head(reply.status, reply.headers, extra)
            started = True
            if chunk:  # the head goes out with the first chunk: one segment, not two
                writer.write(head + b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
            elif head:
                writer.write(head)
        if not started:
            writer.write(_head(reply.status, reply.headers, extra))
        trailers = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in reply.trailers)
        writer.write(b"0\r\n" + trailers + b"\r\n")
        await writer.drain()
    except asyncio.CancelledError:
        if watcher is not None and watcher.done():
            streaming.uncancel()
            return  # the client went away: the stream's handlers were cancelled with it
        raise
    finally:
        if watcher is not None:
            watcher.cancel()
        closing = getattr(reply.chunks, "aclose", None)
        if closing is not None:
            await closing()
