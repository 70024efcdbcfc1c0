"""CloudStream: the cloud's end of the stream tunnel, as a beehive module. It runs the tunnel
server edges dial (10004), the stream server the API server reaches edge nodes' kubelets at
(10003), and the node directory that maps addresses to nodes and points each connected
node's kubelet endpoint at the stream port::

    tls = await asyncio.to_thread(tls_contexts, cfg.modules.cloudStream, fallback)
    hive.add_module(CloudStream(kube, cfg.modules.cloudStream, tls))

Without iptables: the API server dials ``<node InternalIP>:<streamPort>`` directly. On one
host every edge node gets a loopback address of its own (127.0.0.x) and CloudStream listens
on it too; elsewhere the node's address must route to cloudcore (docs/streams.md).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pykubeedge.beehive import BeehiveContext, RestartPolicy, RestartType
from pykubeedge.cloud.cloudstream.authz import Authorizer, SubjectAccessAuthorizer
from pykubeedge.cloud.cloudstream.nodes import NodeDirectory
from pykubeedge.cloud.cloudstream.streamserver import StreamServer
from pykubeedge.cloud.cloudstream.tunnelserver import Sessions, TunnelServer
from pykubeedge.core import expvar
from pykubeedge.core.config import CloudStream as CloudStreamConfig
from pykubeedge.core.constants import CloudGroup, CloudModule
from pykubeedge.core.errors import ConfigError
from pykubeedge.kube.client import KubeClient
from pykubeedge.transport.tls import server_context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fallback:
    """What CloudStream uses when its own certificate files are absent (upstream falls back
    to CloudHub's for the tunnel): CloudHub's CA and server pair, and the API server's CA
    (which, in most clusters, also signs its kubelet client certificate)."""

    hub_ca_pem: bytes
    hub_cert_pem: bytes
    hub_key_pem: bytes
    kube_ca_pem: bytes


@dataclass(frozen=True)
class StreamTLS:
    tunnel: ssl.SSLContext
    stream: ssl.SSLContext
    sources: tuple[str, ...]


def _read(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def tls_contexts(cfg: CloudStreamConfig, fallback: Fallback) -> StreamTLS:
    """Both servers' TLS, from ``modules.cloudStream``'s files where they exist (blocking)."""
    sources = []
    tunnel_ca = _read(cfg.tlsTunnelCAFile)
    tunnel_cert, tunnel_key = _read(cfg.tlsTunnelCertFile), _read(cfg.tlsTunnelPrivateKeyFile)
    if tunnel_cert is None or tunnel_key is None:
        tunnel_cert, tunnel_key = fallback.hub_cert_pem, fallback.hub_key_pem
        sources.append("tunnel certificate: CloudHub's")
    if tunnel_ca is None:
        tunnel_ca = fallback.hub_ca_pem
        sources.append("tunnel CA: CloudHub's")
    stream_cert, stream_key = _read(cfg.tlsStreamCertFile), _read(cfg.tlsStreamPrivateKeyFile)
    if stream_cert is None or stream_key is None:
        stream_cert, stream_key = fallback.hub_cert_pem, fallback.hub_key_pem
        sources.append("stream certificate: CloudHub's")
    stream_ca = _read(cfg.tlsStreamCAFile)
    if stream_ca is None:
        if not fallback.kube_ca_pem:
            raise ConfigError(f"modules.cloudStream.tlsStreamCAFile ({cfg.tlsStreamCAFile}) "
                              "does not exist and the kubeconfig names no CA: CloudStream "
                              "needs the CA of the API server's --kubelet-client-certificate")
        stream_ca = fallback.kube_ca_pem
        sources.append("stream client CA: the API server's CA")
    tunnel = server_context(tunnel_cert, tunnel_key, tunnel_ca, require_client_cert=True)
    stream = server_context(stream_cert, stream_key, stream_ca, require_client_cert=True)
    return StreamTLS(tunnel, stream, tuple(sources))


class CloudStream:
    """The ``cloudStream`` module (see the module doc)."""

    name = CloudModule.CLOUDSTREAM
    group = CloudGroup.CLOUDSTREAM
    # A CloudStream that cannot listen (a port taken) ends cloudcore with the reason.
    restart_policy = RestartPolicy(RestartType.NEVER)

    def __init__(self, kube: KubeClient, cfg: CloudStreamConfig, tls: StreamTLS, *,
                 node_limit: int = 1000, authorizer: Authorizer | None = None) -> None:
        self.kube = kube
        self.cfg = cfg
        self.tls = tls
        self.sessions = Sessions(node_limit)
        self.directory = NodeDirectory(kube, stream_port=cfg.streamPort,
                                       connected=self.sessions.get,
                                       on_addresses=self._addresses)
        self.authz = authorizer or SubjectAccessAuthorizer(kube)
        self.tunnel_server = TunnelServer(self.sessions, tls.tunnel, host=cfg.tunnelAddress,
                                          port=cfg.tunnelPort,
                                          on_tunnel=lambda node, ip:
                                          self.directory.ensure_endpoint(node))
        self.stream_server = StreamServer(self.sessions, self.directory, self.authz, kube,
                                          tls.stream, host=cfg.streamAddress,
                                          port=cfg.streamPort)
        self.ready = asyncio.Event()

    def vars(self) -> dict[str, Any]:
        return {"stream_server": self.stream_server.vars(),
                "tunnels_refused": self.tunnel_server.refused,
                "port_patches": self.directory.port_patches}

    async def _addresses(self, addresses: set[str]) -> None:
        await self.stream_server.listen_on(addresses)

    async def start(self, ctx: BeehiveContext) -> None:
        expvar.publish("cloudstream", self.vars)
        try:
            await self.stream_server.start()
            self.directory.stream_port = self.stream_server.port
            await self.tunnel_server.start()
            for source in self.tls.sources:
                log.info("CloudStream TLS: %s", source)
            self.ready.set()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.directory.run(), name="cloudstream-directory")
                while True:  # nothing is sent to CloudStream; keep its queue drained
                    await ctx.receive(self.name)
        finally:
            expvar.unpublish("cloudstream", self.vars)
            await self.tunnel_server.close()
            await self.stream_server.close()
