"""EventBus against a real mosquitto: the bridge to DeviceTwin and to the cloud, cloud
subscribe/publish kept across restarts, reconnect after the broker comes back, the internal
broker edgecore supervises, and the one-line failures (bad URL, no binary, refused)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pykubeedge.beehive import Hive
from pykubeedge.core.message import Message
from pykubeedge.devcluster.process import free_port
from pykubeedge.edge.dbm import Database
from pykubeedge.edge.devicetwin.dao import DeviceDAO
from pykubeedge.edge.devicetwin.devicetwin import DeviceTwin
from pykubeedge.edge.eventbus.broker import InternalBroker
from pykubeedge.edge.eventbus.dao import SubTopicsDAO
from pykubeedge.edge.eventbus.eventbus import EventBus, EventBusSettings
from pykubeedge.edge.eventbus.mqtt import parse_broker_url
from tests.conftest import eventually
from tests.mosquitto import Mosquitto, Probe, mosquitto_pub
from tests.unit.edge.devicetwin.harness import Recorder

NODE = "edge-mq"


@pytest.fixture(scope="module")
async def broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mosquitto]:
    async with Mosquitto(tmp_path_factory.mktemp("mosquitto")) as b:
        yield b


@contextlib.asynccontextmanager
async def edge(db_path: Path, **settings: Any) -> AsyncIterator[tuple[EventBus, DeviceTwin,
                                                                       Recorder]]:
    db = await Database.open(db_path)
    settings.setdefault("workdir", db_path.parent)
    bus = EventBus(EventBusSettings(NODE, sub_client_id=f"sub-{free_port()}",
                                    pub_client_id=f"pub-{free_port()}", **settings),
                   await SubTopicsDAO.open(db))
    twin = DeviceTwin(NODE, await DeviceDAO.open(db))
    hub = Recorder("websocket", "hub")
    try:
        async with Hive() as hive:
            for m in (bus, twin, hub):
                hive.add_module(m)
            await asyncio.wait_for(twin.loaded.wait(), 5)
            bus.hive = hive  # type: ignore[attr-defined]
            yield bus, twin, hub
    finally:
        await db.close()


async def connected(bus: EventBus) -> None:
    await eventually(lambda: bus.brokers and all(b.sub.connected.is_set() and
                                                 b.pub.connected.is_set() for b in bus.brokers),
                     timeout=15, what="EventBus connected")
    await asyncio.sleep(0.2)  # the SUBACKs


async def test_mqtt_reaches_devicetwin_and_the_cloud_and_back(broker: Mosquitto,
                                                              tmp_path: Path) -> None:
    async with edge(tmp_path / "edge.db", external_url=broker.url) as (bus, twin, hub), \
            Probe(broker.port) as probe:
        await probe.subscribe("$hw/events/#")
        await connected(bus)
        hive = bus.hive  # type: ignore[attr-defined]
        await hive.send("twin", Message(source="devicecontroller", group="twin",
                                        operation="update", resource="membership", content={
                                            "event_id": "", "timestamp": 0, "added_devices": [
                                                {"id": "default/d1", "name": "d1"}]}))
        updated = await probe.next(f"$hw/events/node/{NODE}/membership/updated")
        assert updated.json()["added_devices"] == [{"id": "default/d1", "name": "d1"}]
        await asyncio.to_thread(mosquitto_pub, broker.port,
                                "$hw/events/device/default/d1/twin/update",
                                '{"event_id":"e1","timestamp":0,"twin":{"t":{"actual":'
                                '{"value":"7"}}}}')
        result = await probe.next("$hw/events/device/default/d1/twin/update/result")
        assert result.json()["twin"]["t"]["actual"]["value"] == "7"
        # Anything else goes up to the cloud, as an upload.
        probe.publish("$hw/events/upload/temperature", b"21.5")
        await hub.wait_for(1)
        up = hub.messages[-1]
        assert (up.operation, up.group, up.source, up.resource, up.content) == (
            "upload", "user", "bus", "$hw/events/upload/temperature", "21.5")
        # The cloud publishes and subscribes.
        await probe.subscribe("app/#")
        await hive.send("eventbus", Message(source="router_eventbus", group="user",
                                            operation="publish", resource="app/x",
                                            content='{"k":1}'))
        assert (await probe.next("app/x")).payload == b'{"k":1}'
        await hive.send("eventbus", Message(source="router_eventbus", group="user",
                                            operation="subscribe", resource="ns/events"))
        await eventually(lambda: "ns/events" in bus.subscribed, what="subscribed")
        await asyncio.sleep(0.2)
        probe.publish("ns/events", b"hello")
        await hub.wait_for(2)
        assert hub.messages[-1].resource == "ns/events"
    # Kept across a restart of EventBus.
    async with edge(tmp_path / "edge.db", external_url=broker.url) as (bus, twin, hub), \
            Probe(broker.port) as probe:
        await connected(bus)
        probe.publish("ns/events", b"again")
        await hub.wait_for(1)
        assert hub.messages[-1].content == "again"
        assert "default/d1" in twin.devices


async def test_bad_input_from_the_cloud_is_logged_and_harmless(broker: Mosquitto, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture
                                                               ) -> None:
    async with edge(tmp_path / "edge.db", external_url=broker.url) as (bus, _twin, _hub):
        await connected(bus)
        hive = bus.hive  # type: ignore[attr-defined]
        for op, res, content in (("publish", "a/#", "x"), ("publish", "a/b", {"no": "bytes"}),
                                 ("subscribe", "a/#/b", None), ("message", "", {"x": 1}),
                                 ("frobnicate", "a", None)):
            await hive.send("eventbus", Message(source="router_eventbus", group="user",
                                                operation=op, resource=res, content=content))
        await eventually(lambda: caplog.text.count("EventBus") >= 5, what="five refusals")
        assert bus.ready.is_set() and "a/#/b" not in bus.subscribed


async def test_refused_then_the_broker_comes(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()
    async with edge(tmp_path / "edge.db", external_url=f"tcp://127.0.0.1:{port}") as (
            bus, _twin, _hub):
        await eventually(lambda: "cannot connect" in caplog.text, what="the refusal logged")
        await asyncio.sleep(1.5)  # retries with backoff, logged once
        assert caplog.text.count("cannot connect") == 2  # once for each of the two clients
        bus.publish("a/b", b"dropped")  # while disconnected: dropped, as upstream
        async with Mosquitto(tmp_path / "late", port=port) as late, Probe(late.port):
            await connected(bus)


async def test_bad_url_is_one_line_and_the_module_keeps_serving(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with edge(tmp_path / "edge.db", external_url="mqtt:/no-host") as (bus, twin, _hub):
        await eventually(lambda: "external broker disabled" in caplog.text, what="logged")
        assert bus.brokers == [] and bus.ready.is_set()
        bus.publish("a/b", b"x")
        assert twin.loaded.is_set()


async def test_internal_broker_is_started_and_supervised(tmp_path: Path) -> None:
    port = free_port()
    async with edge(tmp_path / "edge.db", mode=0, internal_url=f"tcp://127.0.0.1:{port}"
                    ) as (bus, _twin, _hub):
        assert bus.internal_broker is not None
        await connected(bus)
        conf = (tmp_path / "mosquitto-internal.conf").read_text()
        assert f"listener {port} 127.0.0.1" in conf
        async with Probe(port) as probe:
            await probe.subscribe("$hw/events/#")
            probe.publish("$hw/events/device/default/x/twin/get", b"{}")
            answer = await probe.next("$hw/events/device/default/x/twin/get/result")
            assert answer.json()["code"] == 404
        first = bus.internal_broker.process
        assert first is not None
        first.kill()  # supervised: started again, and the clients reconnect
        await eventually(lambda: bus.internal_broker.starts == 2, timeout=15,  # type: ignore
                         what="the broker restarted")
        await connected(bus)


async def test_internal_broker_without_binary_is_one_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broker = InternalBroker(parse_broker_url("tcp://127.0.0.1:1"), tmp_path,
                            binary="/nonexistent/mosquitto")
    await asyncio.wait_for(broker.run(), 5)
    assert not broker.available
    assert [r.message for r in caplog.records if r.levelno >= logging.ERROR] == [
        "internal MQTT broker: no mosquitto binary found (tried /nonexistent/mosquitto); "
        "install the Debian package mosquitto; EventBus goes on without it"]


async def test_both_modes_at_once(broker: Mosquitto, tmp_path: Path) -> None:
    port = free_port()
    async with edge(tmp_path / "edge.db", mode=1, external_url=broker.url,
                    internal_url=f"tcp://127.0.0.1:{port}") as (bus, _twin, _hub):
        await connected(bus)
        assert sorted(b.kind for b in bus.brokers) == ["external", "internal"]
        async with Probe(broker.port) as outside, Probe(port) as inside:
            for p in (outside, inside):
                await p.subscribe("$hw/events/device/#")
            inside.publish("$hw/events/device/default/x/twin/get", b'{"event_id":"both"}')
            for p in (outside, inside):  # answered on every broker, as upstream
                got = await p.next("$hw/events/device/default/x/twin/get/result")
                assert got.json()["event_id"] == "both"
