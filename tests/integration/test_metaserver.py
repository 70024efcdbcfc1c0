"""MetaServer against the real kubectl: a real SQLite file, a real aiohttp server on loopback,
and objects put there the way the cloud does it, through MetaManager in a real Hive.

Covered: ``get pods -A``, ``get cm -n``, ``get pod x -o json``, label and field selectors,
nodes, and ``get pods -w`` seeing an update that arrives through MetaManager.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pykubeedge.beehive import NEVER, BeehiveContext, Hive, RestartPolicy
from pykubeedge.core.message import Message, new_message
from pykubeedge.edge.metamanager import MetaManager, MetaServer, MetaStore
from tests.conftest import eventually
from tests.unit.edge.metamanager.objects import configmap, node, pod

WAIT = 30.0  # bound of one kubectl call; never reached when things work

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


@dataclass
class Sink:
    """Stands in for Edged and EdgeHub: takes what MetaManager sends and keeps it."""

    name: str
    group: str
    restart_policy: RestartPolicy = NEVER

    def __post_init__(self) -> None:
        self.messages: list[Message] = []

    async def start(self, ctx: BeehiveContext) -> None:
        while True:
            self.messages.append(await ctx.receive(self.name))


@dataclass
class EdgeNode:
    hive: Hive
    store: MetaStore
    server: MetaServer
    hub: Sink
    tmp: Path

    async def cloud(self, operation: str, resource: str, content: Any) -> None:
        """Deliver a message as EdgeHub does and wait for MetaManager's ACK."""
        msg = new_message(source="edgecontroller", group="resource", resource=resource,
                          operation=operation, content=content)
        await self.hive.send("metamanager", msg)
        await eventually(lambda: any(m.parent_msg_id == msg.msg_id for m in self.hub.messages),
                         timeout=WAIT, interval=0.005, what=f"the ACK of {resource}")

    def env(self) -> dict[str, str]:
        kubeconfig = self.tmp / "kubeconfig"
        kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
        return {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(self.tmp)}

    def args(self, *args: str) -> list[str]:
        return [KUBECTL, "--server", self.server.url, "--cache-dir", str(self.tmp / "cache"),
                "--request-timeout", "10s", *args]

    async def kubectl(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            *self.args(*args), env=self.env(), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            async with asyncio.timeout(WAIT):
                out, err = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0, f"kubectl {' '.join(args)} failed: {err.decode()}"
        return out.decode()


@pytest.fixture
async def edge_node(tmp_path: Path) -> AsyncIterator[EdgeNode]:
    assert os.access(KUBECTL, os.X_OK), f"kubectl is needed at {KUBECTL}"
    store = await MetaStore.open(tmp_path / "edgecore.db")
    server = MetaServer(store, host="127.0.0.1", port=0)
    await server.start()
    hub = Sink("websocket", "hub")
    try:
        async with Hive() as hive:
            hive.add_module(MetaManager(store))
            hive.add_module(Sink("edged", "edged"))
            hive.add_module(hub)
            edge = EdgeNode(hive, store, server, hub, tmp_path)
            await edge.cloud("insert", "default/pod/web",
                             pod("web", phase="Pending", labels={"app": "web", "tier": "front"}))
            await edge.cloud("insert", "default/pod/db",
                             pod("db", phase="Pending", labels={"app": "db", "tier": "back"}))
            await edge.cloud("insert", "shop/pod/cart", pod("cart", "shop", labels={"app": "cart"}))
            await edge.cloud("insert", "shop/configmap/settings",
                             configmap("settings", "shop", color="blue", size="xl"))
            await edge.cloud("insert", "shop/configmap/flags", configmap("flags", "shop"))
            await edge.cloud("update", "null/node/edge-1", node())
            yield edge
    finally:
        await server.close()
        await store.close()


def table(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()]


async def test_get_pods_all_namespaces(edge_node: EdgeNode) -> None:
    rows = table(await edge_node.kubectl("get", "pods", "-A"))
    assert rows[0] == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert sorted((r[0], r[1], r[3]) for r in rows[1:]) == [
        ("default", "db", "Pending"), ("default", "web", "Pending"), ("shop", "cart", "Pending")]


async def test_get_configmaps_in_a_namespace(edge_node: EdgeNode) -> None:
    rows = table(await edge_node.kubectl("get", "cm", "-n", "shop"))
    assert rows[0] == ["NAME", "DATA", "AGE"]
    assert sorted((r[0], r[1]) for r in rows[1:]) == [("flags", "0"), ("settings", "2")]


async def test_get_one_pod_as_json(edge_node: EdgeNode) -> None:
    obj = json.loads(await edge_node.kubectl("get", "pod", "web", "-n", "default", "-o", "json"))
    assert (obj["kind"], obj["metadata"]["name"], obj["metadata"]["uid"]) == (
        "Pod", "web", "uid-web")
    assert int(obj["metadata"]["resourceVersion"]) > 0


async def test_label_and_field_selectors(edge_node: EdgeNode) -> None:
    names = await edge_node.kubectl("get", "pods", "-A", "-l", "tier in (front,back)",
                                    "-o", "name")
    assert sorted(names.split()) == ["pod/db", "pod/web"]
    names = await edge_node.kubectl("get", "pods", "-A", "-l", "app!=web,!tier", "-o", "name")
    assert names.split() == ["pod/cart"]
    names = await edge_node.kubectl("get", "pods", "-A", "--field-selector",
                                    "metadata.namespace=default,metadata.name!=db", "-o", "name")
    assert names.split() == ["pod/web"]


async def test_get_nodes(edge_node: EdgeNode) -> None:
    rows = table(await edge_node.kubectl("get", "nodes"))
    assert rows[0] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert rows[1][:3] == ["edge-1", "Ready", "edge"]


async def test_watch_sees_an_update_made_through_metamanager(edge_node: EdgeNode) -> None:
    proc = await asyncio.create_subprocess_exec(
        *edge_node.args("get", "pods", "-n", "default", "-w"), env=edge_node.env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    seen: list[list[str]] = []

    async def read_until(predicate: Any) -> None:
        while not any(predicate(row) for row in seen):
            line = await proc.stdout.readline()  # type: ignore[union-attr]
            assert line, "kubectl get -w ended"
            seen.append(line.decode().split())

    try:
        async with asyncio.timeout(WAIT):
            await read_until(lambda r: r[:1] == ["web"])
            await read_until(lambda r: r[:1] == ["db"])
            running = pod("web", phase="Running", labels={"app": "web", "tier": "front"})
            running["status"]["containerStatuses"] = [
                {"name": "main", "ready": True, "restartCount": 0, "state": {"running": {}}}]
            await edge_node.cloud("update", "default/pod/web", running)
            await read_until(lambda r: r[:3] == ["web", "1/1", "Running"])
            await edge_node.cloud("delete", "default/pod/db", pod("db"))
            # kubectl prints a deleted pod's last state once more
            await read_until(lambda r: sum(1 for x in seen if x[:1] == ["db"]) > 1)
    finally:
        proc.kill()
        await proc.wait()
    assert seen[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
