"""EdgeStream: the edge's end of the stream tunnel. It dials CloudStream
(``wss://<server>/v1/kubeedge/connect``, headers ``SessionHostNameOverride`` and
``SessionInternalIP``) with the node's certificate, checks the cloud's certificate against
the CA (upstream skips that check), and replays every request the cloud sends against
Edged's kubelet server on this host, as upstream's EdgeStream replays them against the
kubelet read-only port::

    settings = EdgeStreamSettings(node_name="edge-1", node_ip="10.0.0.5",
                                  server="10.0.0.1:10004", ca_file=..., cert_file=...,
                                  key_file=..., local_server="127.0.0.1:10350")
    hive.add_module(EdgeStream(settings))

Logs and metrics are GETs whose body streams back as DATA frames; exec, attach and
port-forward are upgrades relayed byte for byte. The request's own host is never dialled:
only the local kubelet server is. A lost tunnel is dialled again with jittered backoff; its
streams end with it (no task outlives its tunnel).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp

from pykubeedge.beehive import BeehiveContext, RestartPolicy, RestartType
from pykubeedge.beehive.clock import REAL_CLOCK
from pykubeedge.core import expvar
from pykubeedge.core.backoff import Backoff
from pykubeedge.core.clock import Clock
from pykubeedge.core.config import EdgeCoreConfig
from pykubeedge.core.constants import EdgeGroup, EdgeModule
from pykubeedge.core.errors import ConfigError, DecodeError, StreamError
from pykubeedge.core.httphead import end_to_end, render_request_head
from pykubeedge.core.stream import (
    MAX_DATA,
    UPGRADE_TYPES,
    ConnectRequest,
    Frame,
    MessageType,
    decode_connect,
    encode_failure,
)
from pykubeedge.transport import rawhttp
from pykubeedge.transport.tls import client_context_from_files
from pykubeedge.transport.tunnel import (
    IDLE_TIMEOUT,
    PING_INTERVAL,
    Role,
    Tunnel,
    TunnelSocket,
    TunnelStream,
    splice_stream,
)

log = logging.getLogger(__name__)

TUNNEL_PATH: Final = "/v1/kubeedge/connect"
HEADER_NODE: Final = "SessionHostNameOverride"
HEADER_IP: Final = "SessionInternalIP"
MAX_ERROR_BODY: Final = 64 * 1024
LOCAL_CONNECT_TIMEOUT: Final = 10.0

Dial = Callable[[str, Mapping[str, str]], Awaitable[TunnelSocket]]


@dataclass(frozen=True)
class EdgeStreamSettings:
    node_name: str
    node_ip: str
    server: str
    """host:port of CloudStream's tunnel server."""
    ca_file: Path
    cert_file: Path
    key_file: Path
    local_server: str = "127.0.0.1:10350"
    """host:port of Edged's kubelet server."""
    handshake_timeout: float = 30.0
    write_timeout: float = 15.0
    read_timeout: float = 15.0
    reconnect_initial: float = 1.0
    reconnect_cap: float = 30.0
    max_streams: int = 512

    @classmethod
    def from_config(cls, cfg: EdgeCoreConfig, *, node_ip: str,
                    local_server: str) -> EdgeStreamSettings:
        """``modules.edgeStream``; a tunnel certificate file that does not exist is replaced
        by EdgeHub's (the node's certificate), as upstream's cloud falls back to CloudHub's."""
        es, hub = cfg.modules.edgeStream, cfg.modules.edgeHub
        files = []
        for own, fallback in ((es.tlsTunnelCAFile, hub.tlsCaFile),
                              (es.tlsTunnelCertFile, hub.tlsCertFile),
                              (es.tlsTunnelPrivateKeyFile, hub.tlsPrivateKeyFile)):
            files.append(Path(own) if Path(own).exists() or own == fallback else Path(fallback))
        return cls(node_name=cfg.node_name, node_ip=node_ip, server=es.server,
                   ca_file=files[0], cert_file=files[1], key_file=files[2],
                   local_server=local_server, handshake_timeout=es.handshakeTimeout,
                   write_timeout=es.writeDeadline, read_timeout=es.readDeadline)

    @property
    def url(self) -> str:
        return f"wss://{self.server}{TUNNEL_PATH}"

    def ssl_context(self) -> ssl.SSLContext:
        """The node's certificate, read afresh at every dial (it rotates)."""
        return client_context_from_files(self.ca_file, self.cert_file, self.key_file,
                                         what="tunnel")


