"""DeviceController and SyncController against the real API server, with a recording stand-in
for CloudHub: upstream's sample Device and DeviceModel reach their node (membership, model,
device), ACKs become ObjectSyncs, a moved device leaves its old node, edge reports become
DeviceStatus patches (coalesced, answered "OK", refused for another node's device)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from pykubeedge.beehive import Hive
from pykubeedge.cloud.devicecontroller.controller import DeviceController
from pykubeedge.cloud.synccontroller.controller import SyncController
from pykubeedge.core.errors import Invalid
from pykubeedge.core.message import Message, new_message
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.resources import DEVICEMODELS, DEVICES, DEVICESTATUSES, OBJECTSYNCS
from tests.conftest import eventually
from tests.integration.test_edgecontroller import FakeHub

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).parents[2] / "deploy" / "samples"


def sample(name: str, ns: str, node: str | None = None) -> dict[str, Any]:
    doc = yaml.safe_load((SAMPLES / name).read_text())
    doc["metadata"]["namespace"] = ns
    if node is not None:
        doc["spec"]["nodeName"] = node
    return doc


@contextlib.asynccontextmanager
async def cloud(kube: KubeClient, **kw: Any) -> AsyncIterator[tuple[DeviceController, FakeHub]]:
    sync = SyncController(kube)
    dc = DeviceController(kube, sync, **kw)
    hub = FakeHub(sync)
    async with Hive() as hive:
        for m in (sync, dc, hub):
            hive.add_module(m)
        await asyncio.wait_for(dc.synced.wait(), 60)
        dc.hive = hive  # type: ignore[attr-defined]
        yield dc, hub


def to(hub: FakeHub, node: str, what: str) -> list[Message]:
    return [m for m in hub.messages if m.resource.startswith(f"node/{node}/")
            and (m.resource.endswith("/membership") if what == "membership"
                 else f"/{what}/" in m.resource)]


def report(node: str, device: str, kind: str, content: Any) -> Message:
    suffix = "twin/edge_updated" if kind == "twin" else "state/update"
    return new_message(source="twin", group="resource", operation="update",
                       resource=f"node/{node}/device/{device}/{suffix}", content=content)


def edge_twin(value: str, edge: int, ts: int = 1714550000123) -> dict[str, Any]:
    return {"event_id": f"e{edge}", "timestamp": ts, "twin": {"temp": {
        "actual": {"value": value, "metadata": {"timestamp": ts}}, "optional": True,
        "metadata": {"type": "int"}, "actual_version": {"cloud": 0, "edge": edge}}}}


async def status_of(kube: KubeClient, ns: str, name: str = "beta1-device") -> dict[str, Any]:
    try:
        return (await kube.get(DEVICESTATUSES, name, namespace=ns)).get("status") or {}
    except Exception:
        return {}


async def test_sample_device_reaches_its_node_and_reports_reach_devicestatus(
        kube: KubeClient, ns: str) -> None:
    node = f"{ns}-n"
    async with cloud(kube) as (dc, hub):
        await kube.create(DEVICEMODELS, sample("beta1-model.yaml", ns))
        await kube.create(DEVICES, sample("beta1-device.yaml", ns, node))
        await eventually(lambda: to(hub, node, "device"), what="the device sent")
        membership = to(hub, node, "membership")[0]
        model, device = to(hub, node, "devicemodel")[0], to(hub, node, "device")[0]
        assert hub.messages.index(membership) < hub.messages.index(model) < \
            hub.messages.index(device)
        assert (membership.source, membership.group, membership.operation) == (
            "devicecontroller", "twin", "update")
        content = dict(membership.content)
        assert isinstance(content.pop("event_id"), str) and isinstance(content.pop("timestamp"),
                                                                        int)
        assert content == {"added_devices": [{"id": f"{ns}/beta1-device",
                                              "name": "beta1-device"}],
                           "removed_devices": None}
        assert (model.operation, model.group, model.resource) == (
            "insert", "resource", f"node/{node}/{ns}/devicemodel/beta1-model")
        assert (device.operation, device.resource) == (
            "insert", f"node/{node}/{ns}/device/beta1-device")
        assert device.content["kind"] == "Device" and device.resourceversion
        # The DeviceStatus exists, owned by the Device.
        obj = await kube.get(DEVICES, "beta1-device", namespace=ns)
        async def created() -> bool:
            with contextlib.suppress(Exception):
                return bool(await kube.get(DEVICESTATUSES, "beta1-device", namespace=ns))
            return False

        await eventually(created, what="DeviceStatus", timeout=10)
        status = await kube.get(DEVICESTATUSES, "beta1-device", namespace=ns)
        assert (status["spec"], status.get("status")) == ({}, {})
        assert status["metadata"]["ownerReferences"] == [{
            "apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device",
            "name": "beta1-device", "uid": obj["metadata"]["uid"], "controller": True,
            "blockOwnerDeletion": True}]
        # ACKed: an ObjectSync of the right kind.
        rec = f"{node}.{obj['metadata']['uid']}"

        async def recorded() -> bool:
            with contextlib.suppress(Exception):
                o = await kube.get(OBJECTSYNCS, rec, namespace=ns)
                return bool(o["spec"] == {"objectAPIVersion": "devices.kubeedge.io/v1beta1",
                                          "objectKind": "Device",
                                          "objectName": "beta1-device"})
            return False

        await eventually(recorded, what="the Device's ObjectSync")
        # The first twin report shows with its value (upstream loses it), and is answered OK.
        msg = report(node, f"{ns}/beta1-device", "twin", edge_twin("25", 1))
        await dc.hive.send("devicecontroller", msg)  # type: ignore[attr-defined]
        await eventually(lambda: any(m.parent_msg_id == msg.msg_id for m in hub.messages),
                         what="the reply")
        (reply,) = [m for m in hub.messages if m.parent_msg_id == msg.msg_id]
        assert (reply.source, reply.group, reply.resource, reply.operation, reply.content) == (
            "devicecontroller", "twin", f"node/{node}/twin", "response", "OK")
        assert (await status_of(kube, ns))["twins"] == [{
            "propertyName": "temp",
            "reported": {"value": "25", "metadata": {"timestamp": "1714550000123",
                                                     "type": "int"}},
            "observedDesired": {"value": ""}}]
        state = report(node, f"{ns}/beta1-device", "state", orjson.dumps({
            "event_id": "s", "timestamp": 1, "device": {
                "name": "beta1-device", "state": "online",
                "lastOnlineTime": "2025-05-01T10:00:00Z"}}).decode())
        await dc.hive.send("devicecontroller", state)  # type: ignore[attr-defined]
        await eventually(lambda: any(m.parent_msg_id == state.msg_id for m in hub.messages),
                         what="the state reply")
        got = await status_of(kube, ns)
        assert (got["state"], got["lastOnlineTime"]) == ("online", "2025-05-01T10:00:00Z")
        assert got["twins"][0]["reported"]["value"] == "25"


async def test_reports_are_refused_for_devices_of_other_nodes(kube: KubeClient, ns: str) -> None:
    node = f"{ns}-n"
    async with cloud(kube) as (dc, hub):
        await kube.create(DEVICEMODELS, sample("beta1-model.yaml", ns))
        await kube.create(DEVICES, sample("beta1-device.yaml", ns, node))
        await eventually(lambda: to(hub, node, "device"), what="the device sent")
        cases = [
            (report("intruder", f"{ns}/beta1-device", "twin", edge_twin("99", 1)),
             f"node intruder may not report for device {ns}/beta1-device, which is bound to "
             f"{node}"),
            (report(node, f"{ns}/nope", "twin", edge_twin("99", 1)),
             f"device {ns}/nope does not exist"),
            (report(node, f"{ns}/beta1-device", "twin", "{not json"),
             "content is not JSON: unexpected character: line 1 column 2 (char 1)"),
            (report(node, f"{ns}/beta1-device", "twin", {"twin": {"temp": {"actual": 5}}}),
             "edge_updated content has a field of the wrong JSON type"),
            (report(node, f"{ns}/beta1-device", "state", '{"device": "x"}'),
             "state/update content must hold a device object with string state and "
             "lastOnlineTime"),
        ]
        for msg, reason in cases:
            await dc.hive.send("devicecontroller", msg)  # type: ignore[attr-defined]
            await eventually(lambda m=msg: any(r.parent_msg_id == m.msg_id
                                               for r in hub.messages), what="a refusal")
            (reply,) = [r for r in hub.messages if r.parent_msg_id == msg.msg_id]
            assert (reply.operation, reply.group, reply.content) == ("error", "twin", reason)
        assert "twins" not in await status_of(kube, ns)


async def test_a_chatty_device_is_coalesced_and_every_report_answered(
        kube: KubeClient, ns: str) -> None:
    node = f"{ns}-n"
    async with cloud(kube, rate=5.0, burst=1) as (dc, hub):
        await kube.create(DEVICEMODELS, sample("beta1-model.yaml", ns))
        await kube.create(DEVICES, sample("beta1-device.yaml", ns, node))
        await eventually(lambda: to(hub, node, "device"), what="the device sent")
        msgs = [report(node, f"{ns}/beta1-device", "twin", edge_twin(str(i), i))
                for i in range(1, 201)]
        before = dc.writer.patches
        for m in msgs:
            await dc.hive.send("devicecontroller", m)  # type: ignore[attr-defined]
        ids = {m.msg_id for m in msgs}
        await eventually(lambda: ids <= {r.parent_msg_id for r in hub.messages}, timeout=30,
                         what="every report answered")
        assert dc.writer.patches - before < 20
        assert (await status_of(kube, ns))["twins"][0]["reported"]["value"] == "200"
        # An old report sent again never overwrites a newer value.
        old = report(node, f"{ns}/beta1-device", "twin", edge_twin("3", 3))
        await dc.hive.send("devicecontroller", old)  # type: ignore[attr-defined]
        await eventually(lambda: any(r.parent_msg_id == old.msg_id for r in hub.messages),
                         what="answered")
        assert (await status_of(kube, ns))["twins"][0]["reported"]["value"] == "200"


async def test_a_moved_device_leaves_its_old_node(kube: KubeClient, ns: str) -> None:
    a, b = f"{ns}-a", f"{ns}-b"
    async with cloud(kube) as (_dc, hub):
        await kube.create(DEVICEMODELS, sample("beta1-model.yaml", ns))
        await kube.create(DEVICES, sample("beta1-device.yaml", ns, a))
        await eventually(lambda: to(hub, a, "device"), what="on node a")
        await kube.patch(DEVICES, "beta1-device", {"spec": {"nodeName": b}}, namespace=ns)
        await eventually(lambda: to(hub, b, "device"), what="on node b")
        assert [m.operation for m in to(hub, a, "device")] == ["insert", "delete"]
        assert [m.operation for m in to(hub, a, "devicemodel")] == ["insert", "delete"]
        removed = to(hub, a, "membership")[-1].content
        assert (removed["added_devices"], removed["removed_devices"]) == (
            None, [{"id": f"{ns}/beta1-device", "name": "beta1-device"}])
        assert [m.operation for m in to(hub, b, "devicemodel")] == ["insert"]
        assert to(hub, b, "membership")[0].content["added_devices"] == [
            {"id": f"{ns}/beta1-device", "name": "beta1-device"}]
        # A desired value patched: the device (and, as upstream, its model) is updated.
        patched = copy.deepcopy(sample("beta1-device.yaml", ns, b)["spec"]["properties"])
        patched[0]["desired"]["value"] = "31"
        await kube.patch(DEVICES, "beta1-device", {"spec": {"properties": patched}},
                         namespace=ns)
        await eventually(lambda: to(hub, b, "device")[-1].operation == "update",
                         what="the update")
        desired = to(hub, b, "device")[-1].content["spec"]["properties"][0]["desired"]
        assert desired == {"value": "31"}
        # Edited alone, a model reaches the nodes that use it (upstream: never).
        await kube.patch(DEVICEMODELS, "beta1-model", {"spec": {"protocol": "modbus-tcp"}},
                         namespace=ns)
        await eventually(lambda: to(hub, b, "devicemodel")[-1].content["spec"]["protocol"] ==
                         "modbus-tcp", what="the model update")


async def test_membership_detail_reconciles_the_node_fully(kube: KubeClient, ns: str) -> None:
    node = f"{ns}-n"
    async with cloud(kube) as (dc, hub):
        await kube.create(DEVICEMODELS, sample("beta1-model.yaml", ns))
        await kube.create(DEVICES, sample("beta1-device.yaml", ns, node))
        await eventually(lambda: to(hub, node, "device"), what="the device sent")
        await eventually(lambda: not dc.sync._dirty and not dc.sync._busy, what="records")
        hub.messages.clear()
        await dc.hive.send("devicecontroller", new_message(  # type: ignore[attr-defined]
            source="twin", group="resource", operation="get",
            resource=f"node/{node}/membership/detail",
            content='{"event_type":"group_membership_event","group_id":"x"}'))
        await eventually(lambda: to(hub, node, "device"), what="resent")
        kinds = [m.resource.split("/")[3] if m.resource.count("/") > 2 else "membership"
                 for m in hub.messages if m.resource.startswith(f"node/{node}/")]
        assert kinds == ["membership", "devicemodel", "device"]


async def test_upstream_samples_apply_unchanged(kube: KubeClient, ns: str) -> None:
    for name, res in (("beta1-model.yaml", DEVICEMODELS), ("beta1-device.yaml", DEVICES)):
        doc = yaml.safe_load((SAMPLES / name).read_text())
        created = await kube.create(res, {**doc, "metadata": {**doc["metadata"],
                                                              "namespace": ns}})
        assert created["spec"] == doc["spec"]  # nothing pruned


async def test_invalid_device_specs_are_rejected_by_the_schema(kube: KubeClient, ns: str) -> None:
    bad_cases = [
        {"spec": {"deviceModelRef": {"name": "m"}, "properties": [{"name": "t",
                                                                    "desired": {"value": 30}}]}},
        {"spec": {"deviceModelRef": {"name": "m"}, "properties": [{"name": "t",
                                                                    "desired": {}}]}},
        {"spec": {"deviceModelRef": {"name": "m"}, "properties": [{"name": "t",
                                                                    "reportCycle": "2s"}]}},
        {"spec": {"deviceModelRef": {"name": "m"}, "nodeName": 7}},
        {"spec": {"nodeName": "n"}},
    ]
    for i, body in enumerate(bad_cases):
        with pytest.raises(Invalid):
            await kube.create(DEVICES, {"metadata": {"name": f"bad-{i}", "namespace": ns},
                                        **body})
    with pytest.raises(Invalid):
        await kube.create(DEVICEMODELS, {"metadata": {"name": "bad", "namespace": ns},
                                         "spec": {"properties": [{"name": "t",
                                                                  "type": "int"}]}})
