"""CloudHub and its node sessions over the in-memory transport, in fake time (no sleeps):
connect and replace, the ACK window, resends then requeue with backoff, supersede by a newer
resourceVersion, a disconnect with messages in flight, keepalive expiry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from pykubeedge.beehive import Hive
from pykubeedge.beehive.clock import FakeClock
from pykubeedge.cloud.cloudhub.hub import CloudHub
from pykubeedge.core.hubproto import NodeQueue
from pykubeedge.core.message import Message
from pykubeedge.transport.memory import MemoryNetwork
from tests.unit.hubtools import NODE, RawEnd, Recorder, hub_headers, pod_message


@dataclass
class Cloud:
    clock: FakeClock
    hub: CloudHub
    hive: Hive
    network: MemoryNetwork
    controller: Recorder
    tasks: asyncio.TaskGroup
    acks: list[tuple[str, Message]]

    async def connect(self, node: str = NODE, *, auto_ack: bool = False) -> RawEnd:
        ws = await self.network.dial(f"wss://cloudhub/{node}", hub_headers(node))
        edge = RawEnd(ws, auto_ack=auto_ack).start(self.tasks)
        await self.clock.settle()
        return edge

    async def send_down(self, msg: Message) -> None:
        await self.hive.send("cloudhub", msg)
        await self.clock.settle()

    async def advance(self, seconds: float, *keepalive: RawEnd, step: float = 5.0) -> None:
        """Let fake time pass in steps; the given edges send a keepalive at each step."""
        left = seconds
        while left > 0:
            for edge in keepalive:
                if not edge.ws.closed:
                    await edge.keepalive()
            await self.clock.advance(min(step, left))
            left -= step


@asynccontextmanager
async def cloud(**hub_kw: Any) -> AsyncIterator[Cloud]:
    clock = FakeClock()
    acks: list[tuple[str, Message]] = []
    hub = CloudHub(None, listen=False, clock=clock, keepalive_interval=30,
                   ack_listener=lambda node, m: acks.append((node, m)), **hub_kw)
    controller = Recorder("edgecontroller")
    async with Hive(clock=clock.monotonic, sleep=clock.sleep) as hive:
        hive.add_module(hub)
        hive.add_module(controller)
        await hub.ready.wait()
        async with asyncio.TaskGroup() as tasks, MemoryNetwork(hub.accept) as network:
            yield Cloud(clock, hub, hive, network, controller, tasks, acks)
            for ws in network.live():
                await ws.close()


def events(c: Cloud) -> list[str]:
    return [m.operation for m in c.controller.messages if m.operation in ("connected",
                                                                          "disconnected")]


async def test_connect_then_replace_the_session_of_a_node() -> None:
    async with cloud() as c:
        first = await c.connect(auto_ack=True)
        await c.send_down(pod_message("a", "1"))
        assert [m.resource for m in first.received] == ["default/pod/a"]
        assert events(c) == ["connected"]

        second = await c.connect(auto_ack=True)
        assert first.ws.closed and first.ws.close_code == 1008  # policy: replaced
        assert c.hub.sessions[NODE].ws is not first.ws
        await c.send_down(pod_message("b", "1"))
        assert [m.resource for m in second.received] == ["default/pod/b"]
        assert [m.resource for m in first.received] == ["default/pod/a"]
        assert events(c) == ["connected", "disconnected", "connected"]
        assert [n for n, _ in c.acks] == [NODE, NODE]


async def test_the_controllers_message_is_not_rewritten_by_the_hub() -> None:
    async with cloud() as c:
        edge = await c.connect()
        msg = pod_message("a", "1")
        await c.send_down(msg)
        assert edge.received[0].resource == "default/pod/a"
        assert msg.resource == "node/edge-1/default/pod/a"  # still the sender's
        up = pod_message("a", "1")
        up.source, up.operation = "edged", "query"
        up.resource = "default/pod/a"
        await edge.send(up)
        await c.clock.settle()
        [seen] = c.controller.of("query")
        assert seen.resource == "node/edge-1/default/pod/a"


async def test_the_ack_window_bounds_what_is_in_flight() -> None:
    async with cloud(queue_factory=lambda: NodeQueue(window=3)) as c:
        edge = await c.connect()
        for i in range(5):
            await c.send_down(pod_message(f"p{i}", "1"))
        assert [m.resource for m in edge.received] == [f"default/pod/p{i}" for i in range(3)]
        await edge.ack(edge.received[1])
        await c.clock.settle()
        assert [m.resource for m in edge.received][3:] == ["default/pod/p3"]
        for m in list(edge.received):
            await edge.ack(m)
        await c.clock.settle()
        assert [m.resource for m in edge.received][4:] == ["default/pod/p4"]
        assert c.hub.queues[NODE].inflight == 1


async def test_unacked_message_is_resent_four_times_then_requeued_with_backoff() -> None:
    async with cloud() as c:
        edge = await c.connect()
        await c.send_down(pod_message("a", "1"))
        first = edge.received[0].msg_id
        await c.advance(24, edge, step=1)  # resends at 5, 10, 15 and 20 s
        assert edge.ids() == [first] * 5
        await c.advance(1, edge, step=1)  # 25 s: no ACK after 5 sends -> requeued, 1 s backoff
        assert edge.ids() == [first] * 5
        await c.advance(2, edge, step=1)  # the backoff is over: it goes again
        assert edge.ids() == [first] * 6
        await edge.ack(edge.received[-1])
        await c.advance(30, edge)
        assert edge.ids() == [first] * 6  # ACKed: never again
        assert [m.msg_id for _, m in c.acks] == [first]


async def test_a_newer_resource_version_supersedes_a_pending_one() -> None:
    async with cloud(queue_factory=lambda: NodeQueue(window=1)) as c:
        edge = await c.connect()
        await c.send_down(pod_message("a", "10"))
        for rv in ("11", "13", "12"):  # 12 arrives late: older than the pending 13
            await c.send_down(pod_message("a", rv))
        assert [m.resourceversion for m in edge.received] == ["10"]
        await edge.ack(edge.received[0])
        await c.clock.settle()
        assert [m.resourceversion for m in edge.received] == ["10", "13"]
        # A delete needs no resourceVersion and is never superseded by an update.
        await c.send_down(pod_message("a", "", op="delete"))
        await c.send_down(pod_message("a", "14"))
        await edge.ack(edge.received[1])
        await c.clock.settle()
        assert [m.operation for m in edge.received] == ["update", "update", "delete"]


async def test_messages_in_flight_at_a_disconnect_go_first_on_the_next_connection() -> None:
    async with cloud() as c:
        edge = await c.connect()
        for name in ("a", "b"):
            await c.send_down(pod_message(name, "1"))
        assert len(edge.received) == 2
        edge.ws.break_link()
        await c.clock.settle()
        assert NODE not in c.hub.sessions
        assert events(c) == ["connected", "disconnected"]
        await c.send_down(pod_message("c", "1"))  # queued while the node is away
        back = await c.connect(auto_ack=True)
        assert [m.resource for m in back.received] == ["default/pod/a", "default/pod/b",
                                                       "default/pod/c"]
        assert [m.msg_id for m in back.received[:2]] == [m.msg_id for m in edge.received]
        assert len(c.hub.queues[NODE]) == 0


async def test_a_node_without_keepalives_is_disconnected_after_the_interval() -> None:
    async with cloud() as c:
        quiet = await c.connect(NODE)
        talking = await c.connect("edge-2")
        await c.advance(29, talking)
        assert not quiet.ws.closed
        await c.advance(2, talking, step=1)
        assert quiet.ws.closed and quiet.ws.close_code == 1008
        assert not talking.ws.closed
        assert set(c.hub.sessions) == {"edge-2"}
        disconnected = c.controller.of("disconnected")
        assert [m.resource for m in disconnected] == ["node/edge-1"]
        # Stamped with the clock's wall time, just after the 30 s deadline.
        assert disconnected[0].content["timestamp"] == int(c.clock.virtual.wall_offset) + 30


async def test_node_limit_refuses_a_new_node_but_not_a_returning_one() -> None:
    async with cloud(node_limit=1) as c:
        await c.connect(NODE)
        with pytest.raises(ConnectionRefusedError, match="node limit"):
            await c.connect("edge-2")
        again = await c.connect(NODE)  # replaces its own session: allowed
        assert not again.ws.closed
        assert c.network.refused == 1


async def test_the_cluster_ca_answer_travels_in_group_resource_and_empty_messages_drop() -> None:
    # Upstream's Go edge asks in group "meta"; its edgehub drops an answer in any group but
    # resource/func/twin/user/taskmanager, so the answer is in "resource" whatever the ask.
    from pykubeedge.core.message import new_message
    async with cloud(cluster_ca=b"-----BEGIN CERTIFICATE-----\n") as c:
        edge = await c.connect()
        ask = new_message(source="edged", group="meta", operation="query",
                          resource="k8s/ca.crt")
        await edge.send(ask)
        await edge.send(Message())  # what a stopping Go edgehub writes
        await c.clock.settle()
        [answer] = [m for m in edge.received if m.parent_msg_id == ask.msg_id]
        assert (answer.group, answer.operation) == ("resource", "response")
        assert answer.content.startswith("-----BEGIN CERTIFICATE-----")
        assert len(edge.received) == 1  # nothing answered the empty message
        assert not edge.ws.closed
