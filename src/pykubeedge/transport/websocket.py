"""The WebSocket a hub session speaks through: the part of aiohttp's server and client
WebSocket responses CloudHub and EdgeHub use. aiohttp's objects fit it, and so does the
in-memory pair of :mod:`pykubeedge.transport.memory`, which lets whole hubs be tested without
a socket (as httpx's ``MockTransport`` does for HTTP clients)::

    async def pump(ws: WebSocket) -> None:
        await ws.send_frame(codec.encode(msg), WSMsgType.TEXT)
        async for frame in ws:          # TEXT frames carry bytes (decode_text=False)
            ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol

from aiohttp import WSMsgType
from aiohttp.http_websocket import WSMessageNoDecodeText


class WebSocket(Protocol):
    """One end of a WebSocket connection (opened with ``decode_text=False``: TEXT frames
    carry bytes)."""

    @property
    def closed(self) -> bool: ...

    @property
    def close_code(self) -> int | None: ...

    async def send_frame(self, message: bytes, opcode: WSMsgType,
                         compress: int | None = None) -> None: ...

    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...

    def exception(self) -> BaseException | None: ...

    def __aiter__(self) -> AsyncIterator[WSMessageNoDecodeText]: ...


Dial = Callable[[str, Mapping[str, str]], Awaitable[WebSocket]]
"""How a client opens a connection: ``dial(url, headers)``; raises ``OSError`` (refused,
unreachable), ``aiohttp.ClientError`` or ``TimeoutError`` when it cannot."""
