"""The mapper SDK against edgecore's own DMI code (in this process, on unix sockets) and
pymodbus's server as the device: registration, polling, reports, desired writes, offline and
back, bad config, REST, the mapper and edgecore restarting."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from pykubeedge.core.message import Message
from pykubeedge.core.topics import decode_resource
from pykubeedge.edge.devicetwin.dmi import DMI
from pykubeedge.mapper.app import Mapper
from pykubeedge.mapper.config import parse_config
from pykubeedge.mapper.modbus import ModbusDriver
from pykubeedge.mapper.virtual import VirtualDriver
from tests.conftest import eventually
from tests.modbusdev import ModbusDevice, free_port


def model(name: str, props: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"protocol": "modbus", "properties": props}}


def device(name: str, port: int, props: list[dict[str, Any]], protocol: str = "modbus"
           ) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"deviceModelRef": {"name": f"{name}-model"}, "nodeName": "n1",
                     "protocol": {"protocolName": protocol,
                                  "configData": {"ip": "127.0.0.1", "port": port,
                                                 "timeout": 300}},
                     "properties": props}}


def prop(name: str, offset: int, *, desired: str | None = None, **visitor: Any
         ) -> dict[str, Any]:
    p: dict[str, Any] = {"name": name, "collectCycle": 100, "reportCycle": 100,
                         "reportToCloud": True,
                         "visitors": {"protocolName": "modbus", "configData": {
                             "register": "HoldingRegister", "offset": offset, **visitor}}}
    if desired is not None:
        p["desired"] = {"value": desired}
    return p


class Edge:
    """What DeviceTwin would receive: the last twin value and state per device."""

    def __init__(self) -> None:
        self.twins: dict[str, dict[str, Any]] = {}
        self.states: dict[str, str] = {}
        self.count = 0

    async def deliver(self, msg: Message) -> None:
        topic = decode_resource(msg.resource)
        dev = topic.split("/")[3] + "/" + topic.split("/")[4]
        body = orjson.loads(msg.content)
        self.count += 1
        if topic.endswith("/state/update"):
            self.states[dev] = body["state"]
        else:
            self.twins.setdefault(dev, {}).update(body["twin"])

    def actual(self, dev: str, name: str) -> str | None:
        twin = self.twins.get(f"default/{dev}", {}).get(name)
        return None if twin is None else twin["actual"]["value"]

    def expected(self, dev: str, name: str) -> str | None:
        twin = self.twins.get(f"default/{dev}", {}).get(name) or {}
        return (twin.get("expected") or {}).get("value")


@pytest.fixture
async def modbus() -> AsyncIterator[ModbusDevice]:
    async with ModbusDevice() as d:
        yield d


async def start_dmi(path: Path, edge: Edge) -> tuple[DMI, asyncio.Task[None]]:
    dmi = DMI(str(path) + "/", edge.deliver, rate=1000, burst=1000, retry_for=30)
    task = asyncio.create_task(dmi.run())
    await asyncio.wait_for(dmi.ready.wait(), 10)
    return dmi, task


async def start_mapper(path: Path, driver: Any = ModbusDriver, protocol: str = "modbus"
                       ) -> tuple[Mapper, asyncio.Task[None]]:
    cfg = parse_config({"grpc_server": {"socket_path": str(path / f"{protocol}.sock")},
                        "common": {"name": f"{protocol}-mapper", "protocol": protocol,
                                   "edgecore_sock": str(path / "dmi.sock"),
                                   "http_port": free_port()}})
    mapper = Mapper(cfg, driver)
    return mapper, asyncio.create_task(mapper.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture
def sock_dir(tmp_path: Path) -> Path:
    return tmp_path


async def test_a_modbus_device_end_to_end(sock_dir: Path, modbus: ModbusDevice) -> None:
    edge = Edge()
    dmi, dmi_task = await start_dmi(sock_dir, edge)
    props = [prop("temp", 0, scale=0.1), prop("setpoint", 1, desired="30"),
             prop("bad", 0, register="Nope"), prop("far", 5000)]
    dmi.load([device("d1", modbus.port, props)], [model("d1-model", [
        {"name": "temp", "type": "float", "accessMode": "ReadOnly"},
        {"name": "setpoint", "type": "int", "accessMode": "ReadWrite", "maximum": "100"},
        {"name": "bad", "type": "int"}, {"name": "far", "type": "int"}])])
    await modbus.set("h", 0, [215])
    mapper, task = await start_mapper(sock_dir)
    try:
        await eventually(lambda: edge.actual("d1", "temp") == "21.5", timeout=20,
                         what="temp reported")
        # The sample desired value was written and is observed.
        await eventually(lambda: edge.expected("d1", "setpoint") == "30", timeout=10,
                         what="setpoint observed")
        assert await modbus.get("h", 1) == [30]
        assert edge.states["default/d1"] == "unhealthy"  # bad and far fail, the rest work
        runner = mapper.runners["default/d1"]
        assert "register 'Nope' is not one of" in runner.props["bad"].error
        assert "illegal data address" in runner.props["far"].error
        # kubectl patch: an UpdateDevice with a new desired value.
        changed = device("d1", modbus.port, copy.deepcopy(props))
        changed["spec"]["properties"][1]["desired"]["value"] = "42"
        dmi.object_changed("device", "update", changed)
        await eventually(lambda: edge.expected("d1", "setpoint") == "42", timeout=10,
                         what="new desired observed")
        assert await modbus.get("h", 1) == [42]
        # A wrong type and an out-of-range value: errors, nothing written, others carry on.
        for bad in ("abc", "101"):
            changed["spec"]["properties"][1]["desired"]["value"] = bad
            dmi.object_changed("device", "update", copy.deepcopy(changed))
            await eventually(lambda b=bad: f"'{b}' not written" in  # type: ignore[misc]
                             runner.props["setpoint"].error, timeout=10, what="the write error")
        assert "above the maximum 100" in runner.props["setpoint"].error
        assert await modbus.get("h", 1) == [42]
        await modbus.set("h", 0, [300])
        await eventually(lambda: edge.actual("d1", "temp") == "30", timeout=10,
                         what="values keep flowing")
        # GetDevice: the mapper's view, with its twins.
        got = await dmi.get_device("default/d1")
        assert got is not None and got.name == "d1"
        assert {t.propertyName: t.reported.value for t in got.status.twins}["temp"] == "30"
        assert await dmi.get_device("default/nope") is None
        # REST
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{mapper.cfg.http_port}/api/v1"
            async with http.get(f"{base}/ping") as r:
                assert r.status == 200 and (await r.json())["statusCode"] == 200
            async with http.get(f"{base}/device/default/d1/temp") as r:
                data = (await r.json())["Data"]
                assert (data["Value"], data["Type"], data["DeviceName"]) == ("30", "float",
                                                                             "d1")
            async with http.get(f"{base}/device/default/d1/far") as r:
                assert r.status == 503 and "illegal data address" in (await r.json())["Message"]
            async with http.get(f"{base}/device/default/zz/temp") as r:
                assert r.status == 404
        # The device stops answering: offline; back: online again (unhealthy: bad props).
        await modbus.stop()
        await eventually(lambda: edge.states["default/d1"] == "offline", timeout=20,
                         what="offline")
        await modbus.start()
        await modbus.set("h", 0, [111])
        await eventually(lambda: edge.actual("d1", "temp") == "11.1", timeout=30,
                         what="values after the device came back")
        assert edge.states["default/d1"] == "unhealthy"
        # Removed: its runner goes.
        dmi.object_changed("device", "delete", {}, key="default/d1")
        await eventually(lambda: "default/d1" not in mapper.runners, timeout=10,
                         what="device removed")
    finally:
        await stop(task)
        await stop(dmi_task)


async def test_restarts_of_the_mapper_and_of_edgecore(sock_dir: Path) -> None:
    edge = Edge()
    dmi, dmi_task = await start_dmi(sock_dir, edge)
    vprops = [{"name": "level", "collectCycle": 100, "reportCycle": 100, "reportToCloud": True,
               "desired": {"value": "5"},
               "visitors": {"protocolName": "virtual", "configData": {"kind": "actuator"}}}]
    dmi.load([device("v1", 0, vprops, protocol="virtual")], [])
    mapper, task = await start_mapper(sock_dir, VirtualDriver, "virtual")
    try:
        await eventually(lambda: edge.actual("v1", "level") == "5", timeout=20, what="v1")
        # The mapper dies; a device arrives meanwhile; the restarted mapper gets it.
        await stop(task)
        dmi.object_changed("device", "insert", device("v2", 0, vprops, protocol="virtual"))
        mapper, task = await start_mapper(sock_dir, VirtualDriver, "virtual")
        await eventually(lambda: edge.actual("v2", "level") == "5", timeout=20, what="v2")
        assert mapper.registrations == 1
        # edgecore dies and comes back (its cache reloaded): the mapper registers again.
        await stop(dmi_task)
        edge2 = Edge()
        dmi, dmi_task = await start_dmi(sock_dir, edge2)
        dmi.load([device("v1", 0, vprops, protocol="virtual"),
                  device("v2", 0, vprops, protocol="virtual")], [])
        await eventually(lambda: mapper.registrations == 2, timeout=30, what="re-registered")
        await eventually(lambda: edge2.states.get("default/v1") == "online", timeout=20,
                         what="states sent again")
        await eventually(lambda: edge2.actual("v2", "level") == "5", timeout=20,
                         what="reports to the new edgecore")
    finally:
        await stop(task)
        await stop(dmi_task)
