"""Devices end to end (issue 9): real control plane, cloudcore and edgecore processes (Edged's
fake runtime: containers are irrelevant here), a real mosquitto per edge node, kubectl and the
Debian mosquitto clients, exact JSON on MQTT.

Tests run in file order and share one system (module scope): apply, report, desire, outage,
restart offline, then move the device to a second edge node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pykubeedge.cloud.cloudhub.certs import read_token
from pykubeedge.keadm.localup import LocalUp
from pykubeedge.kube.resources import DEVICESTATUSES
from tests.conftest import eventually
from tests.mosquitto import Mosquitto, Probe, mosquitto_pub

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).parents[2] / "deploy" / "samples"
DEV = "default/beta1-device"
T = f"$hw/events/device/{DEV}"


@pytest.fixture(scope="module")
async def brokers(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[list[Mosquitto]]:
    workdir = tmp_path_factory.mktemp("brokers")
    async with Mosquitto(workdir / "a") as a, Mosquitto(workdir / "b") as b:
        yield [a, b]


@pytest.fixture(scope="module")
async def up(tmp_path_factory: pytest.TempPathFactory,
             brokers: list[Mosquitto]) -> AsyncIterator[LocalUp]:
    async with LocalUp(tier="minimal", runtime="fake", demo=False, node="dev-edge-a",
                       workdir=tmp_path_factory.mktemp("devices-up"),
                       mqtt_url=brokers[0].url) as local:
        yield local


@pytest.fixture(scope="module")
async def probe(brokers: list[Mosquitto]) -> AsyncIterator[Probe]:
    async with Probe(brokers[0].port) as p:
        await p.subscribe("$hw/events/#")
        yield p


def kubectl(up: LocalUp, *args: str, stdin: str | None = None) -> str:
    out = subprocess.run(["kubectl", "--kubeconfig", str(up.cluster.kubeconfig), *args],
                         capture_output=True, text=True, input=stdin, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


async def k(up: LocalUp, *args: str, stdin: str | None = None) -> str:
    return await asyncio.to_thread(kubectl, up, *args, stdin=stdin)


def edge_rows(db: Path, query: str) -> list[tuple[Any, ...]]:
    """Rows of the edge's database, read-only (edgecore keeps writing)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def edge_devices(db: Path) -> list[tuple[Any, ...]]:
    return edge_rows(db, "SELECT id, name FROM device")


def edge_twins(db: Path) -> list[tuple[Any, ...]]:
    return edge_rows(db, "SELECT deviceid, name, expected FROM device_twin")


async def device_status(up: LocalUp) -> dict[str, Any]:
    assert up.kube is not None
    with contextlib.suppress(Exception):
        obj = await up.kube.get(DEVICESTATUSES, "beta1-device", namespace="default")
        return obj.get("status") or {}
    return {}


def pub(broker: Mosquitto, topic: str, payload: Any) -> Any:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return asyncio.to_thread(mosquitto_pub, broker.port, topic, body)


async def test_upstream_samples_reach_the_edge_tables_and_mqtt_membership(
        up: LocalUp, brokers: list[Mosquitto]) -> None:
    topic = f"$hw/events/node/{up.node}/membership/updated"
    exe = shutil.which("mosquitto_sub")
    assert exe, "mosquitto-clients is not installed"
    sub = await asyncio.create_subprocess_exec(
        exe, "-h", "127.0.0.1", "-p", str(brokers[0].port), "-C", "2", "-W", "60", "-t", topic,
        stdout=asyncio.subprocess.PIPE)
    assert sub.stdout is not None
    # A first message proves mosquitto_sub listens before anything happens.
    async with asyncio.timeout(10):
        while True:
            await pub(brokers[0], topic, {"marker": True})
            with contextlib.suppress(TimeoutError):
                line = await asyncio.wait_for(sub.stdout.readline(), 0.5)
                if line:
                    break
    for name in ("beta1-model.yaml", "beta1-device.yaml"):
        doc = yaml.safe_load((SAMPLES / name).read_text())
        if doc["kind"] == "Device":
            doc["spec"]["nodeName"] = up.node  # the only change to upstream's sample
        await k(up, "apply", "-n", "default", "-f", "-", stdin=yaml.safe_dump(doc))
    line = await asyncio.wait_for(sub.stdout.readline(), 60)
    await sub.wait()
    added = json.loads(line)
    assert isinstance(added.pop("event_id"), str) and isinstance(added.pop("timestamp"), int)
    assert added == {"added_devices": [{"id": DEV, "name": "beta1-device"}],
                     "removed_devices": None}
    assert edge_devices(up.edge_db) == [(DEV, "beta1-device")]
    out = await k(up, "get", "devices", "-n", "default")
    assert out.split("\n")[0].split() == ["NAME", "MODEL", "NODE", "AGE"]
    assert out.split("\n")[1].split()[:3] == ["beta1-device", "beta1-model", up.node]
    await eventually(lambda: k(up, "get", "devicestatus", "-n", "default"), what="DeviceStatus")
    # The twins come with the Device, after the membership: wait for them too.
    await eventually(lambda: edge_twins(up.edge_db) == [(DEV, "temp", "30")],
                     what="the sample's twin on the edge")


