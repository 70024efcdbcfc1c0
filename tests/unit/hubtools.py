"""Test doubles for hub tests in fake time: a recording beehive module, and a raw edge (or
cloud) end of an in-memory WebSocket that records what it receives and answers as told."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType

from pykubeedge.beehive import RestartPolicy
from pykubeedge.core import codec
from pykubeedge.core.constants import Content, Operation
from pykubeedge.core.hubproto import needs_ack
from pykubeedge.core.message import Message, new_message, response
from pykubeedge.transport.memory import MemoryWebSocket

NODE = "edge-1"


async def until(check: Callable[[], bool], what: str, rounds: int = 20_000) -> None:
    """Let the tasks run until ``check()`` holds (counted in loop turns, never seconds)."""
    for _ in range(rounds):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{what}: not reached")


class Recorder:
    """A stand-in module that records what reaches it (and optionally ACKs like MetaManager)."""

    restart_policy = RestartPolicy()

    def __init__(self, name: str, group: str | None = None, ack_to: str | None = None) -> None:
        self.name = name
        self.group = group or name
        self.ack_to = ack_to
        self.messages: list[Message] = []

    async def start(self, ctx: Any) -> None:
        while True:
            msg = await ctx.receive(self.name)
            self.messages.append(msg)
            if self.ack_to and msg.operation in (Operation.INSERT, Operation.UPDATE,
                                                 Operation.DELETE):
                await ctx.send(self.ack_to, response(msg, Content.ACK_OK))

    def of(self, operation: str) -> list[Message]:
        return [m for m in self.messages if m.operation == operation]


class RawEnd:
    """One end of a connection driven by the test: every frame it reads is decoded and kept;
    with ``auto_ack`` it ACKs what needs an ACK, as MetaManager does."""

    def __init__(self, ws: MemoryWebSocket, *, auto_ack: bool = False) -> None:
        self.ws = ws
        self.auto_ack = auto_ack
        self.received: list[Message] = []
        self.task: asyncio.Task[None] | None = None

    def start(self, tasks: asyncio.TaskGroup) -> RawEnd:
        self.task = tasks.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type != WSMsgType.TEXT:
                continue
            msg = codec.decode(frame.data)
            self.received.append(msg)
            if self.auto_ack and needs_ack(msg):
                try:
                    await self.ack(msg)
                except ConnectionError:
                    return  # closed under us: as an edge would, stop reading

    async def send(self, msg: Message) -> None:
        await self.ws.send_frame(codec.encode(msg), WSMsgType.TEXT)

    async def ack(self, msg: Message) -> None:
        await self.send(response(msg, Content.ACK_OK))

    async def keepalive(self) -> None:
        await self.send(new_message(source="websocket", group="resource", resource="node",
                                    operation=Operation.KEEPALIVE, content="ping"))

    def ids(self) -> list[str]:
        return [m.msg_id for m in self.received]

    def of(self, resource_suffix: str) -> list[Message]:
        return [m for m in self.received if m.resource.endswith(resource_suffix)]


def pod_message(name: str, rv: str, *, node: str = NODE, uid: str | None = None,
                op: str = "update") -> Message:
    """What EdgeController sends CloudHub for a pod (cloud form, needs an ACK)."""
    return new_message(source="edgecontroller", group="resource", operation=op,
                       resource=f"node/{node}/default/pod/{name}", resourceversion=rv,
                       content={"metadata": {"name": name, "namespace": "default",
                                             "uid": uid or f"uid-{name}",
                                             "resourceVersion": rv}})


def hub_headers(node: str = NODE) -> dict[str, str]:
    return {"node_id": node, "project_id": "p", "ConnectionUse": "msg"}
