"""EdgeHub: the edge end of the cloud channel (beehive module ``websocket``, group ``hub``).

- dials ``wss://<server>/<projectID>/<node>/events`` with the node's client certificate and the
  headers ``node_id``, ``project_id``, ``ConnectionUse: msg``;
- sends a keepalive every ``heartbeat`` seconds;
- dispatches inbound messages by group (``resource``/``func`` -> meta, ``twin`` -> twin,
  ``user`` -> eventbus/servicebus, ``taskmanager``), responses to their ``send_sync`` waiter;
- sends what the edge modules give it to the cloud, throttled by ``messageQPS``/``messageBurst``;
  while disconnected those messages wait in a bounded SQLite outbox and go first, in order,
  after the reconnect (upstream drops them);
- reconnects with exponential backoff **with jitter**, and tells the edge modules
  ``cloud_connected`` / ``cloud_disconnected``.

    hub = EdgeHub(EdgeHubSettings.from_config(cfg), await Outbox.open(db))
    hive.add_module(hub)

Time comes from the :class:`~pykubeedge.core.clock.Clock` it is given (keepalive, throttle,
reconnect backoff) and connections from its ``dial`` (aiohttp over TLS by default; an
in-memory network in tests), so its whole life can be tested in fake time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import ssl
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import WSMsgType

from pykubeedge.beehive import BeehiveContext, RestartPolicy, RestartType
from pykubeedge.beehive.clock import REAL_CLOCK
from pykubeedge.core import codec
from pykubeedge.core.backoff import Backoff
from pykubeedge.core.clock import Clock
from pykubeedge.core.config import EdgeCoreConfig
from pykubeedge.core.constants import (
    Content,
    EdgeGroup,
    EdgeModule,
    MessageGroup,
    Operation,
    ResourceType,
    Source,
)
from pykubeedge.core.errors import ConfigError, DecodeError, StoreError
from pykubeedge.core.message import Message, error_message, new_message, response
from pykubeedge.core.ratelimit import TokenBucket
from pykubeedge.core.resource import parse_edge, resource_type_of
from pykubeedge.edge.edgehub.outbox import MessageStore
from pykubeedge.transport.tls import client_context_from_files
from pykubeedge.transport.websocket import Dial, WebSocket
from pykubeedge.transport.wirelog import wire_log

log = logging.getLogger(__name__)

CONNECTION_EVENT_GROUPS = (EdgeGroup.TWIN, EdgeGroup.META, EdgeGroup.BUS, EdgeGroup.TASKMANAGER)
DRAIN_BATCH = 100
EVENTS_WAITING_MAX = 1000  # Events held back behind other messages (kubelet's queue: 1000)


@dataclass(frozen=True)
class EdgeHubSettings:
    node_name: str
    server: str  # host:port of CloudHub
    project_id: str
    heartbeat: float
    message_qps: float
    message_burst: int
    ca_file: Path
    cert_file: Path
    key_file: Path
    handshake_timeout: float = 30.0
    write_timeout: float = 15.0
    reconnect_initial: float = 1.0
    reconnect_cap: float = 30.0
    max_frame: int = codec.MAX_MESSAGE_SIZE

    @classmethod
    def from_config(cls, cfg: EdgeCoreConfig) -> EdgeHubSettings:
        hub = cfg.modules.edgeHub
        if not cfg.node_name:
            raise ConfigError("modules.edged.tailoredKubeletFlag.hostnameOverride (the node "
                              "name) is empty")
        return cls(
            node_name=cfg.node_name, server=hub.websocket.server, project_id=hub.projectID,
            heartbeat=hub.heartbeat, message_qps=hub.messageQPS, message_burst=hub.messageBurst,
            ca_file=Path(hub.tlsCaFile), cert_file=Path(hub.tlsCertFile),
            key_file=Path(hub.tlsPrivateKeyFile),
            handshake_timeout=hub.websocket.handshakeTimeout,
            write_timeout=hub.websocket.writeDeadline,
        )

    @property
    def url(self) -> str:
        return f"wss://{self.server}/{self.project_id}/{self.node_name}/events"

    def ssl_context(self) -> ssl.SSLContext:
        """Read the certificate files afresh (they change when the certificate rotates)."""
        return client_context_from_files(self.ca_file, self.cert_file, self.key_file)


class EdgeHub:
    name = EdgeModule.EDGEHUB
    group = EdgeGroup.HUB
    restart_policy = RestartPolicy(RestartType.ON_FAILURE, retries=0)

    def __init__(self, settings: EdgeHubSettings, outbox: MessageStore, *,
                 clock: Clock = REAL_CLOCK, dial: Dial | None = None) -> None:
        self.s = settings
        self.outbox = outbox
        self.clock = clock
        self._dial = dial
        self.connected = asyncio.Event()
        self._ws: WebSocket | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._lock = asyncio.Lock()  # orders "send directly" against "keep in the outbox"
        self._backoff = Backoff(settings.reconnect_initial, settings.reconnect_cap)
        self._ctx: BeehiveContext | None = None
        self._reconnect_now = asyncio.Event()
        self._bucket: TokenBucket | None = None
        self.connects = 0
        self.events_dropped = 0

    async def start(self, ctx: BeehiveContext) -> None:
        self._ctx = ctx
        try:
            async with asyncio.TaskGroup() as tg:
                self._tasks = tg
                tg.create_task(self._route_to_cloud(ctx), name="edgehub-to-cloud")
                tg.create_task(self._connection_loop(ctx), name="edgehub-connection")
        finally:
            self._tasks = None

    def reconnect(self) -> None:
        """Drop the connection and dial again (after a certificate rotation)."""
        self._reconnect_now.set()
        if self._ws is not None:
            self._close_soon(self._ws)

    def _close_soon(self, ws: WebSocket) -> None:
        """Close ``ws`` in the module's scope (the session then ends and the loop redials)."""
        if self._tasks is not None:
            self._tasks.create_task(_close_quietly(ws), name="edgehub-close")

    # -- the connection -------------------------------------------------------------------

    async def _connection_loop(self, ctx: BeehiveContext) -> None:
        headers = {"node_id": self.s.node_name, "project_id": self.s.project_id,
                   "ConnectionUse": "msg"}
        async with contextlib.AsyncExitStack() as stack:
            dial = self._dial
            if dial is None:
                timeout = aiohttp.ClientTimeout(total=None, connect=self.s.handshake_timeout,
                                                sock_connect=self.s.handshake_timeout)
                http = await stack.enter_async_context(aiohttp.ClientSession(timeout=timeout))
                dial = functools.partial(self._dial_tls, http)
            while True:
                ws = None
                try:
                    ws = await dial(self.s.url, headers)
                except (aiohttp.ClientError, OSError, TimeoutError, ConfigError) as exc:
                    log.warning("cannot connect to CloudHub at %s: %s", self.s.url,
                                _reason(exc))
                if ws is not None:
                    self._backoff.reset()
                    await self._serve(ctx, ws)
                if self._reconnect_now.is_set():
                    self._reconnect_now.clear()
                    continue
                delay = self._backoff.next_delay()
                log.info("reconnecting to CloudHub in %.1fs", delay)
                await self.clock.sleep(delay)

    async def _dial_tls(self, http: aiohttp.ClientSession, url: str,
                        headers: Mapping[str, str]) -> WebSocket:
        return await http.ws_connect(
            url, headers=headers, ssl=self.s.ssl_context(), heartbeat=self.s.heartbeat * 2,
            max_msg_size=self.s.max_frame, autoping=True, decode_text=False)

    async def _serve(self, ctx: BeehiveContext, ws: WebSocket) -> None:
        self.connects += 1
        log.info("connected to CloudHub %s as node %s", self.s.server, self.s.node_name)
        keepalive = asyncio.create_task(self._keepalive(ws))
        reader = asyncio.create_task(self._read(ctx, ws))
        try:
            # Connected first: what the modules send now queues behind the outbox's backlog.
            await self._publish_connection(ctx, Content.CLOUD_CONNECTED)
            await self._drain_outbox(ws)
            await reader
        except (ConnectionError, TimeoutError, RuntimeError, aiohttp.ClientError) as exc:
            log.warning("connection to CloudHub broke: %s", _reason(exc))
        finally:
            self.connected.clear()
            self._ws = None
            with contextlib.suppress(Exception):
                await ws.close()  # first, so nothing keeps writing to it
            for t in (keepalive, reader):
                t.cancel()
            await asyncio.gather(keepalive, reader, return_exceptions=True)
            code = ws.close_code
            log.warning("disconnected from CloudHub (close code %s)", code)
            await self._publish_connection(ctx, Content.CLOUD_DISCONNECTED)

    async def _drain_outbox(self, ws: WebSocket) -> None:
        """Send what waited in the outbox, oldest first, then switch to direct sending."""
        sent = 0
        while True:
            async with self._lock:
                batch = await self.outbox.peek(DRAIN_BATCH)
                if not batch:
                    self._ws = ws  # from now on send directly; nothing older is left
                    self.connected.set()
                    if sent:
                        log.info("sent %d message(s) kept while disconnected", sent)
                    return
            for seq, msg in batch:
                if msg is not None:
                    await self._throttle()
                    await self._write(ws, msg)
                    sent += 1
                await self.outbox.delete_through(seq)

    async def _keepalive(self, ws: WebSocket) -> None:
        while True:
            ping = new_message(source=EdgeModule.EDGEHUB, group=MessageGroup.RESOURCE,
                               resource=ResourceType.NODE, operation=Operation.KEEPALIVE,
                               content=Content.KEEPALIVE_PING)
            try:
                await self._write(ws, ping)
            except (ConnectionError, TimeoutError, RuntimeError) as exc:
                log.warning("keepalive failed: %s", exc)
                await ws.close()
                return
            await self.clock.sleep(self.s.heartbeat)

    async def _read(self, ctx: BeehiveContext, ws: WebSocket) -> None:
        async for frame in ws:
            if frame.type == WSMsgType.TEXT:
                wire_log("in", "cloud", frame.data)
                try:
                    msg = codec.decode(frame.data, self.s.max_frame)
                except DecodeError as exc:
                    log.error("CloudHub sent a malformed message (%s); ignored", exc)
                    continue
                await self._dispatch(ctx, msg)
            elif frame.type == WSMsgType.BINARY:
                log.error("CloudHub sent a binary frame; ignored")
            elif frame.type == WSMsgType.ERROR:
                log.warning("connection error: %s", ws.exception())
                return

    async def _dispatch(self, ctx: BeehiveContext, msg: Message) -> None:
        group = msg.group
        if msg.parent_msg_id and group in (MessageGroup.RESOURCE, MessageGroup.FUNC,
                                           MessageGroup.USER) and ctx.respond(msg):
            return
        if group in (MessageGroup.RESOURCE, MessageGroup.FUNC):
            target = EdgeGroup.META
        elif group == MessageGroup.TWIN:
            target = EdgeGroup.TWIN
        elif group == MessageGroup.TASKMANAGER:
            target = EdgeGroup.TASKMANAGER
        elif group == MessageGroup.USER:
            if msg.source == Source.ROUTER_EVENTBUS:
                target = EdgeGroup.BUS
            elif msg.source == Source.ROUTER_SERVICEBUS:
                target = EdgeGroup.USER
            else:
                await self._ack_unhandled(msg, f"user message from {msg.source!r}")
                return
        else:
            await self._ack_unhandled(msg, f"group {group!r}")
            return
        if not await ctx.send_to_group(target, msg):
            await self._ack_unhandled(msg, f"edge group {target} (no module)")

    async def _ack_unhandled(self, msg: Message, what: str) -> None:
        """A cloud message no module here takes (a device with no DeviceTwin, a task with
        no TaskManager): logged and ACKed, so the cloud's queue for this node moves on
        instead of waiting for the ACK (upstream's cloudcore waits 25 s for each)."""
        log.info("nothing handles %s (%s %s); ACKed as unsupported", what, msg.operation,
                 msg.resource)
        if msg.operation in (Operation.RESPONSE, Operation.ERROR) or msg.parent_msg_id:
            return  # an answer is never answered
        await self.send(response(msg, Content.ACK_OK))

    async def _publish_connection(self, ctx: BeehiveContext, content: str) -> None:
        for group in CONNECTION_EVENT_GROUPS:
            if not ctx.members(group):
                continue  # e.g. no DeviceTwin in this edgecore
            event = new_message(source=Source.EDGEHUB, group=group,
                                resource=ResourceType.NODE_CONNECTION,
                                operation=Operation.CONNECT, content=content)
            try:
                await ctx.send_to_group(group, event)
            except Exception as exc:
                log.warning("%s not told to group %s: %r", content, group, exc)

    # -- edge modules -> cloud -----------------------------------------------------------------

    async def _route_to_cloud(self, ctx: BeehiveContext) -> None:
        """Everything the modules send, in order, except Events: those wait until nothing
        else does. They share ``messageQPS`` with status patches, leases and ACKs, and a burst
        of pod starts made Running wait seconds behind its own Events (20 pods: p99 8.5 s
        with Events first, 3.0 s without them)."""
        events: deque[Message] = deque()
        while True:
            if events and ctx.qsize(self.name) == 0:
                await self.send(events.popleft())
                continue
            msg = await ctx.receive(self.name)
            if resource_type_of(msg.resource) != ResourceType.EVENT:
                await self.send(msg)
                continue
            if len(events) >= EVENTS_WAITING_MAX:
                events.popleft()
                self.events_dropped += 1
                if self.events_dropped % 100 == 1:
                    log.warning("%d Events waited for the cloud link; the oldest are dropped "
                                "(%d so far), as kubelet drops Events it cannot send",
                                EVENTS_WAITING_MAX, self.events_dropped)
            events.append(msg)

    async def send(self, msg: Message) -> None:
        """Send ``msg`` to the cloud now, or keep it for the reconnect; never drop it."""
        async with self._lock:
            ws = self._ws
            if ws is not None:
                try:
                    await self._throttle()
                    await self._write(ws, msg)
                    return
                except (ConnectionError, TimeoutError, RuntimeError) as exc:
                    log.warning("send failed (%s); reconnecting, the message is kept", exc)
                    self._ws = None
                    self.connected.clear()
                    # Close it, so the session ends and the reconnect drains the outbox.
                    self._close_soon(ws)
            try:
                kept = await self.outbox.put(msg, replace=coalesce_key(msg))
            except StoreError as exc:
                log.error("cannot keep %s in the outbox: %s", msg, exc)
                kept = False
            if not kept:
                log.error("outbox full (%d) or failing; refusing %s", self.outbox.limit, msg)
                if self._ctx is not None and msg.sync and not self._ctx.respond(
                        error_message(msg, "edgehub outbox is full")):
                    log.warning("nobody waits any more for the refusal of %s", msg)

    async def _throttle(self) -> None:
        now = self.clock.monotonic()
        if self._bucket is None:
            self._bucket = TokenBucket(self.s.message_qps, self.s.message_burst, now)
        wait = self._bucket.reserve(now)
        if wait > 0:
            await self.clock.sleep(wait)

    async def _write(self, ws: WebSocket, msg: Message) -> None:
        if ws.closed:
            raise ConnectionError("connection closed")
        if msg.sync:  # a local send_sync detail; never on the wire (as upstream)
            msg = dataclasses.replace(msg, sync=False)
        # A timeout scope, not wait_for: on 3.11 wait_for can swallow a cancellation.
        async with asyncio.timeout(self.s.write_timeout):
            data = codec.encode(msg)
            wire_log("out", "cloud", data)
            await ws.send_frame(data, WSMsgType.TEXT)


# Status that only matters in its newest version: while disconnected, a newer one replaces
# the one kept in the outbox instead of queueing behind it.
_LATEST_ONLY = frozenset({"nodepatch", "podpatch", "nodestatus", "podstatus", "lease"})


def coalesce_key(msg: Message) -> str | None:
    """The outbox key under which ``msg`` replaces an older message, if it may."""
    if msg.operation == Operation.RESPONSE:
        return None
    try:
        res = parse_edge(msg.resource)
    except DecodeError:
        return None
    return msg.resource if not res.is_list and res.resource_type in _LATEST_ONLY else None


async def _close_quietly(ws: WebSocket) -> None:
    with contextlib.suppress(Exception):
        await ws.close()


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]
