"""Informers against the real API server: order, no loss, no duplicates, across a restart of
kube-apiserver and across a forced 410 Gone (both make the informer recover on its own)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pykubeedge.devcluster.cluster import DevCluster
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.informer import Informer, InformerEvent
from pykubeedge.kube.resources import CONFIGMAPS
from tests.conftest import eventually
from tests.integration.faultproxy import FaultProxy

pytestmark = pytest.mark.integration

Seen = list[tuple[str, str, str]]


def recorder(seen: Seen):
    async def handle(ev: InformerEvent) -> None:
        seen.append((ev.type, ev.obj["metadata"]["name"], (ev.obj.get("data") or {}).get("v", "")))
    return handle


async def start(informer: Informer) -> asyncio.Task[None]:
    task = asyncio.create_task(informer.run())
    await asyncio.wait_for(informer.synced.wait(), 30)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def cm(ns: str, name: str, v: str) -> dict:
    return {"metadata": {"name": name, "namespace": ns}, "data": {"v": v}}


async def api_state(kube: KubeClient, ns: str) -> dict[str, str]:
    items = (await kube.list(CONFIGMAPS, namespace=ns))["items"]
    return {o["metadata"]["name"]: (o.get("data") or {}).get("v", "") for o in items}


def store_state(inf: Informer) -> dict[str, str]:
    return {o["metadata"]["name"]: (o.get("data") or {}).get("v", "")
            for o in inf.store.values()}


async def test_add_update_delete_in_order(kube: KubeClient, ns: str) -> None:
    seen: Seen = []
    inf = Informer(kube, CONFIGMAPS, recorder(seen), namespace=ns, field_selector=None)
    task = await start(inf)
    try:
        seen.clear()  # kube-root-ca.crt may or may not exist in the namespace
        await kube.create(CONFIGMAPS, cm(ns, "a", "1"))
        await kube.patch(CONFIGMAPS, "a", {"data": {"v": "2"}}, namespace=ns)
        await kube.create(CONFIGMAPS, cm(ns, "b", "1"))
        await kube.delete(CONFIGMAPS, "a", namespace=ns)
        expected = [("ADDED", "a", "1"), ("MODIFIED", "a", "2"), ("ADDED", "b", "1"),
                    ("DELETED", "a", "2")]
        await eventually(lambda: len(seen) >= 4, what="four events")
        await asyncio.sleep(0.3)  # anything extra would be a duplicate
        assert seen == expected
    finally:
        await stop(task)


async def test_survives_apiserver_restart(cluster: DevCluster, kube: KubeClient,
                                          ns: str) -> None:
    seen: Seen = []
    await kube.create(CONFIGMAPS, cm(ns, "before", "1"))
    inf = Informer(kube, CONFIGMAPS, recorder(seen), namespace=ns)
    task = await start(inf)
    try:
        await cluster.restart_apiserver()
        seen.clear()
        await kube.patch(CONFIGMAPS, "before", {"data": {"v": "2"}}, namespace=ns)
        await kube.create(CONFIGMAPS, cm(ns, "after", "1"))
        await eventually(lambda: store_state(inf) == {"before": "2", "after": "1"}
                         or len(seen) > 2, timeout=60, what="changes after the restart")
        await asyncio.sleep(0.3)
        assert seen == [("MODIFIED", "before", "2"), ("ADDED", "after", "1")]
        assert store_state(inf) == await api_state(kube, ns)
    finally:
        await stop(task)


@pytest.fixture
async def proxy(cluster: DevCluster) -> AsyncIterator[FaultProxy]:
    from pykubeedge.kube.config import load_kubeconfig

    async with FaultProxy(load_kubeconfig(cluster.kubeconfig)) as p:
        yield p


async def test_forced_410_relists_and_diffs(kube: KubeClient, ns: str,
                                            proxy: FaultProxy) -> None:
    for name in ("keep", "change", "remove"):
        await kube.create(CONFIGMAPS, cm(ns, name, "1"))
    seen: Seen = []
    async with KubeClient(proxy.client_config()) as via_proxy:
        inf = Informer(via_proxy, CONFIGMAPS, recorder(seen), namespace=ns,
                       sleep=lambda _s: asyncio.sleep(0.01))
        task = await start(inf)
        try:
            seen.clear()
            # Blind the informer, change things behind its back, then tell it 410 Gone.
            proxy.hold_watches()
            proxy.break_watches()
            await kube.patch(CONFIGMAPS, "change", {"data": {"v": "2"}}, namespace=ns)
            await kube.delete(CONFIGMAPS, "remove", namespace=ns)
            await kube.create(CONFIGMAPS, cm(ns, "new", "1"))
            proxy.gone_next_watches = 1
            proxy.release_watches()
            await eventually(lambda: inf.relists == 1 and len(seen) >= 3, what="relist")
            await asyncio.sleep(0.3)
            assert sorted(seen) == sorted([("MODIFIED", "change", "2"), ("DELETED", "remove", "1"),
                                           ("ADDED", "new", "1")])
            assert store_state(inf) == await api_state(kube, ns)
            # And it keeps watching afterwards.
            seen.clear()
            await kube.patch(CONFIGMAPS, "keep", {"data": {"v": "9"}}, namespace=ns)
            await eventually(lambda: seen == [("MODIFIED", "keep", "9")], what="watch resumes")
        finally:
            await stop(task)
