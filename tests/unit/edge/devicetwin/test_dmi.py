"""DeviceTwin with DMI: Device objects from MetaManager reach a mapper (the SDK's virtual
mapper, in this process), and its reports come back as twin and state updates on the very
path MQTT ones take (answered on ``/twin/update/result``, owed to the cloud)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import grpc
import pytest

from pykubeedge.api.dmi.v1beta1 import api_pb2 as pb
from pykubeedge.api.dmi.v1beta1 import api_pb2_grpc as pb_grpc
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


async def test_the_server_keeps_its_socket_across_many_checks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # grpcio 1.85 cancels its shutdown future when a wait on it is cancelled; the server used
    # to stop after its second socket check and leave mappers nothing to connect to.
    from pykubeedge.edge.devicetwin import dmi as dmi_module
    monkeypatch.setattr(dmi_module, "SOCKET_CHECK_S", 0.05)
    async with running(tmp_path / "db", dmi_sock_path=str(tmp_path) + "/") as h:
        dmi = h.twin.dmi
        assert dmi is not None
        await asyncio.wait_for(dmi.ready.wait(), 10)
        await asyncio.sleep(0.5)  # ten checks
        assert (tmp_path / "dmi.sock").is_socket()
        async with grpc.aio.insecure_channel(f"unix://{tmp_path}/dmi.sock") as channel:
            stub = pb_grpc.DeviceManagerServiceStub(channel)  # type: ignore[no-untyped-call]
            await stub.MapperRegister(pb.MapperRegisterRequest(
                withData=False, mapper=pb.MapperInfo(name="m", protocol="virtual",
                                                     address=b"/nowhere.sock")), timeout=5)
        assert "virtual" in dmi.mappers
