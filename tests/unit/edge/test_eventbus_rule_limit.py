"""EventBus's per-rule-topic bound while the cloud is unreachable, and its drop report."""

from __future__ import annotations

from pathlib import Path

from pykubeedge.beehive import Hive
from pykubeedge.core.constants import Content
from pykubeedge.core.message import Message
from pykubeedge.core.ruletraffic import DROPPED_SUFFIX, parse_drop_report
from pykubeedge.edge.eventbus.dao import SubTopicsDAO
from pykubeedge.edge.eventbus.eventbus import EventBus, EventBusSettings
from tests.unit.hubtools import Recorder, until


def connection(content: str) -> Message:
    return Message(source="edgehub", group="bus", operation="connect",
                   resource="node/connection", content=content)


async def test_bound_per_rule_topic_and_report_after_reconnect(tmp_path: Path) -> None:
    topics = await SubTopicsDAO.open(tmp_path / "edge.db")
    await topics.add("ns/rule")
    # no broker listens there: the clients retry quietly; the test feeds MQTT by hand
    bus = EventBus(EventBusSettings("n1", mode=2, external_url="tcp://127.0.0.1:1",
                                    rule_limit=3, workdir=tmp_path), topics)
    hub = Recorder("websocket", "hub")
    async with Hive() as hive:
        hive.add_module(hub)
        hive.add_module(bus)
        await until(lambda: bus.ready.is_set(), "ready")
        for i in range(5):
            bus._received("ns/rule", f"r{i}".encode())
            bus._received("other/topic", f"o{i}".encode())  # not a rule topic: no bound
        await until(lambda: len(hub.messages) == 8, "uploads")
        assert [m.content for m in hub.messages if m.resource == "ns/rule"] == [
            "r0", "r1", "r2"]
        assert bus.rule_dropped == {"ns/rule": 2}
        await hive.send("eventbus", connection(Content.CLOUD_CONNECTED))
        await until(lambda: len(hub.messages) == 9, "report")
        report = hub.messages[-1]
        assert (report.source, report.group, report.operation, report.resource) == (
            "bus", "user", "upload", "ns/rule" + DROPPED_SUFFIX)
        assert parse_drop_report(report.content) == (2, 3)
        for _ in range(5):  # connected: no bound
            bus._received("ns/rule", b"x")
        await until(lambda: len(hub.messages) == 14, "connected uploads")
        await hive.send("eventbus", connection(Content.CLOUD_DISCONNECTED))
        await until(lambda: not bus.cloud_connected, "disconnected")
        for _ in range(4):
            bus._received("ns/rule", b"y")
        await until(lambda: bus.rule_dropped == {"ns/rule": 1}, "a fresh count per outage")
    await topics.close()
