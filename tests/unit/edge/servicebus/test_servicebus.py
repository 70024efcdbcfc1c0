"""ServiceBus with a stand-in EdgeHub: the cloud's start/stop and requests to a local service
(a local aiohttp server), and the local server's refusals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pykubeedge.beehive import Hive, RestartPolicy
from pykubeedge.core.errors import DecodeError
from pykubeedge.core.httpmsg import HTTPRequest, HTTPResponse
from pykubeedge.core.message import Message, response
from pykubeedge.devcluster.process import free_port
from pykubeedge.edge.servicebus.dao import TargetURLsDAO
from pykubeedge.edge.servicebus.servicebus import (
    MAX_BODY,
    ServiceBus,
    ServiceBusSettings,
    split_target,
)
from tests.unit.hubtools import until


class FakeHub:
    """Module ``websocket`` (group ``hub``): records, and answers local calls to ``/ok``."""

    name, group = "websocket", "hub"
    restart_policy = RestartPolicy()

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def start(self, ctx: Any) -> None:
        while True:
            msg = await ctx.receive(self.name)
            self.messages.append(msg)
            if msg.sync and msg.resource == "/ok":
                ctx.respond(response(msg, f"pong to {msg.content}"))


def test_split_target() -> None:
    assert split_target("80:x") == (80, "/x")
    for bad in ("80", "x:/a", "0:/a", "70000:/a", ":/a"):
        with pytest.raises(DecodeError):
            split_target(bad)


@pytest.fixture
async def service() -> AsyncIterator[int]:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"{request.method} {request.path_qs} "
                                 f"{(await request.read()).decode()}",
                            headers={"X-App": "yes"})

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    async def huge(_: web.Request) -> web.Response:
        return web.Response(body=b"x" * (MAX_BODY + 10))

    app = web.Application()
    app.router.add_route("*", "/hello", hello)
    app.router.add_get("/slow", slow)
    app.router.add_get("/huge", huge)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def test_cloud_requests_and_local_calls(tmp_path: Path, service: int) -> None:
    urls = await TargetURLsDAO.open(tmp_path / "edge.db")
    port = free_port()
    bus = ServiceBus(ServiceBusSettings("127.0.0.1", port, timeout=0.5), urls)
    hub = FakeHub()
    async with Hive() as hive:
        hive.add_module(hub)
        hive.add_module(bus)
        await until(lambda: bus.ready.is_set(), "ready")

        async def cloud(resource: str, content: Any, op: str = "GET") -> HTTPResponse:
            msg = Message(source="router_servicebus", group="user", operation=op,
                          resource=resource, content=content)
            before = len(hub.messages)
            await hive.send("servicebus", msg)
            await until(lambda: len(hub.messages) > before, "answer", rounds=2_000_000)
            answer = hub.messages[-1]
            assert (answer.parent_msg_id, answer.operation, answer.group) == (
                msg.msg_id, "upload", "user")
            return HTTPResponse.from_content(answer.content)

        got = await cloud(f"{service}:/hello?x=1", HTTPRequest("POST", {}, b"hi").to_content(),
                          "POST")
        assert (got.status_code, got.body, got.header["X-App"]) == (200, b"POST /hello?x=1 hi",
                                                                   ["yes"])
        assert not got.from_edge
        for resource, content, code in [
            ("nope", {"method": "GET"}, 400),
            (f"{service}:/hello", "not json", 400),
            (f"{free_port()}:/", {"method": "GET"}, 502),
            (f"{service}:/slow", {"method": "GET"}, 504),
            (f"{service}:/huge", {"method": "GET"}, 502),
        ]:
            got = await cloud(resource, content)
            assert (got.status_code, got.from_edge) == (code, True), (resource, got)

        # the local server: refusals, then an allowed URL once the cloud starts it
        async with aiohttp.ClientSession() as http:
            async def local(body: bytes) -> tuple[int, dict[str, Any]]:
                async with http.post(f"http://127.0.0.1:{port}/", data=body) as resp:
                    answer = await resp.json()
                    assert resp.status == answer["code"]
                    return resp.status, answer

            req = b'{"method": "POST", "targetURL": "/ok", "payload": "ping"}'
            assert (await local(req))[0] == 403
            await hive.send("servicebus", Message(source="router_servicebus", group="user",
                                                  operation="start", resource="/ok"))
            await until(lambda: urls.allowed("/ok"), "allowed")
            code, answer = await local(req)
            assert (code, answer["body"]) == (200, f"pong to {req.decode()}")
            assert (await local(b"{oops"))[0] == 400
            assert (await local(b"[1]"))[0] == 400
            assert (await local(b'{"method": "", "targetURL": "/ok"}'))[0] == 400
            assert (await local(b"x" * (MAX_BODY + 1)))[0] == 413
            await hive.send("servicebus", Message(source="router_servicebus", group="user",
                                                  operation="start", resource="/slow"))
            await until(lambda: urls.allowed("/slow"), "allowed")
            code, answer = await local(b'{"method": "GET", "targetURL": "/slow"}')
            assert code == 504  # the cloud never answered
            await hive.send("servicebus", Message(source="router_servicebus", group="user",
                                                  operation="stop", resource="/ok"))
            await until(lambda: not urls.allowed("/ok"), "refused again")
            assert (await local(req))[0] == 403
        await hive.send("servicebus", Message(source="someone", group="user",
                                              operation="start", resource="/x"))
    await urls.close()
    again = await TargetURLsDAO.open(tmp_path / "edge.db")
    assert again.all() == ["/slow"]  # kept across restarts
    await again.close()


async def test_a_taken_port_leaves_cloud_requests_served(tmp_path: Path, service: int) -> None:
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    urls = await TargetURLsDAO.open(tmp_path / "edge.db")
    bus = ServiceBus(ServiceBusSettings("127.0.0.1", port, timeout=2), urls)
    hub = FakeHub()
    try:
        async with Hive() as hive:
            hive.add_module(hub)
            hive.add_module(bus)
            await until(lambda: bus.ready.is_set(), "ready")
            msg = Message(source="router_servicebus", group="user", operation="GET",
                          resource=f"{service}:/hello", content={"method": "GET"})
            await hive.send("servicebus", msg)
            await until(lambda: bool(hub.messages), "answer", rounds=2_000_000)
            assert HTTPResponse.from_content(hub.messages[0].content).status_code == 200
    finally:
        blocker.close()
        await urls.close()
