"""The stream tunnel: many kubelet connections multiplexed on one WebSocket
(CloudStream <-> EdgeStream), frames as :mod:`pykubeedge.core.stream` defines them.

Both ends run a :class:`Tunnel` on their WebSocket. The cloud opens streams (one per
API-server request); the edge is handed each stream the cloud opens, in a task of the
tunnel's own, so no stream outlives its tunnel::

    tunnel = Tunnel(ws, name="edge-1", role=Role.CLOUD)
    task_group.create_task(tunnel.run())
    stream = await tunnel.open(7, MessageType.LOGS_CONNECT, encode_connect(request))
    async for chunk in stream:           # the log, as the edge sends it
        ...
    await stream.close()                 # RemoveConnect, once

Bounds, where upstream has none: at most ``max_streams`` per tunnel; each stream buffers at
most ``stream_buffer`` bytes the local side has not consumed yet. When a stream's buffer is
full the reader waits for room (the WebSocket, then TCP, pushes back on the sender) for at
most ``stall_timeout`` seconds; a stream that stays full that long is reset, so one stuck
consumer delays the others for a bounded time and never stalls the tunnel for good.
Malformed, oversized or unknown frames are counted, logged and refused on the connection
they name; the tunnel keeps serving. Writes have a deadline; a tunnel that hears nothing for
``idle_timeout`` (the edge pings every 5 s, as upstream) is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

from aiohttp import WSCloseCode, WSMsgType

from pykubeedge.beehive.clock import REAL_CLOCK
from pykubeedge.core.clock import Clock
from pykubeedge.core.errors import DecodeError, StreamError
from pykubeedge.core.stream import (
    MAX_DATA,
    Frame,
    MessageType,
    decode_failure,
    decode_frame,
    encode_failure,
    encode_frame,
    frame_header,
)
from pykubeedge.transport.rawhttp import close_writer, until_one_ends

log = logging.getLogger(__name__)

MAX_STREAMS: Final = 512
STREAM_BUFFER: Final = 1 << 20
STALL_TIMEOUT: Final = 10.0
WRITE_TIMEOUT: Final = 15.0
IDLE_TIMEOUT: Final = 30.0
PING_INTERVAL: Final = 5.0
PING_DATA: Final = b"ping you"
MAX_CHUNK: Final = 64 * 1024
"""Data per frame written (upstream writes 256 bytes per frame; any size up to 1 MiB is read)."""
_T = TypeVar("_T")


class Role(enum.Enum):
    CLOUD = "cloud"
    EDGE = "edge"


class TunnelSocket(Protocol):
    """The WebSocket a tunnel runs on (aiohttp's client and server ends fit; opened with
    ``autoping=False`` and ``decode_text=False``: the tunnel answers pings itself)."""

    @property
    def closed(self) -> bool: ...

    async def send_frame(self, message: bytes, opcode: WSMsgType,
                         compress: int | None = None) -> None: ...

    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...

    def __aiter__(self) -> AsyncIterator[Any]: ...


ConnectHandler = Callable[["TunnelStream", Frame], Awaitable[None]]


@dataclass
class TunnelStats:
    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    bad_frames: int = 0
    orphan_frames: int = 0
    streams_opened: int = 0
    streams_closed: int = 0
    waits: int = 0
    stalls: int = 0
    refused: int = 0


async def wait_event(clock: Clock, event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds of ``clock``; whether it is set."""
    if event.is_set():
        return True
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def fire(*_: object) -> None:
        if not done.done():
            done.set_result(None)

    timer = clock.call_at(clock.monotonic() + timeout, fire)
    waiter = asyncio.ensure_future(event.wait())
    waiter.add_done_callback(fire)
    try:
        await done
    finally:
        timer.cancel()
        waiter.cancel()
    return event.is_set()