async def test_a_report_answers_and_reaches_devicestatus_and_desired_fires_a_delta(
        up: LocalUp, brokers: list[Mosquitto], probe: Probe) -> None:
    # The sample's desired value became the twin's expected value on the edge.
    await pub(brokers[0], f"{T}/twin/get", {"event_id": "g0", "timestamp": 0})
    got = (await probe.next(f"{T}/twin/get/result")).json()
    assert got["twin"]["temp"]["expected"]["value"] == "30"
    n = len(probe.on(f"{T}/twin/update/result"))
    t0 = time.monotonic()
    await pub(brokers[0], f"{T}/twin/update", '{"event_id":"e1","timestamp":0,"twin":{"temp":'
              '{"actual":{"value":"25"},"metadata":{"type":"int"}}}}')
    result = (await probe.next(f"{T}/twin/update/result", after=n)).json()
    ts = result["timestamp"]
    assert result == {"event_id": "e1", "timestamp": ts, "twin": {"temp": {
        "actual": {"value": "25", "metadata": {"timestamp": ts}}, "optional": True,
        "metadata": {"type": "string"}}}}
    await eventually(lambda: _reported(up, "25"), timeout=10, interval=0.01,
                     what="the report in the DeviceStatus")
    print(f"MQTT report to DeviceStatus: {time.monotonic() - t0:.3f}s")
    assert (await device_status(up))["twins"] == [{
        "propertyName": "temp",
        "reported": {"value": "25", "metadata": {"timestamp": str(ts), "type": "string"}},
        "observedDesired": {"value": ""}}]
    # kubectl patch of the desired value: a delta on MQTT.
    d = len(probe.on(f"{T}/twin/update/delta"))
    spec = yaml.safe_load((SAMPLES / "beta1-device.yaml").read_text())["spec"]
    spec["properties"][0]["desired"]["value"] = "31"
    await k(up, "patch", "device", "beta1-device", "-n", "default", "--type", "merge", "-p",
            json.dumps({"spec": {"properties": spec["properties"]}}))
    delta = (await probe.next(f"{T}/twin/update/delta", after=d)).json()
    dts = delta["twin"]["temp"]["expected"]["metadata"]["timestamp"]
    assert delta == {"event_id": delta["event_id"], "timestamp": delta["timestamp"],
                     "delta": {"temp": "31"}, "twin": {"temp": {
                         "expected": {"value": "31", "metadata": {"timestamp": dts}},
                         "actual": {"value": "25", "metadata": {"timestamp": ts}},
                         "optional": True, "metadata": {"type": "string"}}}}
    # twin/get answers the whole twin.
    g = len(probe.on(f"{T}/twin/get/result"))
    await pub(brokers[0], f"{T}/twin/get", {"event_id": "g1", "timestamp": 0})
    got = (await probe.next(f"{T}/twin/get/result", after=g)).json()
    assert got == {"event_id": "g1", "timestamp": got["timestamp"], "twin": delta["twin"]}
    # A state update sets state and lastOnlineTime.
    s = len(probe.on(f"{T}/state/update/result"))
    await pub(brokers[0], f"{T}/state/update", {"event_id": "s1", "timestamp": 0,
                                                "state": "online"})
    state = (await probe.next(f"{T}/state/update/result", after=s)).json()
    assert state["device"]["name"] == "beta1-device" and state["device"]["state"] == "online"
    await eventually(lambda: _state(up, "online"), timeout=10, what="the state in DeviceStatus")
    assert (await device_status(up))["lastOnlineTime"] == state["device"]["lastOnlineTime"]
    out = await k(up, "get", "devicestatus", "beta1-device", "-n", "default")
    assert out.split("\n")[1].split()[:3] == ["beta1-device", "online",
                                              state["device"]["lastOnlineTime"]]


async def _reported(up: LocalUp, value: str) -> bool:
    twins = (await device_status(up)).get("twins") or []
    return bool(twins) and twins[0]["reported"]["value"] == value


async def _state(up: LocalUp, value: str) -> bool:
    return (await device_status(up)).get("state") == value


BAD = [
    ("twin/update", "{not json", 400, "Unmarshal update request body failed, please check the "
                                      "request"),
    ("twin/update", '{"twin":{"temp":{"actual":{"value":25}}}}', 400,
     "Unmarshal update request body failed, please check the request"),
    ("twin/update", '{"twin":{"te mp":{"actual":{"value":"1"}}}}', 400, "The key of twin"),
    ("twin/update", '{"twin":{"temp":{"actual":{"value":"' + "9" * 513 + '"}}}}', 400,
     "The value of twin"),
    ("twin/update", '{"twin":{},"x":"' + "x" * 66_000 + '"}', 400, "the request is"),
    ("twin/get", "[", 400, "Unmarshal twin info failed"),
    ("state/update", '{"state":"melting"}', 400, "the device state 'melting' is not one of"),
]


