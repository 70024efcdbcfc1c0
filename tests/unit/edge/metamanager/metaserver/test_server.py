"""MetaServer over real HTTP on loopback: discovery, get, list, selectors, Tables, watch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from pykubeedge.edge.metamanager.dao import MetaStore
from pykubeedge.edge.metamanager.metaserver import MetaServer
from tests.unit.edge.metamanager.objects import configmap, node, pod

WAIT = 5.0  # a safety net for a hung test, never reached when the code works
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


@pytest.fixture
async def server(store: MetaStore) -> AsyncIterator[MetaServer]:
    await store.upsert("default/pod/web", pod("web", labels={"app": "web", "tier": "front"}))
    await store.upsert("default/pod/db", pod("db", labels={"app": "db", "tier": "back"},
                                             node="edge-2"))
    await store.upsert("prod/pod/api", pod("api", "prod", labels={"app": "api"}))
    await store.upsert("prod/configmap/cfg", configmap("cfg", "prod", a="1"))
    await store.upsert("null/node/edge-1", node())
    async with MetaServer(store, port=0, bookmark_interval=0.05, max_watches=2) as s:
        yield s


@pytest.fixture
async def http(server: MetaServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(server.url, timeout=aiohttp.ClientTimeout(total=WAIT)) as s:
        yield s


async def get_json(http: aiohttp.ClientSession, path: str, status: int = 200,
                   **headers: str) -> Any:
    async with http.get(path, headers=headers) as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()


class Watch:
    """Reads a watch response line by line."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def next(self) -> dict[str, Any]:
        async with asyncio.timeout(WAIT):
            line = await self.resp.content.readline()
        assert line, "watch ended"
        return orjson.loads(line)

    async def events(self, n: int) -> list[tuple[str, str]]:
        out = []
        for _ in range(n):
            event = await self.next()
            out.append((event["type"], event["object"]["metadata"].get("name", "")))
        return out


async def open_watch(http: aiohttp.ClientSession, path: str) -> Watch:
    resp = await http.get(path, timeout=aiohttp.ClientTimeout(total=None, sock_read=WAIT))
    assert resp.status == 200, await resp.text()
    return Watch(resp)


async def test_discovery_and_health(http: aiohttp.ClientSession) -> None:
    version = await get_json(http, "/version")
    assert (version["major"], version["minor"]) == ("1", "32")
    assert "pykubeedge" in version["gitVersion"]
    for path in ("/healthz", "/readyz", "/livez"):
        async with http.get(path) as resp:
            assert (resp.status, await resp.text()) == (200, "ok")
    assert (await get_json(http, "/api"))["versions"] == ["v1"]
    assert (await get_json(http, "/apis"))["kind"] == "APIGroupList"
    resources = {r["name"]: r for r in (await get_json(http, "/api/v1"))["resources"]}
    assert set(resources) == {"pods", "configmaps", "secrets", "services", "endpoints", "nodes"}
    assert resources["configmaps"]["shortNames"] == ["cm"]
    assert resources["nodes"]["namespaced"] is False
    assert resources["pods"]["verbs"] == ["get", "list", "watch"]


async def test_get(http: aiohttp.ClientSession, store: MetaStore) -> None:
    web = await get_json(http, "/api/v1/namespaces/default/pods/web")
    assert (web["kind"], web["metadata"]["uid"]) == ("Pod", "uid-web")
    assert web["metadata"]["resourceVersion"] == "1"
    assert (await get_json(http, "/api/v1/nodes/edge-1"))["kind"] == "Node"
    missing = await get_json(http, "/api/v1/namespaces/default/pods/nope", 404)
    assert (missing["kind"], missing["reason"], missing["code"]) == ("Status", "NotFound", 404)
    assert missing["message"] == 'pods "nope" not found'


async def test_list_all_namespaces_one_namespace_and_revision(
        http: aiohttp.ClientSession, store: MetaStore) -> None:
    everything = await get_json(http, "/api/v1/pods")
    assert everything["kind"] == "PodList"
    assert [p["metadata"]["name"] for p in everything["items"]] == ["db", "web", "api"]
    assert everything["metadata"]["resourceVersion"] == str(store.revision)
    prod = await get_json(http, "/api/v1/namespaces/prod/pods")
    assert [p["metadata"]["name"] for p in prod["items"]] == ["api"]
    assert (await get_json(http, "/api/v1/namespaces/other/secrets"))["items"] == []


@pytest.mark.parametrize(("query", "names"), [
    ("labelSelector=app%3Dweb", ["web"]),
    ("labelSelector=tier", ["db", "web"]),
    ("labelSelector=tier%20notin%20(back)", ["web", "api"]),
    ("labelSelector=app%20in%20(db,api)", ["db", "api"]),
    ("labelSelector=!tier", ["api"]),
    ("fieldSelector=spec.nodeName%3Dedge-2", ["db"]),
    ("fieldSelector=metadata.namespace!%3Ddefault", ["api"]),
    ("fieldSelector=metadata.name%3Dweb&labelSelector=tier%3Dfront", ["web"]),
])
async def test_selectors(http: aiohttp.ClientSession, query: str, names: list[str]) -> None:
    listed = await get_json(http, f"/api/v1/pods?{query}")
    assert [p["metadata"]["name"] for p in listed["items"]] == names


async def test_bad_requests(http: aiohttp.ClientSession) -> None:
    bad = await get_json(http, "/api/v1/pods?labelSelector=app%20in%20(x", 400)
    assert bad["reason"] == "BadRequest"
    await get_json(http, "/api/v1/namespaces/default/widgets", 404)
    await get_json(http, "/api/v1/namespaces/default/nodes", 404)
    await get_json(http, "/api/v1/pods/web", 404)
    await get_json(http, "/api/v1/namespaces/default/pods/web/log", 404)
    await get_json(http, "/apis/apps/v1", 404)
    async with http.delete("/api/v1/namespaces/default/pods/web") as resp:
        assert resp.status == 405


