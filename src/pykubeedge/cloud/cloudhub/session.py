"""One edge node's live connection: a reader (frames in, dispatched upstream) and a writer
(the node's NodeQueue out, with resends), plus the keepalive deadline.

The session is a thin IO shell around :class:`pykubeedge.core.hubproto.NodeQueue`; the rules
(what needs an ACK, supersede, resend, requeue) live there and are tested without sockets.
It speaks through a :class:`~pykubeedge.transport.websocket.WebSocket` (aiohttp's, or an
in-memory one) and measures every deadline on the :class:`~pykubeedge.core.clock.Clock` it is
given, so its tests run in fake time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable

from aiohttp import WSCloseCode, WSMsgType

from pykubeedge.beehive.clock import REAL_CLOCK
from pykubeedge.core import codec
from pykubeedge.core.clock import Clock, Timer
from pykubeedge.core.errors import DecodeError
from pykubeedge.core.hubproto import KeepaliveDeadline, NodeQueue
from pykubeedge.core.message import Message
from pykubeedge.transport.websocket import WebSocket
from pykubeedge.transport.wirelog import wire_log

log = logging.getLogger(__name__)

Upstream = Callable[["NodeSession", Message], Awaitable[None]]


class NodeSession:
    # Thousands of these live at once: slots, a lazy ``done`` event, and a writer task only
    # while the node has messages in flight (an idle session is a timer for its deadlines).
    __slots__ = ("_clock", "_done", "_finished", "_loop", "_max_frame", "_timer", "_upstream",
                 "_upstream_busy", "_wakeup",
                 "_write_timeout", "_writer", "close_reason", "keepalive", "node_id",
                 "project_id", "queue", "received", "sent", "task", "ws")

    def __init__(self, node_id: str, project_id: str, ws: WebSocket, queue: NodeQueue,
                 upstream: Upstream, *, keepalive_interval: float, write_timeout: float,
                 max_frame: int = codec.MAX_MESSAGE_SIZE, clock: Clock = REAL_CLOCK) -> None:
        self.node_id = node_id
        self.project_id = project_id
        self.ws = ws
        self.queue = queue
        self._upstream = upstream
        self._write_timeout = write_timeout
        self._max_frame = max_frame
        self._loop = asyncio.get_running_loop()
        self._clock = clock
        self.keepalive = KeepaliveDeadline(keepalive_interval, clock.monotonic())
        self._writer: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None  # the writer waits on it
        self._timer: Timer | None = None  # wakes the writer at the next deadline
        self._done: asyncio.Event | None = None
        self._finished = False
        self._upstream_busy = False
        self.task: asyncio.Task[None] | None = None  # the task serving the connection
        self.close_reason = ""
        self.sent = 0
        self.received = 0

    @property
    def done(self) -> asyncio.Event:
        """Set once run() has cleaned up."""
        if self._done is None:
            self._done = asyncio.Event()
            if self._finished:
                self._done.set()
        return self._done

    def wake(self) -> None:
        """Something was queued or ACKed, or a deadline came: let the writer look again."""
        if self._finished or self.close_reason:
            return
        if self._writer is None:
            self._writer = self._loop.create_task(self._write_loop(),
                                                  name=f"cloudhub-writer-{self.node_id}")
        elif self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def on_keepalive(self) -> None:
        self.keepalive.keepalive(self._clock.monotonic())

    def now(self) -> float:
        return self._clock.monotonic()

    async def run(self) -> None:
        """Serve the connection until it closes, the keepalive lapses or we are cancelled.
        What was in flight goes back to the queue for the next connection."""
        self.task = asyncio.current_task()
        self.wake()  # send what waited for this node, and arm the keepalive deadline
        try:
            await self._read_loop()
        finally:
            self._finished = True
            if self._timer is not None:
                self._timer.cancel()
            writer = self._writer
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await writer
            with contextlib.suppress(Exception):
                await self.ws.close(code=WSCloseCode.GOING_AWAY,
                                    message=self.close_reason.encode()[:120])
            back = self.queue.requeue_inflight()
            if self._done is not None:
                self._done.set()
            log.info("node %s disconnected (%s); %d un-ACKed message(s) kept for its return",
                     self.node_id, self.close_reason or "connection closed", back)

    async def close(self, code: int, reason: str) -> None:
        if not self.close_reason:
            self.close_reason = reason
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=reason.encode()[:120])

    async def _read_loop(self) -> None:
        async for frame in self.ws:
            if frame.type == WSMsgType.TEXT:
                wire_log("in", self.node_id, frame.data)
                try:
                    msg = codec.decode(frame.data, self._max_frame)
                except DecodeError as exc:
                    log.warning("node %s sent a malformed frame: %s; closing its connection",
                                self.node_id, exc)
                    await self.close(WSCloseCode.INVALID_TEXT, f"malformed message: {exc}")
                    return
                self.received += 1
                # While the controllers push back (a slow API server), this reader waits and
                # reads no keepalives: that must not count against the edge.
                self._upstream_busy = True
                try:
                    await self._upstream(self, msg)
                finally:
                    self._upstream_busy = False
                    if self.keepalive.expired(self._clock.monotonic()):
                        self.on_keepalive()
                del frame, msg  # an idle session need not keep its last keepalive alive
            elif frame.type == WSMsgType.BINARY:
                log.warning("node %s sent a binary frame; closing its connection", self.node_id)
                await self.close(WSCloseCode.UNSUPPORTED_DATA,
                                 "binary frames are not supported: send JSON text frames")
                return
            elif frame.type == WSMsgType.ERROR:
                error = self.ws.exception()
                self.close_reason = self.close_reason or f"transport error: {error}"
                if "too big" in str(error).lower() or "size" in str(error).lower():
                    log.warning("node %s sent an oversized frame: %s", self.node_id, error)
                return

    async def _write_loop(self) -> None:
        """Write what is due and ready; wait for ACKs while messages are in flight; end when
        none are, leaving a timer for the next deadline (keepalive, resend, requeue)."""
        q = self.queue
        loop, clock = self._loop, self._clock
        idle = False
        try:
            while True:
                now = clock.monotonic()
                if self.keepalive.expired(now) and not self._upstream_busy:
                    log.warning("node %s: no keepalive for %.0fs; ending its session",
                                self.node_id, self.keepalive.interval)
                    await self.close(WSCloseCode.POLICY_VIOLATION, "keepalive timeout")
                    return
                for due in q.due(now):
                    await self._write(due)
                while (msg := q.next(now)) is not None:
                    await self._write(msg)
                if not q.inflight:
                    idle = True
                    return
                deadline = self._keepalive_deadline(now)
                nxt = q.next_deadline()
                if nxt is not None:
                    deadline = min(deadline, nxt)
                wakeup: asyncio.Future[None] = loop.create_future()
                self._wakeup = wakeup
                timer = clock.call_at(deadline + 0.001, functools.partial(_resolve, wakeup))
                try:
                    await wakeup
                finally:
                    timer.cancel()
                    self._wakeup = None
        except (ConnectionError, TimeoutError, RuntimeError) as exc:
            # A write error ends the session (upstream too); the reader sees the close.
            log.warning("node %s: write failed: %s", self.node_id, exc)
            await self.close(WSCloseCode.GOING_AWAY, f"write failed: {exc}")
        finally:
            self._writer = None
            if idle and not self._finished:
                self._arm_timer()

    def _keepalive_deadline(self, now: float) -> float:
        # While the reader is held by backpressure the keepalive is not enforced: waking for
        # a deadline already past would only spin the writer.
        if self._upstream_busy:
            return now + self.keepalive.interval
        return self.keepalive.deadline

    def _arm_timer(self) -> None:
        deadline = self._keepalive_deadline(self._clock.monotonic())
        nxt = self.queue.next_deadline()
        if nxt is not None:
            deadline = min(deadline, nxt)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._clock.call_at(deadline + 0.001, self.wake)

    async def _write(self, msg: Message) -> None:
        try:
            data = codec.encode(msg)
        except (TypeError, ValueError) as exc:
            # A controller's bug, not the edge's: drop this message, keep the session.
            log.error("node %s: cannot encode %s (%s); dropped", self.node_id, msg, exc)
            self.queue.ack(msg.msg_id, self._clock.monotonic())
            return
        # A timeout scope, not wait_for: on 3.11 wait_for runs every write in a new Task.
        wire_log("out", self.node_id, data)
        async with asyncio.timeout(self._write_timeout):
            await self.ws.send_frame(data, WSMsgType.TEXT)
        self.sent += 1


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
