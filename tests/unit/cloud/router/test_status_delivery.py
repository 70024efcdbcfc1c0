"""Rule status accounting and writing, the per-rule delivery queue, and the Router module on
an in-memory API server (the REST endpoint is a local aiohttp server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from pykubeedge.beehive import Hive
from pykubeedge.cloud.router.delivery import DeliveryError, Item, RuleQueue
from pykubeedge.cloud.router.router import Router
from pykubeedge.cloud.router.status import MAX_ERRORS, RuleStats, StatusWriter
from pykubeedge.core.errors import NotFound, ServerError
from pykubeedge.core.message import Message
from pykubeedge.devcluster.process import free_port
from pykubeedge.kube.resources import RULEENDPOINTS, RULES
from tests.unit.cloud.fakekube import FakeKube
from tests.unit.hubtools import Recorder, until


def test_stats_survive_a_restart_through_the_status() -> None:
    stats = RuleStats(clock=lambda: 0)
    stats.success("ns/r", 3)
    stats.fail("ns/r", "boom")
    stats.dropped("ns/r", "the rule's queue of 2 was full", 4)
    status = stats.get("ns/r")
    assert status is not None
    assert (status["successMessages"], status["failMessages"]) == (3, 5)
    assert status["errors"] == [
        "dropped 4 message(s): 1970-01-01T00:00:00Z the rule's queue of 2 was full",
        "1970-01-01T00:00:00Z boom"]
    again = RuleStats()
    again.load("ns/r", status)
    assert again.get("ns/r") == status
    for i in range(10):
        again.fail("ns/r", f"e{i}")
    errors = again.get("ns/r")["errors"]  # type: ignore[index]
    assert errors[0].startswith("dropped 4 ") and len(errors) == MAX_ERRORS + 1
    assert errors[-1].endswith(" e9")
    again.load("ns/x", {"successMessages": -1, "failMessages": "x", "errors": [3]})
    assert again.get("ns/x") == {"successMessages": 0, "failMessages": 0, "errors": []}


async def test_writer_writes_each_changed_rule_once_and_forgets_deleted_ones() -> None:
    stats = RuleStats()
    calls: list[tuple[str, str, dict[str, Any]]] = []
    fail_next: list[Exception] = [ServerError("busy", status=500), NotFound("gone", status=404)]

    async def patch(ns: str, name: str, status: dict[str, Any]) -> None:
        if name == "flaky" and fail_next:
            raise fail_next.pop(0)
        calls.append((ns, name, status))

    writer = StatusWriter(stats, patch)
    for _ in range(5):
        stats.success("ns/a")
    stats.success("ns/flaky")
    await writer.flush()
    assert calls == [("ns", "a", {"successMessages": 5, "failMessages": 0, "errors": []})]
    assert list(stats.dirty) == ["ns/flaky"] and stats.changed.is_set()  # retried
    await writer.flush()
    assert stats.get("ns/flaky") is None  # the Rule is gone
    await writer.flush()
    assert len(calls) == 1


async def test_queue_keeps_order_retries_and_drops_beyond_its_bound() -> None:
    stats = RuleStats()
    seen: list[bytes] = []
    gate = asyncio.Event()
    failures = {b"flaky": 2, b"bad": 99}

    async def deliver(item: Item) -> None:
        await gate.wait()
        if failures.get(item.body, 0) > 0:
            failures[item.body] -= 1
            raise DeliveryError("no", retry=item.body != b"bad")
        seen.append(item.body)

    slept: list[float] = []

    async def sleep(d: float) -> None:
        slept.append(d)

    q = RuleQueue("ns/r", deliver, stats, limit=3, sleep=sleep)
    task = asyncio.create_task(q.run())
    try:
        assert q.put(b"0", node="e") and q.put(b"flaky", node="e") and q.put(b"bad", node="e")
        assert not q.put(b"3", node="e")  # full: dropped and counted
        gate.set()
        await until(lambda: not len(q), "drained")
        assert seen == [b"0", b"flaky"]
        assert slept == [0.2, 0.4]  # flaky: two retries; bad: not retried
        status = stats.get("ns/r")
        assert status is not None
        assert (status["successMessages"], status["failMessages"]) == (2, 2)
        assert status["errors"][0].startswith("dropped 1 message(s)")
        assert status["errors"][1].endswith(" no")
    finally:
        task.cancel()


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[str, list[bytes], asyncio.Event]]:
    got: list[bytes] = []
    gate = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        await gate.wait()
        got.append(await request.read())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/in", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/in", got, gate
    finally:
        gate.set()
        await runner.cleanup()


async def test_router_eventbus_to_rest_bound_and_status(
        endpoint: tuple[str, list[bytes], asyncio.Event]) -> None:
    url, got, gate = endpoint
    kube = FakeKube()
    for name, kind in (("bus", "eventbus"), ("rest", "rest")):
        await kube.create(RULEENDPOINTS, {"metadata": {"name": name, "namespace": "ns"},
                                          "spec": {"ruleEndpointType": kind}})
    await kube.create(RULES, {"metadata": {"name": "r", "namespace": "ns"}, "spec": {
        "source": "bus", "sourceResource": {"topic": "up", "node_name": "e1"},
        "target": "rest", "targetResource": {"resource": url}}})
    router = Router(kube, address="127.0.0.1", port=free_port(),  # type: ignore[arg-type]
                    queue_limit=3, status_interval=0.0)
    hub = Recorder("cloudhub")
    async with Hive() as hive:
        hive.add_module(hub)
        hive.add_module(router)
        await until(lambda: router.ready.is_set(), "router ready")
        sub = hub.of("subscribe")
        assert [(m.source, m.group, m.resource) for m in sub] == [
            ("router_eventbus", "user", "node/e1/ns/up")]
        for i in range(8):
            await hive.send("router", Message(source="bus", group="user", operation="upload",
                                              resource="node/e1/ns/up", content=f"m{i}"))
        await hive.send("router", Message(source="bus", group="user", operation="upload",
                                          resource="node/e1/ns/other", content="nobody"))
        live = router.live["ns/r"]
        assert live.queue is not None
        q = live.queue
        await until(lambda: q.busy and len(q) == 3, "filled")  # the bound counts the one in flight
        await asyncio.sleep(0.05)
        gate.set()
        for _ in range(200):
            status = (await kube.get(RULES, "r", namespace="ns")).get("status") or {}
            if status.get("successMessages") == 3:
                break
            await asyncio.sleep(0.02)
        assert got == [b"m0", b"m1", b"m2"]
        assert status["failMessages"] == 5
        assert status["errors"][0].startswith("dropped 5 message(s):")
        await kube.delete(RULES, "r", namespace="ns")
        await until(lambda: bool(hub.of("unsubscribe")), "unsubscribed")
        assert "ns/r" not in router.live


async def test_router_counts_what_the_edge_dropped() -> None:
    kube = FakeKube()
    for name, kind in (("bus", "eventbus"), ("rest", "rest")):
        await kube.create(RULEENDPOINTS, {"metadata": {"name": name, "namespace": "ns"},
                                          "spec": {"ruleEndpointType": kind}})
    await kube.create(RULES, {"metadata": {"name": "r", "namespace": "ns"}, "spec": {
        "source": "bus", "sourceResource": {"topic": "up", "node_name": "e1"},
        "target": "rest", "targetResource": {"resource": "http://127.0.0.1:1/"}}})
    router = Router(kube, address="127.0.0.1", port=free_port(),  # type: ignore[arg-type]
                    status_interval=0.0)
    async with Hive() as hive:
        hive.add_module(Recorder("cloudhub"))
        hive.add_module(router)
        await until(lambda: router.ready.is_set(), "router ready")
        for content in ("junk", {"dropped": 7, "limit": 25}):
            await hive.send("router", Message(source="bus", group="user", operation="upload",
                                              resource="node/e1/ns/up/#dropped",
                                              content=content))
        for _ in range(200):
            status = (await kube.get(RULES, "r", namespace="ns")).get("status") or {}
            if status.get("failMessages"):
                break
            await asyncio.sleep(0.02)
        assert status["failMessages"] == 7 and status["successMessages"] == 0
        assert status["errors"][0].startswith("dropped 7 message(s): ")
        assert "the edge kept only 25 message(s)" in status["errors"][0]