async def test_tables_for_kubectl(http: aiohttp.ClientSession) -> None:
    table = await get_json(http, "/api/v1/namespaces/prod/configmaps", Accept=TABLE)
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert table["rows"][0]["cells"][:2] == ["cfg", 1]
    assert table["rows"][0]["object"]["metadata"]["namespace"] == "prod"
    full = await get_json(http, "/api/v1/namespaces/default/pods/web?includeObject=Object",
                          Accept=TABLE)
    assert full["rows"][0]["object"]["kind"] == "Pod"
    plain = await get_json(http, "/api/v1/pods", Accept="application/json")
    assert plain["kind"] == "PodList"


async def test_watch_sends_current_state_then_changes(
        http: aiohttp.ClientSession, store: MetaStore) -> None:
    watch = await open_watch(http, "/api/v1/namespaces/default/pods?watch=true")
    assert sorted(await watch.events(2)) == [("ADDED", "db"), ("ADDED", "web")]
    await store.upsert("default/pod/web", pod("web", phase="Running"))
    await store.upsert("prod/pod/other-namespace", pod("other-namespace", "prod"))
    await store.delete("default/pod/db")
    event = await watch.next()
    assert (event["type"], event["object"]["status"]["phase"]) == ("MODIFIED", "Running")
    assert event["object"]["metadata"]["resourceVersion"] == str(store.revision - 2)
    assert await watch.events(1) == [("DELETED", "db")]
    watch.resp.close()


async def test_watch_from_a_revision_replays_what_came_after(
        http: aiohttp.ClientSession, store: MetaStore) -> None:
    listed = await get_json(http, "/api/v1/pods")
    rv = listed["metadata"]["resourceVersion"]
    await store.upsert("prod/pod/new", pod("new", "prod"))
    watch = await open_watch(http, f"/api/v1/pods?watch=1&resourceVersion={rv}")
    assert await watch.events(1) == [("ADDED", "new")]
    watch.resp.close()


async def test_watch_follows_objects_in_and_out_of_the_selector(
        http: aiohttp.ClientSession, store: MetaStore) -> None:
    watch = await open_watch(
        http, f"/api/v1/watch/pods?labelSelector=tier%3Dfront&resourceVersion={store.revision}")
    await store.upsert("default/pod/web", pod("web", labels={"tier": "back"}))
    await store.upsert("default/pod/db", pod("db", labels={"tier": "front"}))
    await store.upsert("default/pod/db", pod("db", labels={"tier": "front", "x": "y"}))
    assert await watch.events(3) == [("DELETED", "web"), ("ADDED", "db"), ("MODIFIED", "db")]
    watch.resp.close()


async def test_watch_of_one_object_and_table_events(http: aiohttp.ClientSession,
                                                    store: MetaStore) -> None:
    resp = await http.get("/api/v1/namespaces/default/pods/web?watch=true",
                          headers={"Accept": TABLE})
    watch = Watch(resp)
    first = await watch.next()
    assert first["object"]["kind"] == "Table"
    assert first["object"]["rows"][0]["cells"][0] == "web"
    await store.upsert("default/pod/db", pod("db", phase="Running"))
    await store.upsert("default/pod/web", pod("web", phase="Running"))
    second = await watch.next()
    assert second["type"] == "MODIFIED"
    assert second["object"]["rows"][0]["cells"][:3] == ["web", "0/1", "Running"]
    resp.close()


async def test_watch_from_a_forgotten_revision_gets_410(tmp_path: Any) -> None:
    async with await MetaStore.open(tmp_path / "db", feed_size=2) as store:
        for i in range(5):
            await store.upsert(f"default/configmap/c{i}", configmap(f"c{i}"))
        async with (MetaServer(store, port=0) as server,
                    aiohttp.ClientSession(server.url) as http):
            watch = await open_watch(http, "/api/v1/configmaps?watch=1&resourceVersion=1")
            event = await watch.next()
            assert event["type"] == "ERROR"
            assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
            watch.resp.close()


async def test_watch_timeout_bookmarks_and_limit(http: aiohttp.ClientSession,
                                                 store: MetaStore) -> None:
    rv = store.revision
    async with asyncio.timeout(WAIT):
        async with http.get(f"/api/v1/pods?watch=1&resourceVersion={rv}&timeoutSeconds=0.2"
                            "&allowWatchBookmarks=true") as resp:
            lines = [orjson.loads(line) async for line in resp.content if line.strip()]
    assert lines and {e["type"] for e in lines} == {"BOOKMARK"}
    assert lines[0]["object"]["metadata"]["resourceVersion"] == str(rv)

    first = await open_watch(http, f"/api/v1/pods?watch=1&resourceVersion={rv}")
    second = await open_watch(http, f"/api/v1/pods?watch=1&resourceVersion={rv}")
    busy = await get_json(http, f"/api/v1/pods?watch=1&resourceVersion={rv}", 429)
    assert busy["reason"] == "TooManyRequests"
    first.resp.close()
    second.resp.close()


async def test_close_ends_open_watches(store: MetaStore) -> None:
    server = MetaServer(store, port=0)
    await server.start()
    async with aiohttp.ClientSession(server.url) as http:
        watch = await open_watch(http, f"/api/v1/pods?watch=1&resourceVersion={store.revision}")
        async with asyncio.timeout(WAIT):
            await server.close()
            assert await watch.resp.content.read() == b""
