"""EdgeHub over the in-memory transport, in fake time (no sleeps): the keepalive every
heartbeat, the messageQPS/burst throttle, reconnect backoff with jitter on the clock it is
given, the outbox drained in order after a reconnect, connection events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pykubeedge.beehive import Hive
from pykubeedge.beehive.clock import FakeClock
from pykubeedge.core.message import Message, new_message
from pykubeedge.edge.edgehub import hub as hubmod
from pykubeedge.edge.edgehub.hub import EdgeHub, EdgeHubSettings
from pykubeedge.transport.memory import MemoryNetwork, MemoryWebSocket
from tests.unit.hubtools import NODE, RawEnd, Recorder, pod_message


class ListOutbox:
    """EdgeHub's outbox in a list (the SQLite one has its own tests)."""

    def __init__(self, limit: int = 100) -> None:
        self.limit = limit
        self.rows: list[tuple[int, Message, str | None]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self.rows)

    async def put(self, msg: Message, *, replace: str | None = None) -> bool:
        if replace is not None:
            self.rows = [r for r in self.rows if r[2] != replace]
        if len(self.rows) >= self.limit:
            return False
        self._seq += 1
        self.rows.append((self._seq, msg, replace))
        return True

    async def peek(self, n: int) -> list[tuple[int, Message | None]]:
        return [(seq, msg) for seq, msg, _ in self.rows[:n]]

    async def delete_through(self, seq: int) -> None:
        self.rows = [r for r in self.rows if r[0] > seq]


@dataclass
class Cloud:
    """The far end: accepts EdgeHub's connections and records them."""

    tasks: asyncio.TaskGroup
    auto_ack: bool = False
    ends: list[RawEnd] = field(default_factory=list)
    headers: list[Mapping[str, str]] = field(default_factory=list)

    async def accept(self, headers: Mapping[str, str], ws: MemoryWebSocket) -> asyncio.Future:
        self.headers.append(dict(headers))
        end = RawEnd(ws, auto_ack=self.auto_ack)
        self.ends.append(end)
        return end._read()

    @property
    def current(self) -> RawEnd:
        return self.ends[-1]

    def frames(self, operation: str | None = None) -> list[Message]:
        return [m for end in self.ends for m in end.received
                if operation is None or m.operation == operation]


@dataclass
class Edge:
    clock: FakeClock
    hub: EdgeHub
    hive: Hive
    meta: Recorder
    outbox: ListOutbox
    network: MemoryNetwork
    cloud: Cloud

    async def send_up(self, msg: Message) -> None:
        await self.hive.send("websocket", msg)
        await self.clock.settle()

    def events(self) -> list[str]:
        return [m.content for m in self.meta.of("connect")]


@asynccontextmanager
async def edge(*, qps: float = 1000, burst: int = 1000, heartbeat: float = 15,
               reachable: bool = True) -> AsyncIterator[Edge]:
    clock = FakeClock()
    settings = EdgeHubSettings(
        node_name=NODE, server="cloudhub:10000", project_id="p", heartbeat=heartbeat,
        message_qps=qps, message_burst=burst, ca_file=Path("/nonexistent"),
        cert_file=Path("/nonexistent"), key_file=Path("/nonexistent"),
        reconnect_initial=1.0, reconnect_cap=30.0)
    outbox = ListOutbox()
    async with asyncio.TaskGroup() as tasks:
        far = Cloud(tasks)
        async with MemoryNetwork(far.accept) as network:
            network.reachable = reachable
            hub = EdgeHub(settings, outbox, clock=clock, dial=network.dial)
            meta = Recorder("metamanager", "meta", ack_to="websocket")
            async with Hive(clock=clock.monotonic, sleep=clock.sleep) as hive:
                hive.add_module(hub)
                hive.add_module(meta)
                await clock.settle()
                yield Edge(clock, hub, hive, meta, outbox, network, far)
                for ws in network.live():
                    await ws.close()


def event(i: int) -> Message:
    return new_message(source="metamanager", group="resource", operation="insert",
                       resource=f"default/event/e{i}", content={"i": i})


async def test_dials_with_the_node_headers_and_keeps_alive_every_heartbeat() -> None:
    async with edge(heartbeat=15) as e:
        assert e.cloud.headers == [{"node_id": NODE, "project_id": "p",
                                    "ConnectionUse": "msg"}]
        assert e.events() == ["cloud_connected"]
        assert len(e.cloud.frames("keepalive")) == 1  # at once
        await e.clock.advance(14.9)
        assert len(e.cloud.frames("keepalive")) == 1
        await e.clock.advance(0.2)
        assert len(e.cloud.frames("keepalive")) == 2
        await e.clock.advance(45)
        pings = e.cloud.frames("keepalive")
        assert len(pings) == 5
        assert {(m.source, m.group, m.resource, m.content) for m in pings} == {
            ("websocket", "resource", "node", "ping")}


