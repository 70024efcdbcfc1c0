"""DeviceTwin in a real Hive with recording stand-ins for EventBus and EdgeHub, a real SQLite
file (edge/dbm), and fake time and ids (so payloads can be compared exactly)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

from pykubeedge.beehive import Hive, RestartPolicy
from pykubeedge.beehive.clock import FakeClock
from pykubeedge.core.message import Message
from pykubeedge.core.topics import encode_resource
from pykubeedge.edge.devicetwin.dao import DeviceDAO
from pykubeedge.edge.devicetwin.devicetwin import DeviceTwin

NODE = "edge-1"
NOW_MS = 1_714_550_000_123  # the fake clock's wall time, which moves only when a test says
LAST_ONLINE = "2024-05-01T07:53:20Z"


class Recorder:
    restart_policy = RestartPolicy()

    def __init__(self, name: str, group: str) -> None:
        self.name, self.group = name, group
        self.messages: list[Message] = []
        self.changed = asyncio.Event()

    async def start(self, ctx: Any) -> None:
        while True:
            msg = await ctx.receive(self.name)
            self.messages.append(msg)
            self.changed.set()

    async def wait_for(self, n: int, timeout: float = 5.0) -> list[Message]:
        async with asyncio.timeout(timeout):
            while len(self.messages) < n:
                self.changed.clear()
                await self.changed.wait()
        return self.messages

    def take(self) -> list[Message]:
        out, self.messages = self.messages, []
        return out


class Harness:
    def __init__(self, hive: Hive, twin: DeviceTwin, bus: Recorder, hub: Recorder,
                 clock: FakeClock) -> None:
        self.hive, self.twin, self.bus, self.hub, self.clock = hive, twin, bus, hub, clock
        self.sent = 0

    async def mqtt(self, topic: str, payload: Any) -> None:
        body = payload if isinstance(payload, str | bytes) else orjson.dumps(payload).decode()
        await self.send(Message(source="bus", group="user", operation="response",
                                resource=encode_resource(topic), content=body))

    async def send(self, msg: Message) -> None:
        await self.hive.send("twin", msg)
        self.sent += 1

    async def settle(self) -> None:
        """Until the twin has handled everything sent and published its results."""
        async with asyncio.timeout(5):
            while self.twin.handled < self.sent:  # noqa: ASYNC110 (bounded by the timeout)
                await asyncio.sleep(0.001)
            await self.twin.ctx.committer.idle()
            for _ in range(10):  # the recorders' receive loops
                await asyncio.sleep(0)

    async def published(self) -> list[tuple[str, Any]]:
        await self.settle()
        return [(m.resource, orjson.loads(m.content)) for m in self.bus.take()]


def membership(added: list[str] = (), removed: list[str] = ()) -> Message:  # type: ignore[assignment]
    def dev(i: str) -> dict[str, str]:
        return {"id": i, "name": i.split("/")[1]}
    return Message(source="devicecontroller", group="twin", operation="update",
                   resource="membership",
                   content={"event_id": "m", "timestamp": 1,
                            "added_devices": [dev(i) for i in added] or None,
                            "removed_devices": [dev(i) for i in removed] or None})


@contextlib.asynccontextmanager
async def running(db_path: Path, **context: Any) -> AsyncIterator[Harness]:
    counter = itertools.count(1)
    dao = await DeviceDAO.open(db_path)
    clock = FakeClock(wall_start=NOW_MS / 1000)
    twin = DeviceTwin(NODE, dao, clock=clock, new_id=lambda: f"id-{next(counter)}", **context)
    bus, hub = Recorder("eventbus", "bus"), Recorder("websocket", "hub")
    try:
        async with Hive() as hive:
            for module in (twin, bus, hub):
                hive.add_module(module)
            await asyncio.wait_for(twin.loaded.wait(), 5)
            yield Harness(hive, twin, bus, hub, clock)
    finally:
        await dao.close()
