"""What CloudStream knows of the edge Nodes: which node an address belongs to (the API
server dials a node at its InternalIP, and the address a connection came in on names the
node, for the paths that name no pod), and that each connected node's kubelet endpoint
points at CloudStream's stream port.

An address two nodes claim names neither (the request is refused, never misrouted). Nodes
report their own addresses, so an address only ever selects among nodes by name: the tunnel
it reaches is the one that node's certificate opened::

    directory = NodeDirectory(kube, stream_port=10003, connected=sessions.get)
    task_group.create_task(directory.run())
    directory.node_for("127.0.0.2")          # 'edge-node'
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from pykubeedge.core.errors import KubeError, NotFound
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.informer import DELETED, Informer, InformerEvent
from pykubeedge.kube.resources import NODES

log = logging.getLogger(__name__)

EDGE_SELECTOR: Final = "node-role.kubernetes.io/edge"
PORT_RETRY: Final = 5.0


def internal_ips(node: dict[str, Any]) -> list[str]:
    """The node's InternalIP addresses."""
    addresses = (node.get("status") or {}).get("addresses") or []
    return [str(a.get("address")) for a in addresses
            if isinstance(a, dict) and a.get("type") == "InternalIP" and a.get("address")]


def kubelet_port(node: dict[str, Any]) -> int:
    endpoint = ((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint")
    port = endpoint.get("Port") if isinstance(endpoint, dict) else 0
    return port if isinstance(port, int) else 0


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class NodeDirectory:
    """Edge nodes by address, and their kubelet endpoint port kept at ``stream_port``.

    ``connected(node)`` says whether the node has a tunnel (only those are pointed at
    CloudStream); ``on_addresses(ips)`` is called with every InternalIP in use when the set
    changes (CloudStream listens on the loopback ones).
    """

    def __init__(self, kube: KubeClient, *, stream_port: int,
                 connected: Callable[[str], object],
                 on_addresses: Callable[[set[str]], Awaitable[None]] | None = None) -> None:
        self.kube = kube
        self.stream_port = stream_port
        self.connected = connected
        self.on_addresses = on_addresses
        self.informer = Informer(kube, NODES, self._on_event, label_selector=EDGE_SELECTOR)
        self.by_address: dict[str, set[str]] = {}
        self.port_patches = 0
        self._pending: set[str] = set()
        self._kick = asyncio.Event()
        self._known: set[str] = set()

    def node_for(self, address: str) -> str | None:
        """The one node whose InternalIP ``address`` is; None if none or several."""
        names = self.by_address.get(address)
        if not names:
            return None
        if len(names) > 1:
            log.warning("cloudstream: address %s is claimed by nodes %s; refusing to route "
                        "by it", address, ", ".join(sorted(names)))
            return None
        return next(iter(names))

    def ensure_endpoint(self, node: str) -> None:
        """Point ``node``'s kubelet endpoint at CloudStream (soon, in :meth:`run`)."""
        self._pending.add(node)
        self._kick.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.informer.run(), name="cloudstream-nodes")
            while True:
                await self._kick.wait()
                self._kick.clear()
                for node in sorted(self._pending):
                    self._pending.discard(node)
                    if not await self._patch_port(node):
                        self._pending.add(node)
                if self._pending:
                    await asyncio.sleep(PORT_RETRY)
                    self._kick.set()

    async def _on_event(self, event: InformerEvent) -> None:
        try:
            await self._apply(event)
        except Exception:  # a bad Node object must not end CloudStream (nor cloudcore)
            log.exception("cloudstream: cannot take in node event %s %s", event.type, event.key)

    async def _apply(self, event: InformerEvent) -> None:
        name = str((event.obj.get("metadata") or {}).get("name") or "")
        for names in self.by_address.values():
            names.discard(name)
        if event.type != DELETED:
            for ip in internal_ips(event.obj):
                self.by_address.setdefault(ip, set()).add(name)
            if self.connected(name) and kubelet_port(event.obj) != self.stream_port:
                self.ensure_endpoint(name)
        self.by_address = {ip: names for ip, names in self.by_address.items() if names}
        addresses = set(self.by_address)
        if addresses != self._known:
            self._known = addresses
            if self.on_addresses is not None:
                await self.on_addresses(addresses)

    async def _patch_port(self, node: str) -> bool:
        current = self.informer.get(node)
        if current is not None and kubelet_port(current) == self.stream_port:
            return True
        patch = {"status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": self.stream_port}}}}
        try:
            await self.kube.patch_status(NODES, node, patch)
        except NotFound:
            return True  # not registered yet: its ADDED event brings us back
        except KubeError as exc:
            log.warning("cloudstream: cannot point node %s at port %d: %s", node,
                        self.stream_port, exc)
            return False
        self.port_patches += 1
        log.info("cloudstream: node %s's kubelet endpoint is now port %d", node,
                 self.stream_port)
        return True
