"""Edged's kubelet server on the fake runtime, over real loopback HTTP: kubelet's routes and
error texts, logs with every option, upgrades relayed to the runtime's streaming URL, and
stats in metrics-server's shape."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest

from pykubeedge.edge.edged import ContainerSpec, FakeRuntime, SandboxConfig
from pykubeedge.edge.edged.server import KubeletServer
from pykubeedge.edge.edged.server.logs import format_cri_line
from pykubeedge.edge.edged.server.stats import NodeStats
from pykubeedge.edge.edged.streaming import ResourceUsage

NOW = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Node:
    server: KubeletServer
    runtime: FakeRuntime
    clock: Clock
    web: str  # container ids
    url: str


def node_stats() -> NodeStats:
    return NodeStats(ResourceUsage(NOW, 5 * 10**9, 300 << 20, 400 << 20, 200 << 20), 1 << 30,
                     None, (), NOW - 3600, 4194304, 120)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    clock = Clock()
    runtime = FakeRuntime(clock=clock)
    runtime.pod_logs_dir = tmp_path / "logs"
    sandbox = await runtime.run_pod_sandbox(SandboxConfig(uid="u1", name="demo",
                                                          namespace="default"))
    web = await runtime.start_container(sandbox.id, ContainerSpec(name="web", image="busybox"))
    pods = [{"metadata": {"name": "demo", "namespace": "default", "uid": "u1"},
             "spec": {"containers": [{"name": "web"}, {"name": "later"}]}}]
    server = KubeletServer(runtime, node_name="edge-1", port=0, pods=lambda: pods,
                           node_stats=node_stats, clock=clock, follow_poll=0.02)
    async with server:
        yield Node(server, runtime, clock, web, f"http://127.0.0.1:{server.port}")
    await runtime.close()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.text()


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


async def write_lines(node: Node, *lines: tuple[float, str, str]) -> None:
    path = Path(await node.runtime.container_log_path(node.web))
    await asyncio.to_thread(_append, path, b"".join(format_cri_line(*line) for line in lines))


async def test_healthz_pods_and_unknown_paths(node: Node) -> None:
    assert await get(node.url + "/healthz") == (200, "ok")
    status, body = await get(node.url + "/pods")
    assert status == 200 and orjson.loads(body)["items"][0]["metadata"]["name"] == "demo"
    assert await get(node.url + "/nope") == (404, "404 page not found\n")


async def test_logs_with_tail_since_timestamps_and_limit(node: Node) -> None:
    await write_lines(node, (NOW + 1, "stdout", "one"), (NOW + 2, "stderr", "two"),
                      (NOW + 3, "stdout", "three"))
    base = node.url + "/containerLogs/default/demo/web"
    status, body = await get(base)
    assert status == 200 and body.splitlines()[1:] == ["one", "two", "three"]
    assert (await get(base + "?tailLines=2"))[1] == "two\nthree\n"
    node.clock.now = NOW + 10
    assert (await get(base + "?sinceSeconds=8"))[1] == "two\nthree\n"
    assert (await get(base + "?sinceTime=2023-11-14T22:13:23Z"))[1] == "three\n"
    assert (await get(base + "?tailLines=1&timestamps=true"))[1] == \
        "2023-11-14T22:13:23.000000000Z three\n"
    assert (await get(base + "?tailLines=2&limitBytes=5"))[1] == "two\nt"


async def test_partial_lines_are_joined(node: Node) -> None:
    path = Path(await node.runtime.container_log_path(node.web))
    await asyncio.to_thread(path.write_bytes, format_cri_line(NOW, "stdout", "hel", partial=True)
                            + format_cri_line(NOW, "stdout", "lo"))
    assert (await get(node.url + "/containerLogs/default/demo/web"))[1] == "hello\n"


async def test_follow_streams_new_lines_and_ends_when_the_container_stops(node: Node) -> None:
    async with aiohttp.ClientSession() as http, http.get(
            node.url + "/containerLogs/default/demo/web?follow=true&tailLines=0") as resp:
        assert resp.status == 200
        await write_lines(node, (NOW, "stdout", "later"))
        line = await asyncio.wait_for(resp.content.readline(), 5)
        assert line == b"later\n"
        assert node.server.open_logs == 1
        node.runtime.exit_container(node.web, 0)
        rest = await asyncio.wait_for(resp.content.read(), 5)
        assert rest == b""
    await asyncio.sleep(0.05)
    assert node.server.open_logs == 0


async def test_a_client_that_goes_away_frees_the_follower(node: Node) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", node.server.port)
    writer.write(b"GET /containerLogs/default/demo/web?follow=true HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    assert b"200 OK" in await reader.readuntil(b"\r\n\r\n")
    assert node.server.open_logs == 1
    writer.close()
    await write_lines(node, (NOW, "stdout", "x"))  # the next write finds the socket closed
    for _ in range(100):
        if node.server.open_logs == 0:
            break
        await asyncio.sleep(0.02)
    assert node.server.open_logs == 0 and node.server.http.connections == 0


async def test_previous_needs_a_terminated_instance(node: Node) -> None:
    status, body = await get(node.url + "/containerLogs/default/demo/web?previous=true")
    assert (status, body) == (400, 'previous terminated container "web" in pod "demo" not '
                                   "found\n")
    node.runtime.exit_container(node.web, 1)
    [sandbox] = await node.runtime.list_pods()
    await node.runtime.start_container(sandbox.id, ContainerSpec(name="web", image="busybox",
                                                                 attempt=1))
    await write_lines(node, (NOW, "stdout", "before the restart"))
    node.server._listing = None
    status, body = await get(node.url + "/containerLogs/default/demo/web?previous=true")
    assert status == 200 and body.endswith("before the restart\n")


@pytest.mark.parametrize(("path", "status", "text"), [
    ("/containerLogs/default/nopod/web", 404, 'pod "nopod" does not exist'),
    ("/containerLogs/default/demo/nope", 404, 'container "nope" not found in pod "demo"'),
    ("/containerLogs/default/demo/later", 400,
     'container "later" in pod "demo" is waiting to start: ContainerCreating'),
    ("/containerLogs/default/demo/web?tailLines=x", 400, "Unable to decode query."),
    ("/containerLogs/default/demo/web?sinceSeconds=0", 422, "sinceSeconds must be greater"),
    ("/containerLogs/default/demo", 404, "404 page not found"),
])
async def test_log_errors_are_kubelets(node: Node, path: str, status: int, text: str) -> None:
    got_status, body = await get(node.url + path)
    assert got_status == status and text in body


async def upgrade(node: Node, target: str) -> tuple[bytes, asyncio.StreamReader,
                                                     asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", node.server.port)
    writer.write(f"POST {target} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                 "Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
                 .encode())
    await writer.drain()
    return await reader.readuntil(b"\r\n\r\n"), reader, writer


async def test_exec_is_relayed_to_the_runtimes_streaming_url(node: Node) -> None:
    head, reader, writer = await upgrade(
        node, "/exec/default/demo/web?command=echo&command=hi+there&output=1&error=1")
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols")
    assert await asyncio.wait_for(reader.read(), 5) == b"hi there\n"
    writer.close()
    assert node.server.counters["exec"] == 1


async def test_attach_and_port_forward_relay_both_ways_and_clean_up(node: Node) -> None:
    for target in ("/attach/default/demo/web?input=1&output=1&tty=1",
                   "/portForward/default/demo?port=8080"):
        head, reader, writer = await upgrade(node, target)
        assert b" 101 " in head
        writer.write(b"abc")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(3), 5) == b"abc"
        writer.close()
    for _ in range(200):
        if node.server.open_relays == 0:
            break
        await asyncio.sleep(0.02)
    assert node.server.open_relays == 0


@pytest.mark.parametrize(("target", "text"), [
    ("/exec/default/demo/web?output=1", "you must specify a command"),
    ("/exec/default/demo/web?command=ls", "you must specify at least 1 of stdin, stdout, stderr"),
    ("/exec/default/nopod/web?command=ls&output=1", 'pod "nopod" does not exist'),
    ("/portForward/default/nopod?port=80", 'pod "nopod" does not exist'),
    ("/portForward/default/demo?port=99999", "invalid port"),
])
async def test_bad_stream_requests_get_an_http_error(node: Node, target: str, text: str) -> None:
    head, reader, writer = await upgrade(node, target)
    body = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert b" 101 " not in head and text in body.decode()


async def test_resource_metrics_have_metrics_servers_series(node: Node) -> None:
    node.clock.now = NOW + 100
    status, body = await get(node.url + "/metrics/resource")
    assert status == 200
    lines = [line for line in body.splitlines() if not line.startswith("#")]
    series = {line.split("{")[0].split(" ")[0] for line in lines}
    assert {"container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
            "container_start_time_seconds", "node_cpu_usage_seconds_total",
            "node_memory_working_set_bytes", "resource_scrape_error"} <= series
    cpu = next(line for line in lines if line.startswith("container_cpu_usage_seconds_total"))
    assert cpu.startswith('container_cpu_usage_seconds_total{container="web",namespace="default",'
                          'pod="demo"} ')
    value, stamp = cpu.split(" ")[1:]
    assert float(value) > 0 and stamp == str(int((NOW + 100) * 1000))  # milliseconds
    assert "node_memory_working_set_bytes 314572800.0 " in body


async def test_summary_reports_rates_from_the_second_scrape(node: Node) -> None:
    node.clock.now = NOW + 10
    first = orjson.loads((await get(node.url + "/stats/summary"))[1])
    node.clock.now = NOW + 20
    second = orjson.loads((await get(node.url + "/stats/summary"))[1])
    container = second["pods"][0]["containers"][0]
    assert first["pods"][0]["containers"][0]["cpu"].get("usageNanoCores") is None
    assert container["name"] == "web" and container["cpu"]["usageNanoCores"] == 10_000_000
    assert second["node"]["nodeName"] == "edge-1"
    assert second["pods"][0]["podRef"] == {"name": "demo", "namespace": "default", "uid": "u1"}


async def test_debug_vars_show_tasks_fds_and_the_servers_counters(node: Node) -> None:
    doc = orjson.loads((await get(node.url + "/debug/vars"))[1])
    assert doc["tasks"] > 0 and doc["fds"] > 0
    assert doc["edged-server:edge-1"]["open_logs"] == 0