async def test_messages_to_the_cloud_are_throttled_by_qps_and_burst() -> None:
    async with edge(qps=2, burst=2) as e:
        for i in range(6):
            await e.hive.send("websocket", event(i))
        await e.clock.settle()
        assert len(e.cloud.frames("insert")) == 2  # the burst
        await e.clock.advance(0.5)
        assert len(e.cloud.frames("insert")) == 3
        await e.clock.advance(1.0)
        assert len(e.cloud.frames("insert")) == 5
        await e.clock.advance(0.5)
        assert [m.content["i"] for m in e.cloud.frames("insert")] == list(range(6))


async def test_events_wait_behind_status_when_the_throttle_is_busy() -> None:
    async with edge(qps=2, burst=1) as e:
        status = pod_message("web", "1", op="patch")
        status.resource, status.source = "default/podpatch/web", "metamanager"
        for i in range(4):
            await e.hive.send("websocket", event(i))
        await e.hive.send("websocket", status)
        await e.clock.advance(3.0)
        sent = [m.resource for m in e.cloud.frames() if m.operation != "keepalive"]
        # The patch, queued last, overtook the Events waiting for tokens; they keep their order.
        assert sent == ["default/podpatch/web", "default/event/e0", "default/event/e1",
                        "default/event/e2", "default/event/e3"]
        assert e.hub.events_dropped == 0


async def test_events_held_back_are_bounded_and_the_oldest_dropped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hubmod, "EVENTS_WAITING_MAX", 2)
    async with edge(qps=1, burst=1) as e:
        for i in range(6):
            await e.hive.send("websocket", event(i))
        await e.hive.send("websocket", pod_message("web", "1", op="patch"))
        await e.clock.advance(10.0)
        sent = [m.content["i"] for m in e.cloud.frames("insert")]
        assert e.hub.events_dropped == 4 and sent == [4, 5]


async def test_reconnects_back_off_with_jitter_on_the_given_clock() -> None:
    async with edge(reachable=False) as e:
        assert e.network.dials == 1
        await e.clock.advance(100)
        # Delays are uniform in [d/2, d], d = 1, 2, 4, ... 30: by 100 s at least 8 dials
        # (all delays at their longest), at most 11 (all at their shortest).
        assert 8 <= e.network.dials <= 11, e.network.dials
        assert e.events() == []
        e.network.reachable = True
        await e.clock.advance(30)  # the longest delay
        assert e.events() == ["cloud_connected"]
        # Connected: the backoff starts over after the next loss.
        before = e.network.dials
        e.network.break_all()
        await e.clock.advance(1.0)
        assert e.network.dials == before + 1
        assert e.events() == ["cloud_connected", "cloud_disconnected", "cloud_connected"]


async def test_what_is_sent_while_away_waits_in_the_outbox_and_goes_first() -> None:
    async with edge() as e:
        e.network.reachable = False
        e.network.break_all()
        await e.clock.settle()
        assert e.events() == ["cloud_connected", "cloud_disconnected"]
        for i in range(3):
            await e.send_up(event(i))
        status = pod_message("web", "1", op="patch")
        status.resource, status.source = "default/podpatch/web", "metamanager"
        await e.send_up(status)
        await e.send_up(status)  # the newer status replaces the kept one
        assert len(e.outbox) == 4
        e.network.reachable = True
        await e.clock.advance(1.0)
        await e.send_up(event(99))
        sent = [m for m in e.cloud.current.received if m.operation != "keepalive"]
        assert [m.resource for m in sent] == ["default/event/e0", "default/event/e1",
                                              "default/event/e2", "default/podpatch/web",
                                              "default/event/e99"]
        assert len(e.outbox) == 0


async def test_a_cloud_message_reaches_meta_and_a_reconnect_is_immediate() -> None:
    async with edge() as e:
        await e.cloud.current.send(pod_message("web", "5").clone())
        await e.clock.settle()
        [got] = e.meta.of("update")
        assert got.resource == "node/edge-1/default/pod/web"
        acks = [m for m in e.cloud.current.received if m.operation == "response"]
        assert [m.parent_msg_id for m in acks] == [got.msg_id]  # MetaManager's ACK went up
        dials = e.network.dials
        e.hub.reconnect()  # after a certificate rotation: no backoff
        await e.clock.settle()
        assert e.network.dials == dials + 1
        assert e.events()[-2:] == ["cloud_disconnected", "cloud_connected"]


async def test_a_cloud_message_nothing_here_handles_is_acked_not_left_waiting() -> None:
    # No DeviceTwin, no TaskManager in this edgecore, a group upstream does not route: each
    # is ACKed (upstream's cloudcore waits for every ACK before the node's next message).
    async with edge() as e:
        sent = [new_message(source="devicecontroller", group="twin", operation="update",
                            resource="device/d1/twin", content={}),
                new_message(source="nodeupgradejobcontroller", group="taskmanager",
                            operation="upgrade", resource="task/t1/node/edge-1", content={}),
                new_message(source="router", group="user", operation="publish",
                            resource="rule/r1", content={}),
                new_message(source="x", group="nonsense", operation="insert",
                            resource="default/pod/web", content={})]
        for msg in sent:
            await e.cloud.current.send(msg)
        await e.clock.settle()
        acks = [m for m in e.cloud.current.received if m.operation == "response"]
        assert [(m.parent_msg_id, m.content) for m in acks] == [(m.msg_id, "OK") for m in sent]
        assert e.meta.of("update") == []
