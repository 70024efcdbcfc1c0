"""CloudStream's tunnel server (port 10004, ``GET /v1/kubeedge/connect``): where EdgeStream
dials in. Mutual TLS against the CloudHub CA, and, where upstream trusts the header, the
certificate must be the node's own (``CN=system:node:<SessionHostNameOverride>``): a tunnel
carries only its own node's requests. A second tunnel of a node replaces the first (which is
closed, its streams failing)::

    sessions = Sessions()
    server = TunnelServer(sessions, ssl_ctx, host="0.0.0.0", port=10004,
                          on_tunnel=lambda node, ip: ...)
    await server.start()
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from pykubeedge.core.stream import MAX_DATA
from pykubeedge.transport.tls import peer_common_name
from pykubeedge.transport.token import node_common_name
from pykubeedge.transport.tunnel import IDLE_TIMEOUT, Role, Tunnel

log = logging.getLogger(__name__)

TUNNEL_PATH: Final = "/v1/kubeedge/connect"
HEADER_NODE: Final = "SessionHostNameOverride"
HEADER_IP: Final = "SessionInternalIP"
HANDSHAKE_TIMEOUT: Final = 2.0  # upstream's upgrader


class Sessions:
    """The open tunnels, by node name, and the connection ids they share (one counter per
    cloudcore process, as upstream; the first id is 1)."""

    def __init__(self, node_limit: int = 1000) -> None:
        self.node_limit = node_limit
        self.tunnels: dict[str, Tunnel] = {}
        self.addresses: dict[str, str] = {}
        self._next_id = 0

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def get(self, node: str) -> Tunnel | None:
        tunnel = self.tunnels.get(node)
        return tunnel if tunnel is not None and not tunnel.closed else None

    def add(self, node: str, ip: str, tunnel: Tunnel) -> Tunnel | None:
        """Make ``tunnel`` the node's; the one it replaces, if any."""
        old = self.tunnels.get(node)
        self.tunnels[node] = tunnel
        self.addresses[node] = ip
        return old

    def remove(self, node: str, tunnel: Tunnel) -> None:
        if self.tunnels.get(node) is tunnel:
            del self.tunnels[node]
            self.addresses.pop(node, None)

    def vars(self) -> dict[str, Any]:
        return {node: {"address": self.addresses.get(node, ""), "streams": len(t.streams),
                       **vars(t.stats)} for node, t in self.tunnels.items()}


class TunnelServer:
    def __init__(self, sessions: Sessions, ssl_context: ssl.SSLContext | None, *, host: str,
                 port: int, on_tunnel: Callable[[str, str], None] = lambda node, ip: None,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.sessions = sessions
        self.ssl_context = ssl_context
        self.host = host
        self.port = port
        self.on_tunnel = on_tunnel
        self.idle_timeout = idle_timeout
        self.refused = 0
        self._runner: web.AppRunner | None = None
        self._closing: set[asyncio.Future[None]] = set()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(TUNNEL_PATH, self._connect)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        if self.port == 0:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("CloudStream tunnel server on %s:%d (wss, node certificates required)",
                 self.host, self.port)

    async def close(self) -> None:
        for tunnel in list(self.sessions.tunnels.values()):
            await tunnel.close("cloudcore shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _refuse(self, status: int, why: str, request: web.Request) -> web.Response:
        self.refused += 1
        log.warning("CloudStream: refused a tunnel from %s: %s", request.remote, why)
        return web.Response(status=status, text=why + "\n")

    async def _connect(self, request: web.Request) -> web.StreamResponse:
        node = request.headers.get(HEADER_NODE, "")
        if not node:
            return self._refuse(400, f"no {HEADER_NODE} header", request)
        sslobj = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        cn = peer_common_name(der)
        if cn != node_common_name(node):
            return self._refuse(403, f"the certificate of {cn!r} may not open the tunnel of "
                                     f"node {node!r}", request)
        if node not in self.sessions.tunnels and (
                len(self.sessions.tunnels) >= self.sessions.node_limit):
            return self._refuse(503, f"{self.sessions.node_limit} nodes are connected "
                                     "already", request)
        ip = request.headers.get(HEADER_IP, "") or (request.remote or "")
        ws = web.WebSocketResponse(autoping=False, max_msg_size=4 * MAX_DATA,
                                   receive_timeout=None, decode_text=False)
        await ws.prepare(request)
        tunnel = Tunnel(ws, name=node, role=Role.CLOUD, idle_timeout=self.idle_timeout)
        old = self.sessions.add(node, ip, tunnel)
        if old is not None:
            log.info("CloudStream: node %s opened a new tunnel; closing the old one", node)
            closing = asyncio.ensure_future(old.close("replaced by a new tunnel of the node"))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        log.info("CloudStream: tunnel of node %s open (%s)", node, ip)
        self.on_tunnel(node, ip)
        try:
            await tunnel.run()
        finally:
            self.sessions.remove(node, tunnel)
            log.info("CloudStream: tunnel of node %s closed: %s", node, tunnel.close_reason)
        return ws
