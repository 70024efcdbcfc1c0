"""DeviceTwin as a module: membership, twin update/get, state, the cloud sync and every bad
input of issue 9, with exact payloads (fake time and ids, a real SQLite file)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from pykubeedge.core.message import Message
from pykubeedge.core.twin import REASON_KEY, REASON_NO_DEVICE, REASON_UNMARSHAL, REASON_VALUE
from tests.unit.edge.devicetwin.harness import (
    LAST_ONLINE,
    NODE,
    NOW_MS,
    Harness,
    membership,
    running,
)

DEV = "default/thermo"
T = f"$hw/events/device/{DEV}"


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def connected(yes: bool = True) -> Message:
    return Message(source="edgehub", group="twin", operation="connect",
                   resource="node/connection",
                   content="cloud_connected" if yes else "cloud_disconnected")


async def member(h: Harness) -> None:
    await h.send(membership([DEV]))
    await h.settle()
    h.bus.take()


async def test_membership_added_is_stored_and_announced(tmp_path: Path) -> None:
    async with running(tmp_path / "db") as h:
        await h.send(membership([DEV]))
        assert await h.published() == [(f"$hw/events/node/{NODE}/membership/updated", {
            "event_id": "id-1", "timestamp": NOW_MS,
            "added_devices": [{"id": DEV, "name": "thermo"}], "removed_devices": None})]
        await h.send(membership([DEV]))  # again (a cloudcore restart): nothing happens
        assert await h.published() == []
        await h.mqtt("$hw/events/node/any/membership/get", {"event_id": "g"})
        assert await h.published() == [(f"$hw/events/node/{NODE}/membership/get/result", {
            "event_id": "g", "timestamp": NOW_MS, "devices": [{"id": DEV, "name": "thermo"}]})]
    assert rows(tmp_path / "db", "SELECT id, name, description, state, last_online FROM device"
                ) == [(DEV, "thermo", "", "", "")]


async def test_membership_removed(tmp_path: Path) -> None:
    async with running(tmp_path / "db") as h:
        await member(h)
        await h.mqtt(f"{T}/twin/update", {"twin": {"t": {"actual": {"value": "1"}}}})
        await h.settle()
        h.bus.take()
        await h.send(membership(removed=[DEV]))
        assert await h.published() == [(f"$hw/events/node/{NODE}/membership/updated", {
            "event_id": "id-3", "timestamp": NOW_MS, "added_devices": None,
            "removed_devices": [{"id": DEV, "name": "thermo"}]})]
    assert rows(tmp_path / "db", "SELECT COUNT(*) FROM device_twin") == [(0,)]
    assert rows(tmp_path / "db", "SELECT COUNT(*) FROM device") == [(0,)]


async def test_twin_update_result_document_and_get(tmp_path: Path) -> None:
    async with running(tmp_path / "db") as h:
        await member(h)
        await h.mqtt(f"{T}/twin/update", {"event_id": "e1", "timestamp": 0, "twin": {
            "temp": {"actual": {"value": "25"}, "metadata": {"type": "int"}}}})
        current = {"actual": {"value": "25", "metadata": {"timestamp": NOW_MS}},
                   "optional": True, "metadata": {"type": "int"}}
        assert await h.published() == [
            (f"{T}/twin/update/result", {"event_id": "e1", "timestamp": NOW_MS,
                                         "twin": {"temp": current}}),
            (f"{T}/twin/update/document", {"event_id": "e1", "timestamp": NOW_MS,
                                           "twin": {"temp": {"last": None,
                                                             "current": current}}}),
        ]
        await h.mqtt(f"{T}/twin/get", {"event_id": "g1", "timestamp": 0})
        assert await h.published() == [(f"{T}/twin/get/result", {
            "event_id": "g1", "timestamp": NOW_MS, "twin": {"temp": current}})]
    assert rows(tmp_path / "db", "SELECT deviceid, name, expected, actual, actual_meta, "
                "actual_version, optional, attr_type, metadata FROM device_twin") == [
        (DEV, "temp", "", "25", f'{{"timestamp":{NOW_MS}}}', '{"cloud":0,"edge":1}', 1, "int",
         "{}")]


async def test_state_update(tmp_path: Path) -> None:
    async with running(tmp_path / "db") as h:
        await member(h)
        await h.send(connected())
        await h.settle()
        h.bus.take(), h.hub.take()
        await h.mqtt(f"{T}/state/update", {"event_id": "s1", "timestamp": 0, "State": "online"})
        result = {"event_id": "id-3", "timestamp": NOW_MS,
                  "device": {"name": "thermo", "state": "online", "lastOnlineTime": LAST_ONLINE}}
        assert await h.published() == [(f"{T}/state/update/result", result)]
        (sent,) = await h.hub.wait_for(1)
        assert (sent.resource, sent.operation, sent.group, sent.source) == (
            f"device/{DEV}/state/update", "update", "resource", "twin")
        assert orjson.loads(sent.content) == result
        await h.mqtt(f"{T}/state/update", {"state": "offline"})
        assert (await h.published())[0][1]["device"] == {"name": "thermo", "state": "offline"}
    assert rows(tmp_path / "db", "SELECT state, last_online FROM device") == [("offline", "")]


BAD_TWIN_UPDATES = [
    ("malformed JSON", "{nope", 400, REASON_UNMARSHAL),
    ("wrong type", '{"twin": {"temp": {"actual": {"value": 25}}}}', 400, REASON_UNMARSHAL),
    ("twin missing", '{"event_id": "b"}', 400, "Update twin error, key:twin does not exist"),
    ("key outside the limits", '{"twin": {"te mp": {"actual": {"value": "1"}}}}', 400,
     REASON_KEY),
    ("value outside the limits", '{"twin": {"temp": {"actual": {"value": "1 2"}}}}', 400,
     REASON_VALUE),
    ("oversized", '{"twin": {}, "pad": "' + "x" * 70_000 + '"}', 400,
     "the request is 70023 bytes; at most 65536 are accepted"),
]


@pytest.mark.parametrize(("case", "payload", "code", "reason"), BAD_TWIN_UPDATES,
                         ids=[c[0] for c in BAD_TWIN_UPDATES])
async def test_bad_twin_updates_answer_an_error_and_change_nothing(
        tmp_path: Path, case: str, payload: str, code: int, reason: str) -> None:
    async with running(tmp_path / "db") as h:
        await member(h)
        await h.send(connected())
        await h.settle()
        h.bus.take(), h.hub.take()
        await h.mqtt(f"{T}/twin/update", payload)
        assert await h.published() == [(f"{T}/twin/update/result", {
            "event_id": "b" if case == "twin missing" else "", "timestamp": NOW_MS,
            "code": code, "reason": reason})]
        assert h.twin.devices[DEV].twins == {} and h.hub.take() == []
    assert rows(tmp_path / "db", "SELECT COUNT(*) FROM device_twin") == [(0,)]


async def test_bad_input_on_every_other_topic(tmp_path: Path) -> None:
    async with running(tmp_path / "db") as h:
        await member(h)
        await h.mqtt(f"{T}/twin/update", {"twin": {"t": {"actual": {"value": "1"},
                                                         "metadata": {"type": "int"}}}})
        await h.settle()
        h.bus.take()
        other = "$hw/events/device/default/nope"
        cases = [
            (f"{other}/twin/update", {"event_id": "u", "twin": {}}, f"{other}/twin/update/result",
             {"event_id": "u", "code": 404, "reason": REASON_NO_DEVICE}),
            (f"{T}/twin/update", {"event_id": "w", "twin": {"t": {"actual": {"value": "x"}}}},
             f"{T}/twin/update/result",
             {"event_id": "w", "code": 400, "reason": "the value is not int or integer"}),
            (f"{other}/twin/get", {"event_id": "g"}, f"{other}/twin/get/result",
             {"event_id": "g", "code": 404,
              "reason": "Device default/nope not found while getting twin"}),
            (f"{T}/twin/get", "[1", f"{T}/twin/get/result", {"event_id": "", "code": 400,
             "reason": f"Unmarshal twin info failed, err: {REASON_UNMARSHAL}"}),
            (f"{T}/twin/get", "x" * 70_000, f"{T}/twin/get/result", {"event_id": "", "code": 400,
             "reason": "Unmarshal twin info failed, err: the request is 70000 bytes; at most "
                       "65536 are accepted"}),
            (f"{T}/state/update", "{", f"{T}/state/update/result",
             {"event_id": "", "code": 400, "reason": REASON_UNMARSHAL}),
            (f"{T}/state/update", {"event_id": "s", "state": 1}, f"{T}/state/update/result",
             {"event_id": "s", "code": 400,
              "reason": "Unmarshal device state failed, please check the request"}),
            (f"{T}/state/update", {"state": "broken"}, f"{T}/state/update/result",
             {"event_id": "", "code": 400, "reason": "the device state 'broken' is not one of "
              "offline, ok, online, unhealthy, unknown"}),
            (f"{other}/state/update", {"state": "ok"}, f"{other}/state/update/result",
             {"event_id": "", "code": 404,
              "reason": "Device default/nope not found while updating its state"}),
            (f"$hw/events/node/{NODE}/membership/get", "{",
             f"$hw/events/node/{NODE}/membership/get/result",
             {"event_id": "", "code": 400,
              "reason": f"Unmarshal get membership info failed, err: {REASON_UNMARSHAL}"}),
        ]
        for topic, payload, answer_topic, answer in cases:
            await h.mqtt(topic, payload)
            assert await h.published() == [(answer_topic, {"timestamp": NOW_MS, **answer})], topic
        assert h.twin.devices[DEV].twins["t"].actual.value == "1"  # type: ignore[union-attr]
        assert h.twin.devices[DEV].state == ""
    assert rows(tmp_path / "db", "SELECT actual FROM device_twin") == [("1",)]


async def test_reports_while_offline_are_kept_coalesced_and_sent_on_reconnect(
        tmp_path: Path) -> None:
    async with running(tmp_path / "db") as h:
        await member(h)
        for i in range(100):
            await h.mqtt(f"{T}/twin/update", {"twin": {"a": {"actual": {"value": str(i)}},
                                                       f"k{i % 3}": {"actual": {"value": "v"}}}})
        await h.settle()
        assert h.hub.take() == []  # never connected
        assert rows(tmp_path / "db", "SELECT COUNT(*) FROM device_cloud_pending") == [(4,)]
    # A restart while still offline keeps what is owed, and the twins.
    async with running(tmp_path / "db") as h:
        await h.mqtt(f"{T}/twin/get", {"event_id": "g"})
        ((_, got),) = await h.published()
        assert got["twin"]["a"]["actual"]["value"] == "99"
        await h.send(connected())
        detail, sync = await h.hub.wait_for(2)
        assert (detail.resource, detail.operation) == ("membership/detail", "get")
        assert orjson.loads(detail.content)["group_id"] == NODE
        assert sync.resource == f"device/{DEV}/twin/edge_updated"
        twins = sync.content["twin"]
        assert sorted(twins) == ["a", "k0", "k1", "k2"]
        assert twins["a"]["actual"]["value"] == "99"
        assert twins["a"]["actual_version"] == {"cloud": 0, "edge": 100}
        # A newer report while the message is unconfirmed goes after the confirmation.
        await h.mqtt(f"{T}/twin/update", {"twin": {"a": {"actual": {"value": "100"}}}})
        await h.settle()
        assert len(h.hub.messages) == 2
        await h.send(Message(parent_msg_id=sync.msg_id, source="devicecontroller",
                             group="twin", operation="response", resource="twin",
                             content="OK"))
        (*_, again) = await h.hub.wait_for(3)
        assert again.content["twin"] == {"a": {
            "actual": {"value": "100", "metadata": {"timestamp": NOW_MS}}, "optional": True,
            "metadata": {"type": "string"}, "actual_version": {"cloud": 0, "edge": 101}}}
        await h.send(Message(parent_msg_id=again.msg_id, source="devicecontroller",
                             group="twin", operation="response", resource="twin", content="OK"))
        await h.settle()
    assert rows(tmp_path / "db", "SELECT COUNT(*) FROM device_cloud_pending") == [(0,)]


async def test_lifecycle_topics_on_connect_and_disconnect(tmp_path: Path) -> None:
    async with running(tmp_path / "db") as h:
        await h.send(connected())
        await h.send(connected(False))
        assert await h.published() == [
            (f"$hw/events/connected/{NODE}", {"event_type": "connected", "timestamp": NOW_MS}),
            (f"$hw/events/disconnected/{NODE}", {"event_type": "disconnected",
                                                 "timestamp": NOW_MS})]


def device_object(node: str = NODE, desired: str = "30") -> dict[str, Any]:
    return {"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device",
            "metadata": {"name": "thermo", "namespace": "default", "uid": "u1"},
            "spec": {"nodeName": node, "deviceModelRef": {"name": "m"},
                     "properties": [{"name": "temp", "desired": {"value": desired}}]}}


def meta(op: str, obj: dict[str, Any]) -> Message:
    return Message(source="devicecontroller", group="resource", operation=op,
                   resource="default/device/thermo", content=obj)


async def test_the_device_object_makes_a_member_and_its_desired_value_a_delta(
        tmp_path: Path) -> None:
    async with running(tmp_path / "db") as h:
        await h.send(meta("insert", device_object()))
        expected = {"expected": {"value": "30", "metadata": {"timestamp": NOW_MS}},
                    "optional": True, "metadata": {"type": "string"}}
        published = await h.published()
        assert [t for t, _ in published] == [
            f"$hw/events/node/{NODE}/membership/updated", f"{T}/twin/update/document",
            f"{T}/twin/update/delta"]
        delta = published[2][1]
        assert delta.pop("event_id").startswith("id-")  # a new event, as upstream
        assert delta == {"timestamp": NOW_MS, "twin": {"temp": expected}, "delta": {"temp": "30"}}
        await h.send(meta("update", device_object(desired="30")))
        assert await h.published() == []  # the same desired value: nothing to say
        await h.mqtt(f"{T}/twin/update", {"event_id": "r", "twin": {
            "temp": {"actual": {"value": "30"}}}})
        assert [t for t, _ in await h.published()] == [f"{T}/twin/update/result",
                                                        f"{T}/twin/update/document"]
        await h.send(meta("update", device_object(node="elsewhere")))
        await h.send(meta("delete", device_object()))
        assert [t for t, _ in await h.published()] == [
            f"$hw/events/node/{NODE}/membership/updated"]
        assert DEV not in h.twin.devices


async def test_a_failed_write_answers_500_and_changes_nothing(tmp_path: Path) -> None:
    async with running(tmp_path / "db") as h:
        await member(h)
        dao = h.twin.ctx.dao
        real = dao.run
        calls = 0

        async def broken(ops: Any) -> None:
            nonlocal calls
            calls += 1
            raise sqlite3.OperationalError("disk I/O error")

        h.twin.ctx.committer._run_ops = broken
        await h.mqtt(f"{T}/twin/update", {"event_id": "f", "twin": {"t": {"actual": {
            "value": "1"}}}})
        await h.clock.advance(5)  # 5 tries, 1 s apart: answered 4 s after the request
        assert await h.published() == [(f"{T}/twin/update/result", {
            "event_id": "f", "timestamp": NOW_MS + 4_000, "code": 500,
            "reason": "writing the database failed: disk I/O error"})]
        assert calls == 5
        h.twin.ctx.committer._run_ops = real
        await h.mqtt(f"{T}/twin/get", {"event_id": "g"})  # reloaded from SQLite first
        assert (await h.published())[0][1]["twin"] == {}


async def test_cloud_updated_sync_conflict_answers_409(tmp_path: Path) -> None:
    async with running(tmp_path / "db") as h:
        await member(h)
        await h.mqtt(f"{T}/twin/update", {"twin": {"t": {"actual": {"value": "1"}}}})
        await h.mqtt(f"{T}/twin/update", {"twin": {"t": {"actual": {"value": "2"}}}})
        await h.settle()
        h.bus.take()
        await h.mqtt(f"{T}/twin/cloud_updated", {"event_id": "c", "twin": {"t": {
            "actual": {"value": "0"}, "actual_version": {"cloud": 0, "edge": 1}}}})
        assert await h.published() == [(f"{T}/twin/update/result", {
            "event_id": "c", "timestamp": NOW_MS, "code": 409,
            "reason": "twin t: not allowed to sync due to version conflict"})]
        await h.mqtt(f"{T}/twin/cloud_updated", {"event_id": "c2", "twin": {"t": {
            "actual": {"value": "9"}, "actual_version": {"cloud": 1, "edge": 2}}}})
        assert [t for t, _ in await h.published()] == [f"{T}/twin/update/document"]
        assert h.twin.devices[DEV].twins["t"].actual.value == "9"  # type: ignore[union-attr]


async def test_an_unconfirmed_report_is_sent_again_after_30_s_of_fake_time(
        tmp_path: Path) -> None:
    async with running(tmp_path / "db") as h:
        await member(h)
        await h.send(connected())
        await h.hub.wait_for(1)  # membership/detail
        await h.mqtt(f"{T}/twin/update", {"twin": {"t": {"actual": {"value": "1"}}}})
        _, sync = await h.hub.wait_for(2)
        await h.clock.advance(29)
        await h.settle()
        assert len(h.hub.messages) == 2
        await h.clock.advance(1)
        _, _, again = await h.hub.wait_for(3)
        assert (again.resource, again.content["twin"]) == (sync.resource, sync.content["twin"])
        assert again.msg_id != sync.msg_id
