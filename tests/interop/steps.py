"""What the interop tests do to the cluster and read from the edge, for either edge."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pykubeedge.core.errors import NotFound
from pykubeedge.edge.edged.runtime import ContainerState, SandboxState
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.resources import CONFIGMAPS, NODES, PODS, SECRETS
from tests.conftest import eventually
from tests.e2e.conftest import edge_rows
from tests.interop.rig import InteropRig

NS = "default"
# A pod whose shell ends on SIGTERM, so deleting it takes as long as the edge takes to act.
_WAIT_FOR_TERM = "trap 'exit 0' TERM; while true; do sleep 1; done"


def pod(name: str, node: str, *, configmap: str | None = None,
        secret: str | None = None) -> dict[str, Any]:
    """A busybox pod on ``node`` (the bridge network), mounting what it is given."""
    mounts: list[dict[str, str]] = []
    volumes: list[dict[str, Any]] = []
    if configmap:
        mounts.append({"name": "cfg", "mountPath": "/cfg"})
        volumes.append({"name": "cfg", "configMap": {"name": configmap}})
    if secret:
        mounts.append({"name": "sec", "mountPath": "/sec"})
        volumes.append({"name": "sec", "secret": {"secretName": secret}})
    return {
        "metadata": {"name": name, "namespace": NS, "labels": {"interop": "yes"}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 5,
                 "containers": [{"name": "c", "image": "busybox",
                                 # :latest defaults to Always; no registry is reachable
                                 "imagePullPolicy": "IfNotPresent",
                                 "command": ["sh", "-c", _WAIT_FOR_TERM],
                                 "volumeMounts": mounts}],
                 "volumes": volumes},
    }


def kube(rig: InteropRig) -> KubeClient:
    assert rig.kube is not None
    return rig.kube


async def phase(rig: InteropRig, name: str) -> str | None:
    try:
        obj = await kube(rig).get(PODS, name, namespace=NS)
    except NotFound:
        return None
    return (obj.get("status") or {}).get("phase")


async def gone(rig: InteropRig, name: str) -> bool:
    try:
        await kube(rig).get(PODS, name, namespace=NS)
    except NotFound:
        return True
    return False


async def ready_status(rig: InteropRig) -> str:
    node = await kube(rig).get(NODES, rig.node)
    conditions = (node.get("status") or {}).get("conditions") or []
    return next((c["status"] for c in conditions if c["type"] == "Ready"), "Unknown")


def edge_row(rig: InteropRig, rtype: str, name: str) -> dict[str, Any] | None:
    """The edge's stored copy of ``<NS>/<rtype>/<name>`` (same table for both edges)."""
    if not rig.edge_db.exists():
        return None
    return edge_rows(rig.edge_db, rtype).get(f"{NS}/{rtype}/{name}")


async def timed(what: str, check: Callable[[], Awaitable[bool] | bool], *,
                timeout: float = 120.0, interval: float = 0.05) -> float:
    """Seconds until ``check`` holds (bounded by ``timeout``); printed for the record."""
    t0 = time.monotonic()
    await eventually(check, timeout=timeout, interval=interval, what=what)
    took = time.monotonic() - t0
    print(f"{what}: {took:.2f}s")
    return took


async def create_configmap(rig: InteropRig, name: str, data: dict[str, str]) -> None:
    await kube(rig).create(CONFIGMAPS, {"metadata": {"name": name, "namespace": NS},
                                        "data": data})


async def create_secret(rig: InteropRig, name: str, data: dict[str, str]) -> None:
    await kube(rig).create(SECRETS, {"metadata": {"name": name, "namespace": NS},
                                     "stringData": data})


async def running_containers(rig: InteropRig, pod_name: str) -> list[str]:
    """IDs of the pod's running containers, as the private containerd reports them."""
    assert rig.containerd is not None
    async with rig.containerd.runtime() as runtime:
        pods = await runtime.list_pods()
    return [c.id for p in pods if p.name == pod_name for c in p.containers
            if c.state is ContainerState.RUNNING]


async def ready_sandboxes(rig: InteropRig, pod_name: str) -> int:
    """The pod's sandboxes still up (kubelet stops them at once, removes them at its next
    container GC, a minute later)."""
    assert rig.containerd is not None
    async with rig.containerd.runtime() as runtime:
        return sum(1 for p in await runtime.list_pods()
                   if p.name == pod_name and p.state is SandboxState.READY)


async def is_(coro: Awaitable[object], value: object) -> bool:
    """For eventually(): ``lambda: is_(phase(rig, "p"), "Running")``."""
    return await coro == value


async def is_not(coro: Awaitable[object], value: object) -> bool:
    return await coro != value


async def settle(seconds: float) -> None:
    """Let time pass on purpose (a renewal period, an outage), bounded by the caller."""
    await asyncio.sleep(seconds)
