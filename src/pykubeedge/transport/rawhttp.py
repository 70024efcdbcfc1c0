"""A small HTTP/1.1 server and client plumbing on asyncio streams, for the kubelet paths.

The kubelet's exec, attach and port-forward are HTTP upgrades whose bytes after the head are
SPDY, relayed untouched; logs are long chunked responses. So the stream servers (CloudStream's
API-server-facing port, Edged's kubelet port) read the head themselves and hand the handler
the raw connection::

    async def handle(head: RequestHead, conn: Connection) -> bool:
        await conn.send(simple_response(200, "ok"))
        return True                         # keep the connection for the next request

    async with RawHTTPServer(handle, host="127.0.0.1", port=10350, name="edged") as server:
        ...

Bounded: at most ``max_connections`` at once, a head of at most 64 KiB read within
``head_timeout``, an idle keep-alive connection closed after ``idle_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import aiohttp

from pykubeedge.core import expvar
from pykubeedge.core.errors import DecodeError
from pykubeedge.core.httphead import (
    MAX_HEAD_BYTES,
    RequestHead,
    ResponseHead,
    parse_request_head,
    parse_response_head,
    simple_response,
)

log = logging.getLogger(__name__)

READ_CHUNK: Final = 64 * 1024
HEAD_TIMEOUT: Final = 30.0
IDLE_TIMEOUT: Final = 90.0
MAX_CONNECTIONS: Final = 1024
CLOSE_TIMEOUT: Final = 5.0
SPLICE_GRACE: Final = 0.0
_TERMINATOR: Final = b"\r\n\r\n"
_T = TypeVar("_T")


@dataclass
class Connection:
    """One accepted connection: its streams and what TLS and the socket say about the peer."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer_cert: bytes | None = None
    local_address: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


Handler = Callable[[RequestHead, Connection], Awaitable[bool]]


async def read_head(reader: asyncio.StreamReader) -> bytes | None:
    """The bytes of one HTTP head, or None at a clean end of stream."""
    try:
        return await reader.readuntil(_TERMINATOR)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise DecodeError("the connection ended inside an HTTP head") from None
    except asyncio.LimitOverrunError:
        raise DecodeError(f"HTTP head larger than {MAX_HEAD_BYTES} bytes") from None


async def read_response_head(reader: asyncio.StreamReader) -> ResponseHead:
    data = await read_head(reader)
    if data is None:
        raise DecodeError("the server closed the connection without a response")
    return parse_response_head(data)