async def within(clock: Clock, timeout: float, aw: Awaitable[_T]) -> _T:
    """``aw``, or :class:`TimeoutError` after ``timeout`` seconds of ``clock``."""
    task = asyncio.ensure_future(aw)
    expired = False

    def expire() -> None:
        nonlocal expired
        if not task.done():
            expired = True
            task.cancel()

    timer = clock.call_at(clock.monotonic() + timeout, expire)
    try:
        return await task
    except asyncio.CancelledError:
        if expired and not _cancelling():
            raise TimeoutError(f"no progress in {timeout:g}s") from None
        raise
    finally:
        timer.cancel()


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class TunnelStream:
    """One connection (one ``connectID``) on a tunnel.

    Read it with ``async for chunk in stream`` (ends at the peer's RemoveConnect; raises
    :class:`StreamError` if the peer refused or reset it), write with :meth:`write`, end it
    with :meth:`close` (idempotent).
    """

    def __init__(self, tunnel: Tunnel, connect_id: int, kind: MessageType) -> None:
        self.tunnel = tunnel
        self.connect_id = connect_id
        self.kind = kind
        self.failure: tuple[int, str] | None = None
        self.peer_removed = False
        self.accepted = asyncio.Event()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._readable = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._closed = False

    def __repr__(self) -> str:
        return f"TunnelStream({self.tunnel.name}#{self.connect_id} {self.kind.name})"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def buffered(self) -> int:
        return self._buffered

    async def wait_accepted(self, timeout: float) -> bool:
        """Until the peer answers (data, an empty "accepted" frame, a failure or the end)."""
        return await wait_event(self.tunnel.clock, self.accepted, timeout)

    def __aiter__(self) -> TunnelStream:
        return self

    async def __anext__(self) -> bytes:
        while True:
            if self._chunks:
                data = self._chunks.popleft()
                self._buffered -= len(data)
                if self._buffered < self.tunnel.stream_buffer:
                    self._space.set()
                return data
            if self.failure is not None:
                code, message = self.failure
                raise StreamError(message, code)
            if self.peer_removed or self._closed:
                raise StopAsyncIteration
            self._readable.clear()
            await self._readable.wait()

    async def write(self, data: bytes | memoryview) -> None:
        """Send ``data`` to the peer as DATA frames of at most ``max_chunk`` bytes."""
        view = memoryview(data)
        step = self.tunnel.max_chunk
        for start in range(0, max(len(view), 1), step):
            if self._closed or self.peer_removed or self.failure is not None:
                raise StreamError(f"{self!r} is closed", 499)
            await self.tunnel.send(Frame(self.connect_id, MessageType.DATA,
                                         bytes(view[start:start + step])))

    async def accept(self) -> None:
        """Tell the peer the request was accepted (an empty DATA frame; upstream ignores it)."""
        await self.tunnel.send(Frame(self.connect_id, MessageType.DATA, b""))

    async def close(self, failure: tuple[int, str] | None = None) -> None:
        """End the stream: the failure (``CLOSE_CONNECT``) if any, then ``REMOVE_CONNECT``."""
        if self._closed:
            return
        self._closed = True
        self._readable.set()
        self._space.set()
        self.tunnel._forget(self)
        if self.peer_removed or self.tunnel.closed:
            return
        with contextlib.suppress(StreamError):
            if failure is not None:
                await self.tunnel.send(Frame(self.connect_id, MessageType.CLOSE_CONNECT,
                                             encode_failure(*failure)))
            await self.tunnel.send(Frame(self.connect_id, MessageType.REMOVE_CONNECT))

    # -- fed by the tunnel's reader -------------------------------------------------------------

    async def _feed(self, data: bytes) -> bool:
        """Buffer ``data``; False when the buffer stayed full for the stall timeout."""
        self.accepted.set()
        if not data or self._closed:
            return True
        tunnel = self.tunnel
        if self._buffered and self._buffered + len(data) > tunnel.stream_buffer:
            tunnel.stats.waits += 1  # the reader is slower than the writer: push back
        while self._buffered and self._buffered + len(data) > tunnel.stream_buffer:
            self._space.clear()
            if not await wait_event(tunnel.clock, self._space, tunnel.stall_timeout):
                return False
            if self._closed:
                return True
        self._chunks.append(data)
        self._buffered += len(data)
        self._readable.set()
        return True

    def _end(self) -> None:
        self.peer_removed = True
        self.accepted.set()
        self._readable.set()

    def _fail(self, code: int, message: str) -> None:
        if self.failure is None:
            self.failure = (code, message)
        self.accepted.set()
        self._readable.set()
        self._space.set()


