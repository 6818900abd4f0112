"""`TLSRelay`: ``--insecure-skip-tls-verify`` for grpc, which always verifies the server's certificate.

grpcio's channel credentials cannot turn verification off, and pinning the certificate the server
shows as the channel's root does not get past an expired, not yet valid or self-signed certificate
(BoringSSL still checks dates and the issuer's key usage).  So the channel does not speak TLS itself:
it talks plaintext HTTP/2 over a unix socket in a private directory (mode 0700, so no other user can
borrow the client certificate) to this relay, which opens a TLS connection to the server with
Python's `ssl`, verification off, the client certificate presented, ALPN ``h2``, and copies bytes both
ways.  One asyncio loop in a daemon thread serves every endpoint of one transport.

The price: each byte crosses the relay's thread, so throughput is lower than a direct channel; the flag
is meant for tests (etcdctl's help says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import tempfile
import threading
from pathlib import Path

__all__ = ["TLSRelay"]

_CHUNK = 256 * 1024
_GOODBYE_SECONDS = 5.0  # for the server's answer to a TLS close_notify before the connection is reset


class TLSRelay:
    """Local unix sockets, each relayed to one TLS server without verifying its certificate."""

    def __init__(self, context: ssl.SSLContext) -> None:
        assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname, "a relay skips checks"
        self._context = context
        self._directory = Path(tempfile.mkdtemp(prefix="etcdpy-tls-"))  # mode 0700
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False  # set by close(): connections end at once, without TLS's goodbye
        self._thread = threading.Thread(target=self._loop.run_forever, name="etcdpy-tls-relay", daemon=True)
        self._thread.start()

    def listen(self, host: str, port: int) -> str:
        """A grpc target (``unix:<path>``) whose connections reach ``host:port`` over TLS."""
        path = self._directory / f"{len(self._servers)}.sock"
        future = asyncio.run_coroutine_threadsafe(self._listen(path, host, port), self._loop)
        future.result()
        return f"unix:{path}"

    def close(self) -> None:
        """Stop relaying: close the sockets and the connections, end the thread, remove the directory."""
        if self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        shutil.rmtree(self._directory, ignore_errors=True)

    async def _listen(self, path: Path, host: str, port: int) -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await self._relay(reader, writer, host, port)
            except asyncio.CancelledError:
                pass  # the relay is closing; the connection ends with it
            finally:
                self._tasks.discard(task)

        self._servers.append(await asyncio.start_unix_server(serve, path=str(path)))

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(
                host, port, ssl=self._context, server_hostname=host
            )
        except (OSError, ssl.SSLError):
            writer.close()  # grpc sees the connection fail, as it would on its own
            return
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            for end in (writer, up_writer):
                if self._closing:
                    # The loop stops right after: a TLS close that waits for the server's answer
                    # would never finish and leave its socket open.
                    end.transport.abort()
                else:
                    end.close()
        # TLS's goodbye waits for the server's answer; this task waits with it, so that a relay closing
        # meanwhile (which cancels its tasks) aborts the connection instead of leaving its socket open.
        try:
            await asyncio.wait_for(up_writer.wait_closed(), _GOODBYE_SECONDS)
        except (OSError, ssl.SSLError, TimeoutError):
            up_writer.transport.abort()
        except asyncio.CancelledError:
            up_writer.transport.abort()
            raise

    async def _shutdown(self) -> None:
        self._closing = True
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._servers.clear()


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy until ``source`` ends or either side breaks; then close ``sink``."""
    try:
        while chunk := await source.read(_CHUNK):
            sink.write(chunk)
            await sink.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        sink.close()