async def iter_body(reader: asyncio.StreamReader, head: ResponseHead | RequestHead,
                    ) -> AsyncIterator[bytes]:
    """The body of a message: chunked, of a Content-Length, or up to the end of stream."""
    if "chunked" in head.header("transfer-encoding").lower():
        while True:
            line = await reader.readuntil(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise DecodeError(f"bad chunk size line {line[:40]!r}") from None
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers are sent by our peers
                return
            async for data in _exactly(reader, size):
                yield data
            await reader.readexactly(2)
        return
    length = head.header("content-length")
    if length:
        if not length.isdigit():
            raise DecodeError(f"bad Content-Length {length[:20]!r}")
        async for data in _exactly(reader, int(length)):
            yield data
        return
    while data := await reader.read(READ_CHUNK):
        yield data


async def _exactly(reader: asyncio.StreamReader, size: int) -> AsyncIterator[bytes]:
    remaining = size
    while remaining:
        data = await reader.read(min(remaining, READ_CHUNK))
        if not data:
            raise DecodeError("the connection ended inside the body")
        remaining -= len(data)
        yield data


async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    """Copy until end of stream, then half-close ``writer`` where it can; bytes copied."""
    total = 0
    while data := await reader.read(READ_CHUNK):
        writer.write(data)
        await writer.drain()
        total += len(data)
    if writer.can_write_eof():
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()
    return total


async def until_one_ends(*aws: Awaitable[Any], grace: float = 0.0) -> None:
    """Run ``aws`` until one of them ends; the others then get ``grace`` seconds and are
    cancelled. Their errors are swallowed: a relay ends on a broken connection."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if pending and grace > 0:
            await asyncio.wait(pending, timeout=grace)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def splice(a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 b: tuple[asyncio.StreamReader, asyncio.StreamWriter], *,
                 grace: float = SPLICE_GRACE) -> None:
    """Relay both ways between two connections; once one way ends the other gets ``grace``
    seconds (none by default: an upgraded kubelet connection never half-closes), then is
    cut. Both writers are closed on return, cancellation included."""
    try:
        await until_one_ends(relay(a[0], b[1]), relay(b[0], a[1]), grace=grace)
    finally:
        await asyncio.gather(close_writer(a[1]), close_writer(b[1]))


@contextlib.asynccontextmanager
async def hangup(conn: Connection) -> AsyncIterator[asyncio.Future[bytes]]:
    """A future that completes when the client hangs up (a GET has no body, so anything
    read ends it); stopped, without losing a byte, when the block ends."""
    gone = asyncio.ensure_future(conn.reader.read(1))
    try:
        yield gone
    finally:
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)


async def unless_gone(gone: asyncio.Future[Any], work: Awaitable[_T]) -> tuple[bool, _T | None]:
    """``(True, result)`` of ``work``, or ``(False, None)`` when ``gone`` completes first
    (``work`` is then cancelled and awaited)."""
    task = asyncio.ensure_future(work)
    await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        return True, task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return False, None


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a stream writer, waiting a bounded time for the close to finish."""
    writer.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await writer.wait_closed()


class RawHTTPServer:
    """Serve ``handler`` for every request head on ``host:port`` (plain or TLS).

    ``port`` 0 takes a free port (see :attr:`port` once started). ``handler`` returns True
    to read the next request on the same connection.
    """

    def __init__(self, handler: Handler, *, host: str, port: int, name: str,
                 ssl_context: ssl.SSLContext | None = None,
                 max_connections: int = MAX_CONNECTIONS, head_timeout: float = HEAD_TIMEOUT,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.name = name
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self.head_timeout = head_timeout
        self.idle_timeout = idle_timeout
        self.connections = 0
        self.requests = 0
        self.bad_requests = 0
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> RawHTTPServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        await self.listen(self.host, self.port, self.ssl_context)
        if self.port == 0:
            self.port = int(self._servers[0].sockets[0].getsockname()[1])

    async def listen(self, host: str, port: int,
                     ssl_context: ssl.SSLContext | None = None) -> asyncio.Server:
        """Listen on one more address (same handler); OSError if it cannot be bound."""
        server = await asyncio.start_server(
            self._client, host, port, ssl=ssl_context, limit=MAX_HEAD_BYTES,
            ssl_handshake_timeout=self.head_timeout if ssl_context else None,
            reuse_address=True, backlog=1024)
        self._servers.append(server)
        return server

    async def unlisten(self, server: asyncio.Server) -> None:
        if server in self._servers:
            self._servers.remove(server)
            server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await server.wait_closed()

    async def close(self) -> None:
        """Stop listening and end every connection."""
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await server.wait_closed()
        self._servers.clear()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.connections >= self.max_connections:
                log.warning("%s: %d connections open; refusing one", self.name, self.connections)
                with contextlib.suppress(ConnectionError):
                    writer.write(simple_response(503, "too many connections\n", close=True))
                    await writer.drain()
                return
            self.connections += 1
            try:
                await self._serve(self._connection(reader, writer))
            finally:
                self.connections -= 1
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError):
            pass  # the peer went away
        except asyncio.CancelledError:
            # the server is closing: this connection's task (asyncio's, not a caller's)
            # ends here, so the stream protocol does not report it as failed
            pass
        finally:
            self._tasks.discard(task)
            await close_writer(writer)

    @staticmethod
    def _connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Connection:
        sslobj = writer.get_extra_info("ssl_object")
        cert = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        sockname = writer.get_extra_info("sockname") or ("",)
        return Connection(reader, writer, peer_cert=cert, local_address=str(sockname[0]))

    async def _serve(self, conn: Connection) -> None:
        timeout = self.head_timeout
        while True:
            try:
                async with asyncio.timeout(timeout):
                    data = await read_head(conn.reader)
                if data is None:
                    return
                head = parse_request_head(data)
            except TimeoutError:
                return
            except DecodeError as exc:
                self.bad_requests += 1
                log.info("%s: bad request: %s", self.name, exc)
                await conn.send(simple_response(400, f"bad request: {exc}\n", close=True))
                return
            self.requests += 1
            try:
                keep = await self.handler(head, conn)
            except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
                raise
            except Exception:
                # a bug: this request fails, the server serves on
                log.exception("%s: %s %s failed", self.name, head.method, head.path)
                with contextlib.suppress(Exception):
                    await conn.send(simple_response(500, "internal error\n", close=True))
                return
            if not keep or not head.keep_alive:
                return
            timeout = self.idle_timeout


def process_vars() -> dict[str, Any]:
    """What a ``/debug/vars`` page shows: this process's asyncio tasks and open file
    descriptors, and every published variable (:mod:`pykubeedge.core.expvar`)."""
    try:
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = -1
    tasks = asyncio.all_tasks()
    kinds = Counter(_task_kind(t) for t in tasks)
    return {"tasks": len(tasks), "task_kinds": dict(sorted(kinds.items())), "fds": fds,
            **expvar.snapshot()}


def _task_kind(task: asyncio.Task[Any]) -> str:
    """What a task does: its name without a trailing number, or its coroutine's name for
    an unnamed task (``Task-<n>``)."""
    name = task.get_name()
    if name.startswith("Task-"):
        coro = task.get_coro()
        return getattr(coro, "__qualname__", None) or type(coro).__name__
    return name.rstrip("0123456789").rstrip("-:") or name


async def read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """Up to ``limit`` bytes of ``stream`` (all of it when shorter)."""
    chunks, size = [], 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