class Tunnel:
    """One tunnel's frames: reading, writing, and the streams on it (see the module doc).

    ``on_connect`` (edge) is awaited in a task of the tunnel's for every connect frame, with
    the new stream; it must close the stream when done (the tunnel closes it if it does not).
    """

    def __init__(self, ws: TunnelSocket, *, name: str, role: Role,
                 on_connect: ConnectHandler | None = None, max_streams: int = MAX_STREAMS,
                 stream_buffer: int = STREAM_BUFFER, stall_timeout: float = STALL_TIMEOUT,
                 write_timeout: float = WRITE_TIMEOUT, idle_timeout: float | None = IDLE_TIMEOUT,
                 ping_interval: float | None = None, max_chunk: int = MAX_CHUNK,
                 max_data: int = MAX_DATA, clock: Clock = REAL_CLOCK) -> None:
        self.ws = ws
        self.name = name
        self.role = role
        self.on_connect = on_connect
        self.max_streams = max_streams
        self.stream_buffer = stream_buffer
        self.stall_timeout = stall_timeout
        self.write_timeout = write_timeout
        self.idle_timeout = idle_timeout
        self.ping_interval = ping_interval
        self.max_chunk = min(max_chunk, max_data)
        self.max_data = max_data
        self.clock = clock
        self.streams: dict[int, TunnelStream] = {}
        self.stats = TunnelStats()
        self.close_reason = ""
        self._write_lock = asyncio.Lock()
        self._closed = False
        self._last_rx = clock.monotonic()
        self._handlers: set[asyncio.Task[None]] = set()
        self._handler_of: dict[TunnelStream, asyncio.Task[None]] = {}

    def __repr__(self) -> str:
        return f"Tunnel({self.name}, {len(self.streams)} streams)"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def handlers(self) -> int:
        """Connection handlers running (the edge's side)."""
        return len(self._handlers)

    # -- the cloud's side -----------------------------------------------------------------------

    async def open(self, connect_id: int, kind: MessageType, payload: bytes) -> TunnelStream:
        """Register a stream and send its connect frame; :class:`StreamError` when the tunnel
        is closed or full."""
        if self._closed:
            raise StreamError(f"the tunnel of {self.name} is closed", 503)
        if len(self.streams) >= self.max_streams:
            self.stats.refused += 1
            raise StreamError(f"node {self.name} has {self.max_streams} streams open already",
                              503)
        if connect_id in self.streams:
            raise StreamError(f"connection id {connect_id} is in use on {self.name}", 500)
        stream = self._register(connect_id, kind)
        try:
            await self.send(Frame(connect_id, kind, payload))
        except StreamError:
            await stream.close()
            raise
        return stream

    # -- writing --------------------------------------------------------------------------------

    async def send(self, frame: Frame) -> None:
        """Write one frame (writes are serialised, each within ``write_timeout``)."""
        await self._send_raw(encode_frame(frame), WSMsgType.TEXT)
        self.stats.frames_out += 1
        self.stats.bytes_out += len(frame.data)

    async def _send_raw(self, data: bytes, opcode: WSMsgType) -> None:
        if self._closed:
            raise StreamError(f"the tunnel of {self.name} is closed", 503)
        try:
            async with self._write_lock:
                await within(self.clock, self.write_timeout, self.ws.send_frame(data, opcode))
        except (ConnectionError, TimeoutError, RuntimeError) as exc:
            await self.close(f"write failed: {exc or type(exc).__name__}")
            raise StreamError(f"the tunnel of {self.name} broke: {exc}", 503) from None

    # -- reading --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Read frames until the WebSocket ends; then every stream on it fails and every
        handler task is cancelled and awaited."""
        async with asyncio.TaskGroup() as background:
            helpers = []
            if self.idle_timeout:
                helpers.append(background.create_task(self._watchdog(), name="tunnel-idle"))
            if self.ping_interval:
                helpers.append(background.create_task(self._pinger(), name="tunnel-ping"))
            try:
                await self._read_loop()
            finally:
                await self.close(self.close_reason or "the peer closed the tunnel")
                for task in (*helpers, *self._handlers):
                    task.cancel()
                if self._handlers:
                    await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _read_loop(self) -> None:
        async for msg in self.ws:
            self._last_rx = self.clock.monotonic()
            kind = msg.type
            if kind in (WSMsgType.TEXT, WSMsgType.BINARY):
                data = msg.data
                if isinstance(data, str):
                    data = data.encode("utf-8", "surrogateescape")
                await self._on_frame(data)
            elif kind == WSMsgType.PING:
                with contextlib.suppress(StreamError):
                    await self._send_raw(bytes(msg.data or b""), WSMsgType.PONG)
            elif kind in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                          WSMsgType.ERROR):
                return
            if self._closed:
                return

    async def _on_frame(self, buf: bytes) -> None:
        self.stats.frames_in += 1
        try:
            connect_id, raw_type, _ = frame_header(buf)
        except DecodeError as exc:
            self._bad(f"undecodable frame of {len(buf)} bytes: {exc}")
            return
        try:
            frame = decode_frame(buf, self.max_data)
        except DecodeError as exc:
            self._bad(str(exc))
            await self._refuse(connect_id, raw_type, 413 if raw_type <= 6 else 400, str(exc))
            return
        self.stats.bytes_in += len(frame.data)
        stream = self.streams.get(frame.connect_id)
        kind = frame.type
        if kind.is_connect:
            await self._on_connect(frame, stream)
        elif kind == MessageType.DATA:
            if stream is None:
                self.stats.orphan_frames += 1
            elif not await stream._feed(frame.data):
                self.stats.stalls += 1
                log.warning("tunnel %s: %r stalled for %gs with %d bytes unread; reset", self.name,
                            stream, self.stall_timeout, stream.buffered)
                stream._fail(504, f"the stream stalled for {self.stall_timeout:g}s")
                await stream.close((504, "the stream's reader stalled"))
        elif kind == MessageType.REMOVE_CONNECT:
            if stream is None:
                self.stats.orphan_frames += 1
            else:
                stream._end()
                self._cancel_handler(stream)
        elif kind == MessageType.CLOSE_CONNECT:
            await self._on_close_connect(frame, stream)

    async def _on_close_connect(self, frame: Frame, stream: TunnelStream | None) -> None:
        code, message = decode_failure(frame.data)
        if stream is not None:
            stream._fail(code, message)
            self._cancel_handler(stream)
        elif self.role is Role.EDGE and frame.connect_id == 0:
            # Upstream's cloud ends a session it cannot serve this way (connection id 0).
            log.error("tunnel %s: the cloud closed the session: %s", self.name, message)
            await self.close(f"closed by the cloud: {message}")
        else:
            self.stats.orphan_frames += 1

    async def _on_connect(self, frame: Frame, existing: TunnelStream | None) -> None:
        if self.role is Role.CLOUD or self.on_connect is None:
            self._bad(f"unexpected {frame.type.name} for connection {frame.connect_id}")
            await self._refuse(frame.connect_id, frame.type, 400,
                               f"{frame.type.name} is not served here")
            return
        if existing is not None:
            self._bad(f"{frame.type.name} for connection {frame.connect_id}, which is open")
            return
        if len(self.streams) >= self.max_streams:
            self.stats.refused += 1
            log.warning("tunnel %s: refused connection %d: %d streams open", self.name,
                        frame.connect_id, len(self.streams))
            await self._refuse(frame.connect_id, frame.type, 503,
                               f"the edge serves at most {self.max_streams} streams at once")
            return
        stream = self._register(frame.connect_id, frame.type)
        task = asyncio.create_task(self._serve(stream, frame),
                                   name=f"stream-{self.name}-{frame.connect_id}")
        self._handlers.add(task)
        self._handler_of[stream] = task
        task.add_done_callback(self._handlers.discard)

    def _cancel_handler(self, stream: TunnelStream) -> None:
        """The peer ended ``stream``: its handler has nothing left to do (whatever it waits
        on), so it is cancelled; its ``finally`` closes the local side."""
        task = self._handler_of.pop(stream, None)
        if task is not None and not task.done():
            task.cancel()

    async def _serve(self, stream: TunnelStream, frame: Frame) -> None:
        assert self.on_connect is not None
        failure: tuple[int, str] | None = None
        try:
            await self.on_connect(stream, frame)
        except StreamError as exc:
            failure = (exc.code, str(exc))
        except Exception as exc:
            log.exception("tunnel %s: %r failed", self.name, stream)
            failure = (500, f"internal error: {exc}")
        finally:
            self._handler_of.pop(stream, None)
            await asyncio.shield(stream.close(failure))

    async def _refuse(self, connect_id: int, raw_type: int, code: int, message: str) -> None:
        """Tell the peer that connection ``connect_id`` failed, and end it on both sides."""
        stream = self.streams.get(connect_id)
        if stream is not None:
            stream._fail(code, message)
            await stream.close((code, message))
            return
        if raw_type in (MessageType.REMOVE_CONNECT, MessageType.CLOSE_CONNECT) or (
                self.role is Role.EDGE and connect_id == 0):
            return  # nothing to end
        with contextlib.suppress(StreamError):
            await self.send(Frame(connect_id, MessageType.CLOSE_CONNECT,
                                  encode_failure(code, message)))
            await self.send(Frame(connect_id, MessageType.REMOVE_CONNECT))

    def _bad(self, why: str) -> None:
        self.stats.bad_frames += 1
        log.warning("tunnel %s: bad frame: %s", self.name, why)

    # -- bookkeeping ----------------------------------------------------------------------------

    def _register(self, connect_id: int, kind: MessageType) -> TunnelStream:
        stream = TunnelStream(self, connect_id, kind)
        self.streams[connect_id] = stream
        self.stats.streams_opened += 1
        return stream

    def _forget(self, stream: TunnelStream) -> None:
        if self.streams.get(stream.connect_id) is stream:
            del self.streams[stream.connect_id]
            self.stats.streams_closed += 1

    async def close(self, reason: str = "closed") -> None:
        """Close the WebSocket; every stream on it fails (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.close_reason = self.close_reason or reason
        for stream in list(self.streams.values()):
            stream._fail(503, f"the tunnel of {self.name} closed: {self.close_reason}")
            self._forget(stream)
            stream._closed = True
        with contextlib.suppress(Exception):
            await self.ws.close(code=WSCloseCode.GOING_AWAY, message=reason[:120].encode())

    async def _watchdog(self) -> None:
        assert self.idle_timeout is not None
        while not self._closed:
            await self.clock.sleep(self.idle_timeout / 3)
            quiet = self.clock.monotonic() - self._last_rx
            if quiet >= self.idle_timeout:
                log.warning("tunnel %s: nothing heard for %.0fs; closing it", self.name, quiet)
                await self.close(f"nothing heard for {quiet:.0f}s")
                return

    async def _pinger(self) -> None:
        assert self.ping_interval is not None
        while not self._closed:
            await self.clock.sleep(self.ping_interval)
            with contextlib.suppress(StreamError):
                await self._send_raw(PING_DATA, WSMsgType.PING)


async def splice_stream(stream: TunnelStream, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter, *, read_chunk: int = MAX_CHUNK) -> None:
    """Relay between a tunnel stream and a socket. An upgraded kubelet connection is over
    when either side ends it (SPDY never half-closes), so once one way ends the other is cut
    and the caller removes the stream at once. The socket's writer is closed on return."""

    async def up() -> None:
        while data := await reader.read(read_chunk):
            await stream.write(data)

    async def down() -> None:
        async for data in stream:
            writer.write(data)
            await writer.drain()

    try:
        await until_one_ends(up(), down())
    finally:
        await close_writer(writer)
