"""MetaServer's unhold-upgrade subresource: upstream's routes, bodies and answers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from pykubeedge.edge.metamanager.dao import MetaStore
from pykubeedge.edge.metamanager.metaserver import MetaServer
from tests.unit.edge.metamanager.objects import node, pod

HOLD = {"edge.kubeedge.io/hold-upgrade": "true"}


@pytest.fixture
async def served(store: MetaStore) -> AsyncIterator[tuple[MetaServer, list[tuple[str, str]]]]:
    held = pod("web")
    held["metadata"]["annotations"] = HOLD
    running = pod("api", phase="Running")
    running["metadata"]["annotations"] = HOLD
    other = pod("db", node="edge-2")
    other["metadata"]["annotations"] = HOLD
    for key, obj in (("default/pod/web", held), ("default/pod/api", running),
                     ("default/pod/plain", pod("plain")), ("default/pod/db", other),
                     ("null/node/edge-1", node())):
        await store.upsert(key, obj)
    released: list[tuple[str, str]] = []

    async def unhold(namespace: str, name: str) -> None:
        released.append((namespace, name))

    async with MetaServer(store, port=0) as server:
        server.unhold = unhold
        yield server, released


async def post(server: MetaServer, path: str, body: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(
            server.url + path, data=body, headers={"Content-Type": "text/plain"}) as resp:
        return resp.status, await resp.text()


async def test_a_held_pending_pod_is_released(served: tuple[MetaServer, list]) -> None:
    server, released = served
    assert await post(server, "/api/v1/pods/unhold-upgrade", "default/web") == (200, "")
    # the namespace in the path is ignored, as upstream
    assert (await post(server, "/api/v1/namespaces/x/pods/unhold-upgrade", "default/web"))[0] \
        == 200
    assert released == [("default", "web"), ("default", "web")]


@pytest.mark.parametrize(("body", "status", "text"), [
    ("web", 400, "invalid format, expected <namespace>/<name>\n"),
    ("default/ghost", 404, 'pod not found: pods "ghost" not found\n'),
    ("default/plain", 400, "pod is not marked with hold-upgrade annotation\n"),
    ("default/api", 400, "pod is not in pending phase\n"),
])
async def test_refusals_carry_upstreams_texts(served: tuple[MetaServer, list], body: str,
                                              status: int, text: str) -> None:
    server, released = served
    assert await post(server, "/api/v1/pods/unhold-upgrade", body) == (status, text)
    assert released == []


async def test_the_node_form_releases_every_held_pod_of_the_node(
        served: tuple[MetaServer, list]) -> None:
    server, released = served
    assert await post(server, "/api/v1/nodes/unhold-upgrade", "edge-1\n") == (200, "")
    assert released == [("default", "web")]
    assert (await post(server, "/api/v1/nodes/unhold-upgrade", "")) == (
        400, "node name required in body\n")
    assert (await post(server, "/api/v1/nodes/unhold-upgrade", "edge-9"))[0] == 404
    assert (await post(server, "/api/v1/secrets/unhold-upgrade", "x"))[0] == 400