async def test_bad_input_gets_an_error_result_and_changes_nothing(
        up: LocalUp, brokers: list[Mosquitto], probe: Probe) -> None:
    before = await device_status(up)
    for suffix, payload, code, reason in BAD:
        result_topic = f"{T}/{suffix}/result"
        n = len(probe.on(result_topic))
        await pub(brokers[0], f"{T}/{suffix}", payload)
        got = (await probe.next(result_topic, after=n)).json()
        assert (got["code"], got["reason"][:len(reason)]) == (code, reason), suffix
    unknown = "$hw/events/device/default/nope/twin/update"
    await pub(brokers[0], unknown, '{"event_id":"u","twin":{}}')
    got = (await probe.next(f"{unknown}/result")).json()
    assert got == {"event_id": "u", "timestamp": got["timestamp"], "code": 404,
                   "reason": "update rejected due to the device is not existed"}
    assert await device_status(up) == before


async def test_reports_during_a_cloud_outage_all_arrive_and_restart_offline(
        up: LocalUp, brokers: list[Mosquitto], probe: Probe) -> None:
    await up.stop_cloudcore()
    try:
        await _outage_and_restart(up, probe)
    finally:
        if up.cloudcore is None or not up.cloudcore.running:
            await up.start_cloudcore()  # the next test needs it, whatever happened here


async def _outage_and_restart(up: LocalUp, probe: Probe) -> None:
    n = len(probe.on(f"{T}/twin/update/result"))
    for i in range(1, 101):
        probe.publish(f"{T}/twin/update", {"event_id": f"o{i}", "timestamp": 0,
                                           "twin": {"temp": {"actual": {"value": str(i)}}}})
    await probe.next(f"{T}/twin/update/result", after=n + 99, timeout=30)
    results = [m.json()["event_id"] for m in probe.on(f"{T}/twin/update/result")[n:]]
    assert results == [f"o{i}" for i in range(1, 101)]  # answered locally, in order
    assert await _reported(up, "25")  # the cloud is away
    # edgecore restarted while the cloud is still away: it answers from SQLite.
    await up.stop_edgecore()
    await up.start_edgecore()
    # (asked again until answered: edgecore's MetaServer, which start_edgecore waits for,
    # may be up a few ms before its MQTT subscriptions)
    got = (await probe.ask(f"{T}/twin/get", {"event_id": "after-restart",
                                             "timestamp": 0})).json()
    assert got["twin"]["temp"]["actual"]["value"] == "100"
    assert got["twin"]["temp"]["expected"]["value"] == "31"
    seen: list[str] = []

    async def final() -> bool:
        twins = (await device_status(up)).get("twins") or [{}]
        value = twins[0].get("reported", {}).get("value")
        if value and (not seen or seen[-1] != value):
            seen.append(value)
        return value == "100"

    await up.start_cloudcore()
    await eventually(final, timeout=60, interval=0.02, what="the last report in DeviceStatus")
    # Never an older value after a newer one.
    assert seen == sorted(seen, key=int)


async def test_a_moved_device_leaves_the_first_node(up: LocalUp, brokers: list[Mosquitto],
                                                    probe: Probe,
                                                    tmp_path: Path) -> None:
    assert up.kube is not None
    other = LocalUp(tier="minimal", runtime="fake", demo=False, node="dev-edge-b",
                    workdir=tmp_path / "b", ws_port=up.ws_port, https_port=up.https_port,
                    mqtt_url=brokers[1].url)
    other.kube = up.kube
    async with Probe(brokers[1].port) as probe_b:
        await probe_b.subscribe("$hw/events/#")
        try:
            await other._join(await read_token(up.kube))
            await other.start_edgecore()
            await other.wait_node_ready()
            n = len(probe.on(f"$hw/events/node/{up.node}/membership/updated"))
            await k(up, "patch", "device", "beta1-device", "-n", "default", "--type", "merge",
                    "-p", json.dumps({"spec": {"nodeName": other.node}}))
            removed = (await probe.next(f"$hw/events/node/{up.node}/membership/updated",
                                        after=n, timeout=30)).json()
            assert (removed["added_devices"], removed["removed_devices"]) == (
                None, [{"id": DEV, "name": "beta1-device"}])
            await eventually(lambda: edge_devices(up.edge_db) == [], what="gone from node a")
            added = (await probe_b.next(f"$hw/events/node/{other.node}/membership/updated",
                                        timeout=30)).json()
            assert added["added_devices"] == [{"id": DEV, "name": "beta1-device"}]
            await eventually(lambda: edge_devices(other.edge_db) == [(DEV, "beta1-device")],
                             what="on node b")
            # Node a no longer answers for it; node b does, and its reports are taken.
            await pub(brokers[1], f"{T}/twin/update", {"event_id": "b1", "twin": {
                "temp": {"actual": {"value": "77"}}}})
            await eventually(lambda: _reported(up, "77"), timeout=30, what="b's report")
        finally:
            await other.stop_edgecore()
