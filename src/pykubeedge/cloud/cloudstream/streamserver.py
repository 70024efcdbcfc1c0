"""CloudStream's stream server: the kubelet endpoint the API server (and metrics-server)
reach edge nodes at. Each request is authenticated (client certificate of the stream CA),
authorized as kubelet authorizes it (:mod:`.authz`), mapped to its node, and relayed
through that node's tunnel::

    server = StreamServer(sessions, directory, authz, kube, ssl_ctx, host="0.0.0.0",
                          port=10003)
    await server.start()

Which node: the pod's (``spec.nodeName``) for ``/containerLogs``, ``/exec``, ``/attach`` and
``/portForward``; for paths that name no pod (``/stats``, ``/metrics``, ``/healthz``,
``/pods``), the node whose InternalIP the connection came in on, else the one the ``Host``
header names (a DNAT in front keeps it), else the node of an API-server node proxy
(``X-Forwarded-Uri: /api/v1/nodes/<n>/proxy/...``).

How: logs and GETs go as ``LOGS_CONNECT``/``METRIC_CONNECT`` and come back as a chunked
response whose status is the edge's; exec, attach and port-forward are upgrades: the API
server's connection is taken over and relayed byte for byte (the 101 and the SPDY session
come from the edge's runtime). When the API server goes away (``kubectl`` killed), the
stream is removed at once on both sides: no loop spins on a dead connection (upstream
#3232).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Final

import orjson

from pykubeedge.cloud.cloudstream.authz import (
    Authorizer,
    attributes,
    forbidden_message,
    identity_of,
)
from pykubeedge.cloud.cloudstream.nodes import NodeDirectory, is_loopback
from pykubeedge.cloud.cloudstream.tunnelserver import Sessions
from pykubeedge.core.errors import KubeError, NotFound, StreamError
from pykubeedge.core.httphead import RequestHead, chunk, render_response_head, simple_response
from pykubeedge.core.stream import ConnectRequest, MessageType, encode_connect
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.resources import PODS
from pykubeedge.transport.rawhttp import (
    Connection,
    RawHTTPServer,
    hangup,
    process_vars,
    unless_gone,
)
from pykubeedge.transport.tunnel import TunnelStream, splice_stream

log = logging.getLogger(__name__)

ACCEPT_TIMEOUT: Final = 30.0
"""Seconds the edge has to answer a request (upstream edges answer with data only; a quiet
followed log is then answered 200 when this passes)."""
POD_ROUTES: Final = frozenset({"containerLogs", "exec", "attach", "portForward"})
UPGRADE_ROUTES: Final = frozenset({"exec", "attach", "portForward"})
GET_ROUTES: Final = frozenset({"stats", "metrics", "healthz", "pods", "spec"})
JSON: Final = "application/json"
TEXT: Final = "text/plain; charset=utf-8"


class Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _content_type(route: str, rest: list[str]) -> str:
    if route in ("stats", "pods", "spec"):
        return JSON
    if route == "metrics":
        return "text/plain; version=0.0.4; charset=utf-8"
    return TEXT


class StreamServer:
    """See the module doc. ``counters`` and :meth:`vars` show what it did and holds."""

    def __init__(self, sessions: Sessions, directory: NodeDirectory, authz: Authorizer,
                 kube: KubeClient, ssl_context: ssl.SSLContext | None, *, host: str,
                 port: int, accept_timeout: float = ACCEPT_TIMEOUT) -> None:
        self.sessions = sessions
        self.directory = directory
        self.authz = authz
        self.kube = kube
        self.accept_timeout = accept_timeout
        self.http = RawHTTPServer(self._handle, host=host, port=port, name="cloudstream",
                                  ssl_context=ssl_context)
        self.counters = {"logs": 0, "upgrades": 0, "gets": 0, "refused": 0, "forbidden": 0,
                         "unauthenticated": 0, "no_tunnel": 0}
        self.open_streams = 0
        self._listeners: dict[str, asyncio.Server] = {}

    @property
    def port(self) -> int:
        return self.http.port

    def vars(self) -> dict[str, Any]:
        return {"connections": self.http.connections, "open_streams": self.open_streams,
                "listeners": sorted(self._listeners), **self.counters,
                "tunnels": self.sessions.vars()}

    async def start(self) -> None:
        await self.http.start()
        log.info("CloudStream stream server on %s:%d (https, client certificates of the "
                 "stream CA)", self.http.host, self.port)

    async def close(self) -> None:
        await self.http.close()

    async def listen_on(self, addresses: set[str]) -> None:
        """Also listen on these node addresses (loopback ones only, and only when the main
        listener is not on every address): how one host tells nodes apart by address."""
        if self.http.host in ("0.0.0.0", "::", ""):
            return
        wanted = {a for a in addresses if a != self.http.host and is_loopback(a)}
        for address in sorted(wanted - set(self._listeners)):
            try:
                self._listeners[address] = await self.http.listen(address, self.port,
                                                                  self.http.ssl_context)
                log.info("CloudStream: also listening on %s:%d (a node's address)", address,
                         self.port)
            except OSError as exc:
                log.warning("CloudStream: cannot listen on node address %s:%d: %s", address,
                            self.port, exc.strerror or exc)
        for address in sorted(set(self._listeners) - wanted):
            await self.http.unlisten(self._listeners.pop(address))

    # -- one request ----------------------------------------------------------------------------

    async def _handle(self, head: RequestHead, conn: Connection) -> bool:
        parts = [p for p in head.path.split("/") if p]
        route, rest = (parts[0], parts[1:]) if parts else ("", [])
        try:
            if route == "debug" and rest == ["vars"]:
                await self._authorize(head, conn, "")
                body = orjson.dumps(process_vars())
                await conn.send(simple_response(200, body, content_type=JSON))
                return True
            node = await self._node(route, rest, head, conn)
            await self._authorize(head, conn, node)
            tunnel = self.sessions.get(node)
            if tunnel is None:
                self.counters["no_tunnel"] += 1
                raise Refused(503, f"node {node} has no stream tunnel to cloudcore (is "
                                   "modules.edgeStream enabled on it?)")
            if route in UPGRADE_ROUTES:
                if not head.is_upgrade:
                    raise Refused(400, "Upgrade request required")
                await self._upgrade(tunnel, head, conn)
                return False
            return await self._get(tunnel, route, rest, head, conn)
        except Refused as exc:
            self.counters["refused"] += 1
            await conn.send(simple_response(exc.code, str(exc) + "\n", close=True))
            return False
        except StreamError as exc:
            self.counters["refused"] += 1
            await conn.send(simple_response(exc.code, str(exc) + "\n", close=True))
            return False

    async def _authorize(self, head: RequestHead, conn: Connection, node: str) -> None:
        who = identity_of(conn.peer_cert)
        if who is None:
            self.counters["unauthenticated"] += 1
            raise Refused(401, "Unauthorized")
        attrs = attributes(head.method, head.path)
        ok, why = await self.authz.allowed(who, attrs, node)
        if not ok:
            self.counters["forbidden"] += 1
            log.warning("cloudstream: %s refused %s %s on node %s%s", who.user, head.method,
                        head.path, node or "*", f" ({why})" if why else "")
            raise Refused(403, forbidden_message(who, attrs))

    async def _node(self, route: str, rest: list[str], head: RequestHead,
                    conn: Connection) -> str:
        local = self.directory.node_for(conn.local_address)
        if route in POD_ROUTES:
            if len(rest) < 2:
                raise Refused(404, "404 page not found")
            namespace, name = rest[0], rest[1]
            try:
                pod = await self.kube.get(PODS, name, namespace=namespace)
            except NotFound:
                raise Refused(404, f'pod "{name}" does not exist') from None
            except KubeError as exc:
                raise Refused(502, f"cannot read pod {namespace}/{name}: {exc}") from None
            node = str((pod.get("spec") or {}).get("nodeName") or "")
            if not node:
                raise Refused(400, f'pod "{name}" is not scheduled to a node')
            if local is not None and local != node:
                # this address is another node's kubelet: it has no such pod
                raise Refused(404, f'pod "{name}" does not exist')
            return node
        if route not in GET_ROUTES:
            raise Refused(404, "404 page not found")
        if local is not None:
            return local
        host = head.header("host").rpartition(":")[0].strip("[]") or head.header("host")
        by_host = self.directory.node_for(host)
        if by_host is not None:
            return by_host
        forwarded = head.header("x-forwarded-uri").split("/")
        if len(forwarded) > 6 and forwarded[1:4] == ["api", "v1", "nodes"]:
            return forwarded[4]
        raise Refused(404, f"no edge node has the address {conn.local_address or host}")

    def _request(self, tunnel_id: int, head: RequestHead, *, method: str = "") -> bytes:
        headers: dict[str, list[str]] = {}
        for name, value in head.headers:
            if name.lower() != "host":
                headers.setdefault(name, []).append(value)
        path, _, query = head.target.partition("?")
        return encode_connect(ConnectRequest(
            mess_id=tunnel_id, path=head.path, raw_query=query,
            headers={k: tuple(v) for k, v in headers.items()}, method=method,
            raw_path=path if path != head.path else ""))

    # -- logs and other GETs --------------------------------------------------------------------

    async def _get(self, tunnel: Any, route: str, rest: list[str], head: RequestHead,
                   conn: Connection) -> bool:
        kind = MessageType.LOGS_CONNECT if route == "containerLogs" else \
            MessageType.METRIC_CONNECT
        self.counters["logs" if kind is MessageType.LOGS_CONNECT else "gets"] += 1
        connect_id = self.sessions.next_id()
        stream = await tunnel.open(connect_id, kind, self._request(connect_id, head))
        self.open_streams += 1
        try:
            return await self._answer(stream, route, rest, conn)
        finally:
            self.open_streams -= 1
            await stream.close()

    async def _answer(self, stream: TunnelStream, route: str, rest: list[str],
                      conn: Connection) -> bool:
        async with hangup(conn) as gone:  # the API server hangs up: the stream is removed
            answered, _ = await unless_gone(gone, stream.wait_accepted(self.accept_timeout))
            if not answered:
                return False
            if stream.failure is not None:
                code, message = stream.failure
                await conn.send(simple_response(code, message + "\n", close=True))
                return False
            await conn.send(render_response_head(200, [
                ("Content-Type", _content_type(route, rest)), ("Transfer-Encoding", "chunked")]))
            finished, complete = await unless_gone(gone, self._pump(stream, conn))
            return finished and bool(complete)

    @staticmethod
    async def _pump(stream: TunnelStream, conn: Connection) -> bool:
        try:
            async for data in stream:
                await conn.send(chunk(data))
        except StreamError as exc:
            # the head is out: the body just ends (as kubelet's would on an error)
            log.info("cloudstream: %r ended early: %s", stream, exc)
            return False
        await conn.send(chunk(b""))
        return True

    # -- exec, attach, port-forward -------------------------------------------------------------

    async def _upgrade(self, tunnel: Any, head: RequestHead, conn: Connection) -> None:
        self.counters["upgrades"] += 1
        connect_id = self.sessions.next_id()
        # Upstream has no port-forward type; an ExecConnect relays any upgrade, so that is
        # what it goes as (an upstream edge's kubelet serves it too).
        kind = MessageType.ATTACH_CONNECT if head.path.startswith("/attach/") else \
            MessageType.EXEC_CONNECT
        stream = await tunnel.open(connect_id, kind,
                                   self._request(connect_id, head, method=head.method))
        self.open_streams += 1
        try:
            if not await stream.wait_accepted(self.accept_timeout):
                raise Refused(504, f"node {tunnel.name} did not answer in "
                                   f"{self.accept_timeout:g}s")
            if stream.failure is not None and not stream.buffered:
                raise Refused(*stream.failure)
            await splice_stream(stream, conn.reader, conn.writer)
        finally:
            self.open_streams -= 1
            await stream.close()

