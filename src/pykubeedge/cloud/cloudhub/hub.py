"""CloudHub: the WebSocket server that holds one multiplexed channel per edge node.

It is the beehive module ``cloudhub``. Controllers send it messages whose resource is
``node/<id>/...``; it queues them per node (:class:`NodeQueue`), writes them to the node and
waits for ACKs. Messages from edges are dispatched to the controllers with the node prefix.

Security: the TLS client certificate must be signed by the CloudHub CA, and its CN must be
``system:node:<node_id>`` for the ``node_id`` header (upstream trusts the header alone).

    hub = CloudHub(ssl_ctx, port=10000, keepalive_interval=30, node_limit=500)
    hive.add_module(hub)

Without a listening socket (``listen=False``) it serves the connections handed to
:meth:`CloudHub.accept`, e.g. by an in-memory network in tests, on the clock it is given::

    hub = CloudHub(None, listen=False, clock=FakeClock())
    async with MemoryNetwork(hub.accept) as network: ...
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from aiohttp import WSCloseCode, web

from pykubeedge.beehive import BeehiveContext, RestartPolicy, RestartType
from pykubeedge.beehive.clock import REAL_CLOCK
from pykubeedge.cloud.cloudhub.session import NodeSession
from pykubeedge.core import codec
from pykubeedge.core.clock import Clock
from pykubeedge.core.constants import (
    CLOUD_ONLY_SOURCES,
    NULL_NAMESPACE,
    CloudGroup,
    CloudModule,
    EdgeModule,
    MessageGroup,
    Operation,
    ResourceType,
    Source,
)
from pykubeedge.core.errors import DecodeError
from pykubeedge.core.hubproto import NodeQueue, Pushed
from pykubeedge.core.message import Message, error_message, new_message, response
from pykubeedge.core.resource import (
    build_cloud,
    node_resource,
    prefix_for_cloud,
    split_node_prefix,
    trim_for_edge,
)
from pykubeedge.transport.tls import peer_common_name
from pykubeedge.transport.websocket import WebSocket

log = logging.getLogger(__name__)

AckListener = Callable[[str, Message], None]
NODE_CN_PREFIX = "system:node:"
_VIADUCT_CONTROL = frozenset({Operation.CONFIG, Operation.PING, Operation.PONG})
# Node task reports of an edge (upstream: v1alpha1 "upgrade"/"prepull" results, and
# v1alpha2's "UpdateNodeActionStatus", edge/pkg/common/message/nodetask.go); never answered.
_TASK_OPS = frozenset({Operation.UPGRADE, Operation.PREPULL, "UpdateNodeActionStatus"})


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class CloudHub:
    name = CloudModule.CLOUDHUB
    group = CloudGroup.CLOUDHUB
    # A CloudHub that cannot serve (port taken, TLS broken) ends cloudcore with the reason.
    restart_policy = RestartPolicy(RestartType.NEVER)

    def __init__(self, ssl_context: ssl.SSLContext | None, *, host: str = "0.0.0.0",
                 port: int = 10000, keepalive_interval: float = 30.0, node_limit: int = 500,
                 write_timeout: float = 30.0, max_frame: int = codec.MAX_MESSAGE_SIZE,
                 ack_listener: AckListener | None = None, cluster_ca: bytes = b"",
                 queue_factory: Callable[[], NodeQueue] = NodeQueue,
                 clock: Clock = REAL_CLOCK, listen: bool = True) -> None:
        self.ssl_context = ssl_context
        self.clock = clock
        self.listen = listen
        self.host = host
        self.port = port
        self.keepalive_interval = keepalive_interval
        self.node_limit = node_limit
        self.write_timeout = write_timeout
        self.max_frame = max_frame
        self.ack_listener = ack_listener
        self.cluster_ca = cluster_ca  # the API server's CA, for edges asking for k8s/ca.crt
        self._queue_factory = queue_factory
        self.sessions: dict[str, NodeSession] = {}
        # Queues outlive connections, so nothing is lost while a node is away. Bounded:
        # beyond 2 x node_limit the longest-disconnected node's queue goes.
        self.queues: OrderedDict[str, NodeQueue] = OrderedDict()
        self._ctx: BeehiveContext | None = None
        self._runner: web.AppRunner | None = None
        self._handshakes: dict[str, list[Any]] = {}  # node -> [lock, users]
        self._tasks: asyncio.TaskGroup | None = None
        self.ready = asyncio.Event()
        self.bad_frames = 0

    # -- module --------------------------------------------------------------------------

    async def start(self, ctx: BeehiveContext) -> None:
        self._ctx = ctx
        try:
            if self.listen:
                await self._serve()  # a port taken fails the module with that OSError
            else:
                self.ready.set()
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                while True:
                    await self._downstream(await ctx.receive(self.name))
        finally:
            self._tasks = None
            await self._shutdown()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)  # upstream ignores the path
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context,
                           backlog=4096)
        await site.start()
        if self.port == 0:  # tests ask for a free port
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("CloudHub listening on %s:%d (wss, client certificates required)",
                 self.host, self.port)
        self.ready.set()

    async def _shutdown(self) -> None:
        for s in list(self.sessions.values()):
            await s.close(WSCloseCode.GOING_AWAY, "cloudcore shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- downstream: controllers -> edge -----------------------------------------------

    def queue_for(self, node_id: str) -> NodeQueue:
        q = self.queues.get(node_id)
        if q is None:
            q = self.queues[node_id] = self._queue_factory()
            while len(self.queues) > 2 * self.node_limit:
                victim = next((n for n in self.queues if n not in self.sessions), None)
                if victim is None:
                    break
                dropped = self.queues.pop(victim)
                log.warning("dropping the queue of long-disconnected node %s (%d messages)",
                            victim, len(dropped))
        return q

    async def _downstream(self, msg: Message) -> None:
        try:
            node_id, _ = split_node_prefix(msg.resource)
        except DecodeError as exc:
            log.error("cloudhub: cannot route %s: %s", msg, exc)
            return
        node_deleted = (msg.operation == Operation.DELETE and msg.resource == build_cloud(
            node_id, NULL_NAMESPACE, ResourceType.NODE, node_id))
        # A copy for the edge: the sender may still hold its message.
        self.deliver(node_id, dataclasses.replace(msg, resource=trim_for_edge(msg.resource)))
        if node_deleted and self._tasks is not None:
            # The Node is gone: tell the edge, then end its session.
            self._tasks.create_task(self._forget_node(node_id), name=f"forget-{node_id}")

    async def _forget_node(self, node_id: str, grace: float = 5.0) -> None:
        clock = self.clock
        deadline = clock.monotonic() + grace
        queue = self.queues.get(node_id)
        # Polled (bounded by ``grace``): the queue has no "drained" signal, and this is rare.
        while queue is not None and len(queue) and clock.monotonic() < deadline:
            await clock.sleep(0.1)
        async with self._node_lock(node_id):
            session = self.sessions.get(node_id)
            if session is not None:
                await self._end(session, "the node was deleted")
            if self.sessions.get(node_id) in (None, session):  # not if the edge is back
                self.queues.pop(node_id, None)
        log.info("node %s deleted: session ended, queue dropped", node_id)

    def deliver(self, node_id: str, msg: Message) -> Pushed:
        """Queue an edge-form message for ``node_id`` and wake its writer."""
        result = self.queue_for(node_id).push(msg, self.clock.monotonic())
        if result is Pushed.DROPPED_STALE:
            log.debug("node %s: %s %s", node_id, result.value, msg)  # a newer one is queued
        elif result is not Pushed.QUEUED:
            log.warning("node %s: %s not sent: %s", node_id, msg, result.value)
        session = self.sessions.get(node_id)
        if session is not None:
            session.wake()
        return result

    # -- connections -----------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """The WebSocket endpoint (aiohttp): identity checks, then one session."""
        node_id = request.headers.get("node_id", "")
        project_id = request.headers.get("project_id", "")
        peer = request.remote or "?"
        if not node_id:
            log.warning("refused a connection from %s: no node_id header", peer)
            return web.Response(status=400, text="missing node_id header\n")
        if self.ssl_context is not None:
            ssl_obj = request.transport.get_extra_info("ssl_object") if request.transport else None
            cn = peer_common_name(ssl_obj.getpeercert(binary_form=True) if ssl_obj else None)
            if cn != NODE_CN_PREFIX + node_id:
                log.warning("refused node %r from %s: certificate CN %r does not match the "
                            "node_id header", node_id, peer, cn)
                return web.Response(status=403, text=f"certificate CN {cn!r} is not "
                                                     f"{NODE_CN_PREFIX}{node_id}\n")
        ws = web.WebSocketResponse(max_msg_size=self.max_frame, autoping=True,
                                   compress=False, decode_text=False)

        async def prepare() -> WebSocket:
            await ws.prepare(request)
            return ws

        try:
            session = await self._open_session(node_id, project_id, peer, prepare)
        except _Refused as refused:
            return web.Response(status=refused.status, text=f"{refused}\n")
        await self._serve_session(session)
        return ws

    async def accept(self, headers: Mapping[str, str], ws: WebSocket, *,
                     peer: str = "memory") -> Awaitable[None]:
        """Admit a connection that arrived some other way than the listening socket (an
        in-memory network): the coroutine that serves it, or ``ConnectionRefusedError``.

        >>> serve = await hub.accept({"node_id": "edge-1"}, server_end)   # doctest: +SKIP
        >>> await serve    # until the session ends
        """
        node_id = headers.get("node_id", "")
        if not node_id:
            raise ConnectionRefusedError("missing node_id header")

        async def given() -> WebSocket:
            return ws

        try:
            session = await self._open_session(node_id, headers.get("project_id", ""), peer,
                                               given)
        except _Refused as refused:
            raise ConnectionRefusedError(str(refused)) from None
        return self._serve_session(session)

    async def _open_session(self, node_id: str, project_id: str, peer: str,
                            prepare: Callable[[], Awaitable[WebSocket]]) -> NodeSession:
        # One handshake per node at a time: two sessions must never share a node's queue.
        async with self._node_lock(node_id):
            old = self.sessions.get(node_id)
            if old is None and len(self.sessions) >= self.node_limit:
                log.error("refused node %s: nodeLimit %d reached", node_id, self.node_limit)
                raise _Refused(503, "cloudhub node limit reached")
            ws = await prepare()
            if old is not None:
                log.info("node %s connected again from %s; replacing its old session",
                         node_id, peer)
                await self._end(old, "replaced by a new connection")
            session = NodeSession(node_id, project_id, ws, self.queue_for(node_id),
                                  self._upstream, keepalive_interval=self.keepalive_interval,
                                  write_timeout=self.write_timeout, max_frame=self.max_frame,
                                  clock=self.clock)
            self.queues.move_to_end(node_id)
            self.sessions[node_id] = session
        log.info("node %s connected from %s", node_id, peer)
        return session

    async def _serve_session(self, session: NodeSession) -> None:
        node_id = session.node_id
        await self._publish_connection(node_id, Operation.CONNECTED)
        try:
            await session.run()
        finally:
            if self.sessions.get(node_id) is session:
                del self.sessions[node_id]
                await self._publish_connection(node_id, Operation.DISCONNECTED)

    @contextlib.asynccontextmanager
    async def _node_lock(self, node_id: str) -> AsyncIterator[None]:
        """Serialize what changes a node's session; the lock is dropped with its last user."""
        entry = self._handshakes.get(node_id)
        if entry is None:
            entry = self._handshakes[node_id] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._handshakes[node_id]

    async def _end(self, session: NodeSession, reason: str) -> None:
        """Close ``session`` and wait until it has handed its in-flight messages back."""
        await session.close(WSCloseCode.POLICY_VIOLATION, reason)
        try:
            async with asyncio.timeout(5):
                await session.done.wait()
        except TimeoutError:
            if session.task is not None:
                session.task.cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await session.done.wait()

    async def _publish_connection(self, node_id: str, event: str) -> None:
        if self._ctx is None:
            return
        msg = new_message(source=CloudModule.CLOUDHUB, group=MessageGroup.RESOURCE,
                          resource=node_resource(node_id), operation=event,
                          content={"event_type": event, "timestamp": int(self.clock.time()),
                                   "client_id": node_id})
        try:
            await self._ctx.send_to_group(CloudGroup.EDGECONTROLLER, msg)
        except Exception as exc:
            log.warning("node %s %s: the event did not reach the controllers: %r", node_id,
                        event, exc)

    # -- upstream: edge -> controllers -------------------------------------------------------

    async def _upstream(self, session: NodeSession, msg: Message) -> None:
        op = msg.operation
        node_id = session.node_id
        if op == Operation.KEEPALIVE:
            session.on_keepalive()
            return
        if msg.source in CLOUD_ONLY_SOURCES and op != Operation.RESPONSE:
            log.warning("node %s sent a message claiming a cloud source %r; dropped",
                        node_id, msg.source)
            return
        if op == Operation.RESPONSE:
            acked = session.queue.ack(msg.parent_msg_id, session.now())
            if acked is not None:
                session.wake()
                if self.ack_listener is not None:
                    self.ack_listener(node_id, acked)
                return
            if self._ctx is not None and msg.parent_msg_id and self._ctx.respond(msg):
                return
            log.debug("node %s: response to unknown message %s", node_id, msg.parent_msg_id)
            return
        if op == Operation.ERROR:
            log.warning("node %s reported an error for %s: %s", node_id, msg.resource,
                        str(msg.content)[:300])
            return
        if op in _VIADUCT_CONTROL:
            self.deliver(node_id, response(msg, "ack"))
            return
        if not msg.resource and not msg.operation:
            # What upstream's edgehub writes while it shuts down (a zero message from a
            # closed channel): nothing to answer.
            log.info("node %s sent an empty message; dropped", node_id)
            return
        if msg.resource == ResourceType.K8S_CA:  # answered here, as upstream's CloudHub does
            reply = (response(msg, self.cluster_ca.decode()) if self.cluster_ca
                     else error_message(msg, "cloudcore does not know the cluster CA",
                                        source=CloudModule.CLOUDHUB))
            # Group "resource", whatever the request's: upstream's edgehub drops a reply in
            # any other group (its Go edge asks in group "meta").
            self.deliver(node_id, dataclasses.replace(
                reply, source=CloudModule.CLOUDHUB, group=MessageGroup.RESOURCE))
            return
        try:
            resource = prefix_for_cloud(node_id, msg.resource)
        except DecodeError as exc:
            log.warning("node %s: %s", node_id, exc)
            self.deliver(node_id, error_message(msg, exc, source=CloudModule.CLOUDHUB,
                                                group=MessageGroup.RESOURCE))
            return
        await self._publish_upstream(dataclasses.replace(msg, resource=resource))

    async def _publish_upstream(self, msg: Message) -> None:
        if msg.operation == Operation.UPLOAD and msg.group == MessageGroup.USER:
            group = CloudGroup.ROUTER
        elif msg.operation in _TASK_OPS:
            group = CloudGroup.TASKMANAGER
        elif msg.source == Source.METASERVER:
            group = CloudGroup.DYNAMICCONTROLLER
        elif msg.source == EdgeModule.DEVICETWIN:
            group = CloudGroup.DEVICECONTROLLER
        else:
            group = CloudGroup.EDGECONTROLLER
        assert self._ctx is not None
        delivered = await self._ctx.send_to_group(group, msg)
        if not delivered and group == CloudGroup.TASKMANAGER:
            # No node task controller in this cloudcore: the report is kept in the log.
            log.info("node task report %s %s (no task manager here): %s", msg.operation,
                     msg.resource, str(msg.content)[:300])
        elif not delivered:
            log.debug("no module in group %s for %s", group, msg)


def describe(hub: CloudHub) -> dict[str, Any]:
    """A snapshot for logs and diagnostics."""
    return {
        "connected": len(hub.sessions),
        "queues": len(hub.queues),
        "queued": sum(len(q) for q in hub.queues.values()),
        "inflight": sum(q.inflight for q in hub.queues.values()),
    }
