"""A real CloudHub and real EdgeHubs on loopback with real TLS, for the fabric tests.

    async with CloudSide(pki) as cloud:
        async with EdgeSide(pki, "edge-1", cloud.port, tmp_path) as edge:
            await cloud.send_down("edge-1", pod_message(...))
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pykubeedge.beehive import Hive, RestartPolicy
from pykubeedge.cloud.cloudhub.hub import CloudHub
from pykubeedge.core.config import DEFAULT_PROJECT_ID
from pykubeedge.core.hubproto import NodeQueue
from pykubeedge.core.message import Message, new_message, response
from pykubeedge.edge.edgehub.hub import EdgeHub, EdgeHubSettings
from pykubeedge.edge.edgehub.outbox import Outbox
from pykubeedge.transport import certs
from pykubeedge.transport.tls import client_context, server_context


@dataclass
class PKI:
    ca: certs.KeyPair = field(default_factory=lambda: certs.new_ca("KubeEdge"))

    def __post_init__(self) -> None:
        self.server = certs.issue(self.ca, "KubeEdge", orgs=["KubeEdge"], ips=["127.0.0.1"],
                                  server=True)

    def server_ssl(self) -> Any:
        return server_context(self.server.cert_pem(), self.server.key_pem(), self.ca.cert_pem())

    def node_pair(self, node: str, ca: certs.KeyPair | None = None) -> certs.KeyPair:
        return certs.issue(ca or self.ca, f"system:node:{node}", orgs=["system:nodes"],
                           client=True)

    def write_node_files(self, node: str, d: Path, cn_node: str | None = None) -> tuple[Path, ...]:
        pair = self.node_pair(cn_node or node)
        d.mkdir(parents=True, exist_ok=True)
        paths = (d / "rootCA.crt", d / "server.crt", d / "server.key")
        for p, data in zip(paths, (self.ca.cert_pem(), pair.cert_pem(), pair.key_pem()),
                           strict=True):
            p.write_bytes(data)
        return paths

    def client_ssl(self, node: str) -> Any:
        pair = self.node_pair(node)
        return client_context(self.ca.cert_pem(), pair.cert_pem(), pair.key_pem())


class Recorder:
    """A stand-in controller (or edge module) that records what reaches its group."""

    restart_policy = RestartPolicy()

    def __init__(self, name: str, group: str, ack_to: str | None = None) -> None:
        self.name = name
        self.group = group
        self.ack_to = ack_to  # ACK like metamanager does: response "OK" to EdgeHub
        self.ack = True
        self.messages: list[Message] = []
        self.changed = asyncio.Event()

    async def start(self, ctx: Any) -> None:
        while True:
            msg = await ctx.receive(self.name)
            self.messages.append(msg)
            self.changed.set()
            if self.ack_to and self.ack and msg.operation in ("insert", "update", "delete"):
                await ctx.send(self.ack_to, response(msg, "OK"))

    def of(self, operation: str | None = None) -> list[Message]:
        return [m for m in self.messages if operation is None or m.operation == operation]


class CloudSide:
    def __init__(self, pki: PKI, *, port: int = 0, keepalive: float = 30.0,
                 resend_interval: float = 5.0, node_limit: int = 500,
                 max_frame: int = 1024 * 1024) -> None:
        self.controller = Recorder("edgecontroller", "edgecontroller")
        self.acks: list[tuple[str, Message]] = []
        self.hub = CloudHub(pki.server_ssl(), host="127.0.0.1", port=port,
                            keepalive_interval=keepalive, node_limit=node_limit,
                            max_frame=max_frame,
                            ack_listener=lambda node, m: self.acks.append((node, m)),
                            queue_factory=lambda: NodeQueue(resend_interval=resend_interval))
        self.hive = Hive()
        self._stack = contextlib.AsyncExitStack()

    @property
    def port(self) -> int:
        return self.hub.port

    async def __aenter__(self) -> CloudSide:
        self.hive.add_module(self.hub)
        self.hive.add_module(self.controller)
        await self._stack.enter_async_context(self.hive)
        await asyncio.wait_for(self.hub.ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def send_down(self, node: str, msg: Message) -> None:
        await self.hive.send("cloudhub", msg)


class EdgeSide:
    def __init__(self, pki: PKI, node: str, port: int, workdir: Path, *, heartbeat: float = 15.0,
                 qps: float = 10_000, burst: int = 10_000) -> None:
        self.node = node
        self.workdir = workdir / node
        ca, cert, key = pki.write_node_files(node, self.workdir)
        self.settings = EdgeHubSettings(
            node_name=node, server=f"127.0.0.1:{port}", project_id=DEFAULT_PROJECT_ID,
            heartbeat=heartbeat, message_qps=qps, message_burst=burst, ca_file=ca, cert_file=cert,
            key_file=key, reconnect_initial=0.05, reconnect_cap=0.5)
        self.meta = Recorder("metamanager", "meta", ack_to="websocket")
        self.hive = Hive()
        self.hub: EdgeHub | None = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> EdgeSide:
        outbox = await Outbox.open(self.workdir / "edgecore.db")
        self._stack.push_async_callback(outbox.close)
        self.hub = EdgeHub(self.settings, outbox)
        self.hive.add_module(self.hub)
        self.hive.add_module(self.meta)
        await self._stack.enter_async_context(self.hive)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def send_up(self, msg: Message) -> None:
        await self.hive.send("websocket", msg)


def pod_message(node: str, name: str, rv: str, *, uid: str | None = None,
                op: str = "update") -> Message:
    return new_message(source="edgecontroller", group="resource", operation=op,
                       resource=f"node/{node}/default/pod/{name}", resourceversion=rv,
                       content={"metadata": {"name": name, "namespace": "default",
                                             "uid": uid or f"uid-{name}", "resourceVersion": rv}})
