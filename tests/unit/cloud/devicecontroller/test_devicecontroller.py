"""DeviceController with SyncController, EdgeController and CloudHub over the in-memory
transport and an in-memory API server, in fake time: devices reach their node through the
ObjectSync records (their own kinds, which EdgeController leaves alone), and reports become
DeviceStatus patches at the per-device rate, each answered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from pykubeedge.beehive import Hive
from pykubeedge.beehive.clock import FakeClock
from pykubeedge.cloud.cloudhub.hub import CloudHub
from pykubeedge.cloud.common.objectsync import DEVICECONTROLLER_KINDS, EDGECONTROLLER_KINDS
from pykubeedge.cloud.devicecontroller.controller import DeviceController
from pykubeedge.cloud.edgecontroller.controller import EdgeController
from pykubeedge.cloud.synccontroller.controller import SyncController
from pykubeedge.core.device import membership_detail_request
from pykubeedge.core.message import Message
from pykubeedge.core.topics import cloud_twin_resource
from pykubeedge.kube.resources import DEVICEMODELS, DEVICES, DEVICESTATUSES, NODES, OBJECTSYNCS
from pykubeedge.transport.memory import MemoryNetwork
from tests.unit.cloud.fakekube import FakeKube
from tests.unit.hubtools import NODE, RawEnd, hub_headers, until

NS = "default"
DEVICE = "thermo"


async def seed(kube: FakeKube) -> None:
    await kube.create(NODES, {"metadata": {"name": NODE, "labels": {
        "node-role.kubernetes.io/edge": ""}}})
    await kube.create(DEVICEMODELS, {"metadata": {"name": "thermo-model", "namespace": NS},
                                     "spec": {"properties": [{"name": "temp", "type": "INT"}]}})
    await kube.create(DEVICES, {"metadata": {"name": DEVICE, "namespace": NS}, "spec": {
        "deviceModelRef": {"name": "thermo-model"}, "nodeName": NODE,
        "properties": [{"name": "temp"}]}})


@dataclass
class Cloudcore:
    clock: FakeClock
    kube: FakeKube
    sync: SyncController
    edges: EdgeController
    devices: DeviceController
    network: MemoryNetwork
    tasks: asyncio.TaskGroup

    async def connect(self) -> RawEnd:
        ws = await self.network.dial("wss://cloudhub", hub_headers(NODE))
        return RawEnd(ws, auto_ack=True).start(self.tasks)


@asynccontextmanager
async def cloudcore(kube: FakeKube) -> AsyncIterator[Cloudcore]:
    clock = FakeClock()
    sync = SyncController(kube, clock=clock)  # type: ignore[arg-type]
    edges = EdgeController(kube, sync, clock=clock)  # type: ignore[arg-type]
    devices = DeviceController(kube, sync, clock=clock)  # type: ignore[arg-type]
    hub = CloudHub(None, listen=False, clock=clock, ack_listener=sync.on_ack)
    async with Hive(clock=clock.monotonic, sleep=clock.sleep) as hive:
        for module in (sync, edges, devices, hub):
            hive.add_module(module)
        await until(lambda: edges.synced.is_set() and devices.synced.is_set(), "synced")
        async with asyncio.TaskGroup() as tasks, MemoryNetwork(hub.accept) as network:
            yield Cloudcore(clock, kube, sync, edges, devices, network, tasks)
            for ws in network.live():
                await ws.close()


def report(value: str, version: int) -> Message:
    """A twin report as DeviceTwin sends it (edge form; CloudHub adds the node)."""
    return Message(source="twin", group="resource", operation="update",
                   resource=cloud_twin_resource(f"{NS}/{DEVICE}"),
                   content={"event_id": f"e{version}", "timestamp": 0, "twin": {"temp": {
                       "actual": {"value": value, "metadata": {"timestamp": 1}},
                       "metadata": {"type": "int"},
                       "actual_version": {"cloud": 0, "edge": version}}}})


async def test_devices_go_to_their_node_through_their_own_sync_records() -> None:
    kube = FakeKube()
    await seed(kube)
    async with cloudcore(kube) as cc:
        edge = await cc.connect()
        await until(lambda: len(edge.of(f"/device/{DEVICE}")) == 1
                    and len(edge.of("/devicemodel/thermo-model")) == 1, "model and device sent")
        # Membership has no ACK: an edge asks for it after every connect.
        await edge.send(Message(source="twin", group="resource", operation="get",
                                resource="membership/detail",
                                content=membership_detail_request("d1", 0, NODE)))
        await until(lambda: edge.of("membership"), "membership sent")
        assert edge.of("membership")[0].content["added_devices"] == [
            {"id": f"{NS}/{DEVICE}", "name": DEVICE}]
        await until(lambda: len(cc.sync.records_of(NODE, DEVICECONTROLLER_KINDS)) == 2
                    and all(r.rv != "0" for r in cc.sync.records_of(NODE)), "ACKs recorded")
        assert {r.kind for r in cc.sync.records_of(NODE, EDGECONTROLLER_KINDS)} == {"Node"}
        assert cc.sync.nodes(DEVICECONTROLLER_KINDS) == {NODE}
        await until(lambda: len(kube.objects.get(OBJECTSYNCS.plural, {})) == 2,
                    "ObjectSyncs written")
        assert sorted((o["spec"]["objectKind"], o["spec"]["objectAPIVersion"])
                      for o in kube.objects[OBJECTSYNCS.plural].values()) == [
            ("Device", "devices.kubeedge.io/v1beta1"),
            ("DeviceModel", "devices.kubeedge.io/v1beta1")]
        # A reconnect: EdgeController reconciles its kinds and must not delete the devices.
        edge.ws.break_link()
        await cc.clock.settle()
        back = await cc.connect()
        await cc.edges.reconcile(NODE)
        await cc.clock.advance(60)
        assert not [m for m in back.received if m.operation == "delete"]
        assert len(cc.sync.records_of(NODE, DEVICECONTROLLER_KINDS)) == 2


async def test_reports_are_written_at_the_device_rate_in_fake_time_and_all_answered() -> None:
    kube = FakeKube()
    await seed(kube)
    async with cloudcore(kube) as cc:
        edge = await cc.connect()
        await until(lambda: kube.objects.get(DEVICESTATUSES.plural), "DeviceStatus created")
        for version in range(1, 21):
            await edge.send(report(str(version), version))
        await until(lambda: cc.devices.writer.patches >= 1, "the first report written")
        patches_at_once = cc.devices.writer.patches
        await cc.clock.advance(5)
        answers = [m for m in edge.received if m.resource == "twin" and m.content == "OK"]
        assert len(answers) == 20
        # The first goes at once; the rest coalesce under 10 writes/s (burst 5).
        assert patches_at_once == 1
        assert cc.devices.writer.patches <= 6
        status = kube.objects[DEVICESTATUSES.plural][f"{NS}/{DEVICE}"]["status"]
        assert status["twins"][0]["reported"]["value"] == "20"
