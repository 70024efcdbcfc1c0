"""WebSocket connections in memory: a server (CloudHub) accepts, clients (EdgeHubs) dial, and
frames go through bounded in-process queues. No socket, no TLS, no real time: with a fake clock
a whole hub conversation runs deterministically in a unit test::

    async with MemoryNetwork(cloudhub.accept) as network:
        edgehub = EdgeHub(settings, outbox, clock=clock, dial=network.dial)
        ...
        network.break_all()         # the network fails under every connection

The server's ``accept(headers, ws)`` admits the connection (raising ``ConnectionRefusedError``
to refuse it, as an HTTP error status would) and returns the coroutine that serves it; the
network runs that in its own task group, so no session outlives the network.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Final

from aiohttp import WSCloseCode, WSMessage, WSMsgType

DEFAULT_WINDOW: Final = 1024
"""Frames in flight one way before the sender waits (the socket buffers)."""

Accept = Callable[[Mapping[str, str], "MemoryWebSocket"], Awaitable[Awaitable[None]]]


class MemoryWebSocket:
    """One end of an in-memory connection; :func:`pair` makes both."""

    def __init__(self, name: str, window: int = DEFAULT_WINDOW) -> None:
        self.name = name
        self.peer: MemoryWebSocket | None = None
        self.sent = 0
        self._window = window
        self._inbox: deque[WSMessage] = deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._closed = False
        self._close_code: int | None = None
        self._exception: BaseException | None = None

    def __repr__(self) -> str:
        return f"MemoryWebSocket({self.name}{', closed' if self._closed else ''})"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def close_code(self) -> int | None:
        return self._close_code

    def exception(self) -> BaseException | None:
        return self._exception

    async def send_frame(self, message: bytes, opcode: WSMsgType,
                         compress: int | None = None) -> None:
        peer = self.peer
        while True:
            if self._closed or peer is None or peer._closed:
                raise ConnectionResetError(f"{self.name}: connection closed")
            if len(peer._inbox) < peer._window:
                break
            peer._writable.clear()
            await peer._writable.wait()
        peer._push(WSMessage(opcode, bytes(message), None))
        self.sent += 1

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"") -> bool:
        if self._closed:
            return False
        self._finish(code)
        if self.peer is not None and not self.peer._closed:
            self.peer._push(WSMessage(WSMsgType.CLOSE, code, message.decode(errors="replace")))
        return True

    def break_link(self, error: BaseException | None = None) -> None:
        """The network fails: both ends see an ERROR frame, then nothing more."""
        error = error or ConnectionResetError("connection reset by the network")
        for end in (self, self.peer):
            if end is not None and not end._closed:
                end._exception = error
                end._push(WSMessage(WSMsgType.ERROR, error, None))
                end._finish(WSCloseCode.ABNORMAL_CLOSURE)

    def __aiter__(self) -> MemoryWebSocket:
        return self

    async def __anext__(self) -> WSMessage:
        while True:
            if self._inbox:
                msg = self._inbox.popleft()
                self._writable.set()
                if msg.type == WSMsgType.CLOSE:
                    if not self._closed:
                        self._finish(int(msg.data))
                    raise StopAsyncIteration
                return msg
            if self._closed:
                raise StopAsyncIteration
            self._readable.clear()
            await self._readable.wait()

    def _push(self, msg: WSMessage) -> None:
        self._inbox.append(msg)
        self._readable.set()

    def _finish(self, code: int) -> None:
        self._closed = True
        self._close_code = code
        self._readable.set()  # a reader waiting for frames ends
        self._writable.set()  # a writer waiting for room fails


def pair(client: str = "client", server: str = "server",
         window: int = DEFAULT_WINDOW) -> tuple[MemoryWebSocket, MemoryWebSocket]:
    """Two connected ends: what one sends, the other receives.

    >>> edge, cloud = pair("edge-1", "cloudhub")    # doctest: +SKIP
    """
    a, b = MemoryWebSocket(client, window), MemoryWebSocket(server, window)
    a.peer, b.peer = b, a
    return a, b


class MemoryNetwork:
    """Clients dial, ``accept`` serves; each accepted connection runs in the network's task
    group. Use it as an async context manager."""

    def __init__(self, accept: Accept, *, window: int = DEFAULT_WINDOW) -> None:
        self._accept = accept
        self._window = window
        self._tasks: asyncio.TaskGroup | None = None
        self.connections: list[tuple[MemoryWebSocket, MemoryWebSocket]] = []
        self.dials = 0
        self.refused = 0
        self.reachable = True

    async def __aenter__(self) -> MemoryNetwork:
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        for client, server in self.connections:
            for end in (client, server):
                with contextlib.suppress(ConnectionError):
                    await end.close(code=WSCloseCode.GOING_AWAY, message=b"network closed")
        assert self._tasks is not None
        await self._tasks.__aexit__(exc_type, exc, tb)

    async def dial(self, url: str, headers: Mapping[str, str]) -> MemoryWebSocket:
        """Connect to the server as a client sending ``headers``; the client's end.

        Raises ``ConnectionRefusedError`` when the server refuses or is unreachable."""
        if self._tasks is None:
            raise RuntimeError("MemoryNetwork is not entered")
        self.dials += 1
        if not self.reachable:
            self.refused += 1
            raise ConnectionRefusedError(f"{url}: unreachable")
        node = headers.get("node_id", "client")
        client, server = pair(node, f"server-for-{node}", self._window)
        try:
            serve = await self._accept(headers, server)
        except ConnectionRefusedError:
            self.refused += 1
            raise
        self.connections.append((client, server))
        self._tasks.create_task(self._serve(serve), name=f"memory-session-{node}")
        return client

    @staticmethod
    async def _serve(serve: Awaitable[None]) -> None:
        await serve

    def live(self) -> list[MemoryWebSocket]:
        """The client ends still open."""
        return [client for client, _ in self.connections if not client.closed]

    def break_all(self) -> None:
        """The network fails under every open connection."""
        for client, _ in self.connections:
            client.break_link()
