"""DeviceTwin with DMI: Device objects from MetaManager reach a mapper (the SDK's virtual
mapper, in this process), and its reports come back as twin and state updates on the very
path MQTT ones take (answered on ``/twin/update/result``, owed to the cloud)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from pykubeedge.core.message import Message
from pykubeedge.mapper.app import Mapper
from pykubeedge.mapper.config import parse_config
from pykubeedge.mapper.virtual import VirtualDriver
from tests.conftest import eventually
from tests.unit.edge.devicetwin.harness import NODE, running

T = "$hw/events/device/default/vdev"


def device(node: str = NODE, desired: str = "3") -> dict[str, Any]:
    return {"metadata": {"name": "vdev", "namespace": "default", "uid": "u1"},
            "spec": {"nodeName": node, "deviceModelRef": {"name": "vm"},
                     "protocol": {"protocolName": "virtual"},
                     "properties": [{"name": "level", "collectCycle": 50, "reportCycle": 50,
                                     "reportToCloud": True, "desired": {"value": desired},
                                     "visitors": {"protocolName": "virtual",
                                                  "configData": {"kind": "actuator"}}}]}}


def meta(op: str, obj: dict[str, Any], kind: str = "device", name: str = "vdev") -> Message:
    return Message(source="meta", group="twin", operation=op,
                   resource=f"default/{kind}/{name}", content=obj)


async def test_devices_reach_the_mapper_and_its_reports_the_twin(tmp_path: Path) -> None:
    async with running(tmp_path / "db", dmi_sock_path=str(tmp_path) + "/") as h:
        dmi = h.twin.dmi
        assert dmi is not None
        await asyncio.wait_for(dmi.ready.wait(), 10)
        await h.send(meta("insert", {"metadata": {"name": "vm", "namespace": "default"},
                                     "spec": {"protocol": "virtual", "properties": [
                                         {"name": "level", "type": "INT",
                                          "accessMode": "ReadWrite"}]}},
                          kind="devicemodel", name="vm"))
        await h.send(meta("insert", device()))
        await h.settle()
        assert set(dmi.devices) == {"default/vdev"} and set(dmi.models) == {"default/vm"}
        cfg = parse_config({"grpc_server": {"socket_path": str(tmp_path / "v.sock")},
                            "common": {"name": "v", "protocol": "virtual", "http_port": "0",
                                       "edgecore_sock": str(tmp_path / "dmi.sock")}})
        mapper = Mapper(cfg, VirtualDriver)
        task = asyncio.create_task(mapper.run())
        try:
            seen: list[tuple[str, Any]] = []

            async def reported(value: str) -> bool:
                seen.extend(await h.published())
                return any(t == f"{T}/twin/update/result" and
                           p["twin"]["level"]["actual"]["value"] == value for t, p in seen)

            await eventually(lambda: reported("3"), timeout=20, what="the mapper's report")
            assert h.twin.devices["default/vdev"].state == "online"
            # A changed desired value: UpdateDevice, written, reported back.
            await h.send(meta("update", device(desired="8")))
            await eventually(lambda: reported("8"), timeout=20, what="the new value")
            # Bound elsewhere: removed from the mapper.
            await h.send(meta("update", device(node="elsewhere")))
            await eventually(lambda: "default/vdev" not in mapper.runners, timeout=10,
                             what="the device gone from the mapper")
            assert dmi.devices == {}
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