class EdgeStream:
    """The ``edgestream`` module (group ``edgestream``)."""

    name = EdgeModule.EDGESTREAM
    group = EdgeGroup.EDGESTREAM
    restart_policy = RestartPolicy(RestartType.ON_FAILURE, retries=0)

    def __init__(self, settings: EdgeStreamSettings, *, dial: Dial | None = None,
                 clock: Clock = REAL_CLOCK) -> None:
        self.s = settings
        self.clock = clock
        self._dial = dial
        self._backoff = Backoff(settings.reconnect_initial, settings.reconnect_cap)
        self.tunnel: Tunnel | None = None
        self.connected = asyncio.Event()
        self.connects = 0
        self.served = 0
        self.failed = 0
        local_host, _, local_port = settings.local_server.rpartition(":")
        self._local = (local_host or "127.0.0.1", int(local_port))
        self._expvar = f"edgestream:{settings.node_name}"

    def vars(self) -> dict[str, Any]:
        tunnel = self.tunnel
        return {"connected": self.connected.is_set(), "connects": self.connects,
                "served": self.served, "failed": self.failed,
                "open_streams": len(tunnel.streams) if tunnel else 0,
                "handlers": tunnel.handlers if tunnel else 0,
                **(vars(tunnel.stats) if tunnel else {})}

    async def start(self, ctx: BeehiveContext) -> None:
        expvar.publish(self._expvar, self.vars)
        try:
            await self._connection_loop()
        finally:
            expvar.unpublish(self._expvar, self.vars)

    # -- the tunnel -----------------------------------------------------------------------------

    async def _connection_loop(self) -> None:
        headers = {HEADER_NODE: self.s.node_name, HEADER_IP: self.s.node_ip}
        async with contextlib.AsyncExitStack() as stack:
            dial = self._dial
            if dial is None:
                timeout = aiohttp.ClientTimeout(total=None, connect=self.s.handshake_timeout,
                                                sock_connect=self.s.handshake_timeout)
                http = await stack.enter_async_context(aiohttp.ClientSession(timeout=timeout))

                async def dial(url: str, hdrs: Mapping[str, str]) -> TunnelSocket:
                    ws: TunnelSocket = await http.ws_connect(
                        url, headers=hdrs, ssl=self.s.ssl_context(), autoping=False,
                        decode_text=False, max_msg_size=4 * MAX_DATA)
                    return ws
            while True:
                ws = None
                try:
                    ws = await dial(self.s.url, headers)
                except aiohttp.WSServerHandshakeError as exc:
                    log.warning("CloudStream at %s refused the tunnel: %s %s", self.s.server,
                                exc.status, exc.message)
                except (aiohttp.ClientError, OSError, TimeoutError, ConfigError) as exc:
                    log.warning("cannot open the stream tunnel to %s: %s", self.s.server,
                                exc or type(exc).__name__)
                if ws is not None:
                    self._backoff.reset()
                    await self._serve_tunnel(ws)
                delay = self._backoff.next_delay()
                log.info("stream tunnel: dialling %s again in %.1fs", self.s.server, delay)
                await self.clock.sleep(delay)

    async def _serve_tunnel(self, ws: TunnelSocket) -> None:
        self.connects += 1
        tunnel = Tunnel(ws, name=self.s.node_name, role=Role.EDGE, on_connect=self._serve,
                        max_streams=self.s.max_streams, write_timeout=self.s.write_timeout,
                        idle_timeout=max(IDLE_TIMEOUT, 2 * self.s.read_timeout),
                        ping_interval=PING_INTERVAL, clock=self.clock)
        self.tunnel = tunnel
        self.connected.set()
        log.info("stream tunnel to %s open (node %s, %s)", self.s.server, self.s.node_name,
                 self.s.node_ip)
        try:
            await tunnel.run()
        finally:
            self.connected.clear()
            log.info("stream tunnel to %s closed: %s", self.s.server, tunnel.close_reason)

    # -- one request ----------------------------------------------------------------------------

    async def _serve(self, stream: TunnelStream, frame: Frame) -> None:
        try:
            request = decode_connect(frame.data)
        except DecodeError as exc:
            self.failed += 1
            log.warning("stream tunnel: bad %s payload for connection %d: %s",
                        frame.type.name, frame.connect_id, exc)
            raise StreamError(f"bad connect payload: {exc}", 400) from None
        log.debug("stream tunnel: %s %s", frame.type.name, request.target)
        self.served += 1
        try:
            async with asyncio.timeout(LOCAL_CONNECT_TIMEOUT):
                reader, writer = await asyncio.open_connection(*self._local)
        except (OSError, TimeoutError) as exc:
            self.failed += 1
            raise StreamError(f"the kubelet server at {self.s.local_server} is not "
                              f"reachable: {exc}", 502) from None
        if frame.type in UPGRADE_TYPES:
            method = request.method or "POST"
            writer.write(render_request_head(method, request.target,
                                             self._headers(request, upgrade=True)))
            await splice_stream(stream, reader, writer)
            return
        try:
            await self._relay_get(stream, request, reader, writer)
        finally:
            await rawhttp.close_writer(writer)

    def _headers(self, request: ConnectRequest, *, upgrade: bool) -> list[tuple[str, str]]:
        flat = [(k, v) for k, values in request.headers.items() for v in values]
        if upgrade:  # the upgrade headers are the request; keep them
            headers = [(k, v) for k, v in flat if k.lower() not in ("host", "content-length")]
        else:
            headers = end_to_end(flat, drop=("host", "accept-encoding", "content-length"))
            headers += [("Accept-Encoding", "identity"), ("Connection", "close")]
        return [("Host", self.s.local_server), *headers]

    async def _relay_get(self, stream: TunnelStream, request: ConnectRequest,
                         reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(render_request_head("GET", request.target,
                                         self._headers(request, upgrade=False)))
        await writer.drain()
        try:
            head = await rawhttp.read_response_head(reader)
        except DecodeError as exc:
            raise StreamError(f"the kubelet server answered badly: {exc}", 502) from None
        body = rawhttp.iter_body(reader, head)
        if head.status != 200:
            text = b""
            async for data in body:
                text += data
                if len(text) >= MAX_ERROR_BODY:
                    break
            message = text[:MAX_ERROR_BODY].decode("utf-8", "replace").strip()
            log.info("stream tunnel: %s answered %d: %s", request.target, head.status, message)
            # The failure first (pykubeedge's cloud answers with it); then the text as
            # upstream's edge sends it, for an upstream cloud, which ignores the failure.
            await stream.tunnel.send(Frame(stream.connect_id, MessageType.CLOSE_CONNECT,
                                           encode_failure(head.status, message)))
            if text:
                await stream.write(text[:MAX_ERROR_BODY])
            return
        await stream.accept()
        watcher = asyncio.ensure_future(_peer_gone(stream))
        try:
            pump = asyncio.ensure_future(_pump(body, stream))
            await asyncio.wait({pump, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if pump.done():
                pump.result()
            else:
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
        finally:
            watcher.cancel()


async def _pump(body: Any, stream: TunnelStream) -> None:
    async for data in body:
        await stream.write(data)


async def _peer_gone(stream: TunnelStream) -> None:
    """Returns when the cloud ends the stream (the API server's request is gone)."""
    with contextlib.suppress(StreamError):
        async for _ in stream:
            pass

