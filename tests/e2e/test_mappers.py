"""Mappers end to end (issue 10): real control plane, cloudcore and edgecore processes, the
modbus mapper as its own process (``python -m pykubeedge.mapper modbus``) talking DMI to
edgecore, and pymodbus's own server as the Modbus TCP device.

Tests run in file order and share one system (module scope): values reach the DeviceStatus, a
patched desired value is written to the register, the device goes offline and comes back, the
mapper and edgecore are killed and restarted, and bad device config fails only its device.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from pykubeedge.devcluster.process import ManagedProcess
from pykubeedge.keadm.localup import LocalUp
from pykubeedge.kube.resources import DEVICEMODELS, DEVICES, DEVICESTATUSES
from tests.conftest import eventually
from tests.modbusdev import ModbusDevice, free_port

pytestmark = pytest.mark.integration

NS = "default"
GOOD, BAD = "plc-a", "plc-b"


class Mapper:
    """The modbus mapper process, with its config.yaml and log."""

    def __init__(self, up: LocalUp, workdir: Path) -> None:
        self.workdir = workdir
        self.config = workdir / "mapper.yaml"
        self.log = workdir / "mapper.log"
        self.http_port = free_port()
        self.config.write_text(yaml.safe_dump({
            "grpc_server": {"socket_path": str(up.edge_dir / "modbus.sock")},
            "common": {"name": "modbus-mapper", "version": "v1.23.1",
                       "api_version": "v1.0.0", "protocol": "modbus",
                       "address": "127.0.0.1", "edgecore_sock": str(up.edge_dir / "dmi.sock"),
                       "http_port": str(self.http_port)}}))
        self.proc = ManagedProcess("modbus-mapper", [
            sys.executable, "-m", "pykubeedge.mapper", "modbus", "--config", str(self.config)],
            self.log)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture(scope="module")
async def up(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalUp]:
    async with LocalUp(tier="minimal", runtime="fake", demo=False, node="mapper-edge",
                       workdir=tmp_path_factory.mktemp("mappers-up")) as local:
        yield local


@pytest.fixture(scope="module")
async def plc() -> AsyncIterator[ModbusDevice]:
    async with ModbusDevice() as dev:
        yield dev


@pytest.fixture(scope="module")
async def mapper(up: LocalUp, tmp_path_factory: pytest.TempPathFactory
                 ) -> AsyncIterator[Mapper]:
    m = Mapper(up, tmp_path_factory.mktemp("mapper"))
    await m.proc.start()
    try:
        yield m
    finally:
        await m.proc.stop()


def visitor(offset: int, **extra: Any) -> dict[str, Any]:
    return {"protocolName": "modbus", "configData": {
        "register": "HoldingRegister", "offset": offset, **extra}}


def prop(name: str, vis: dict[str, Any], desired: str | None = None, cycle: int = 2000
         ) -> dict[str, Any]:
    p: dict[str, Any] = {"name": name, "collectCycle": 500, "reportCycle": cycle,
                         "reportToCloud": True, "visitors": vis}
    if desired is not None:
        p["desired"] = {"value": desired, "metadata": {"type": "int"}}
    return p


async def apply_devices(up: LocalUp, port: int) -> None:
    assert up.kube is not None
    kube = up.kube
    for name, props in ((GOOD, [
            {"name": "temperature", "type": "FLOAT", "accessMode": "ReadOnly"},
            {"name": "setpoint", "type": "INT", "accessMode": "ReadWrite", "minimum": "0",
             "maximum": "1000"}]), (BAD, [
            {"name": "broken", "type": "INT", "accessMode": "ReadOnly"},
            {"name": "far", "type": "INT", "accessMode": "ReadOnly"},
            {"name": "level", "type": "INT", "accessMode": "ReadWrite"},
            {"name": "ok", "type": "INT", "accessMode": "ReadOnly"}])):
        await kube.create(DEVICEMODELS, {"metadata": {"name": f"{name}-model", "namespace": NS},
                                         "spec": {"protocol": "modbus", "properties": props}})
    protocol = {"protocolName": "modbus", "configData": {"ip": "127.0.0.1", "port": port,
                                                          "slaveID": 1, "timeout": 500}}
    await kube.create(DEVICES, {
        "metadata": {"name": GOOD, "namespace": NS},
        "spec": {"deviceModelRef": {"name": f"{GOOD}-model"}, "nodeName": up.node,
                 "protocol": protocol, "properties": [
                     prop("temperature", visitor(0, scale=0.1)),
                     prop("setpoint", visitor(1), desired="30")]}})
    await kube.create(DEVICES, {
        "metadata": {"name": BAD, "namespace": NS},
        "spec": {"deviceModelRef": {"name": f"{BAD}-model"}, "nodeName": up.node,
                 "protocol": protocol, "properties": [
                     prop("broken", visitor(0, register="Holding", dataType="int99"), cycle=5000),
                     prop("far", visitor(9000), cycle=5000),
                     prop("level", visitor(20), desired="high", cycle=5000),
                     prop("ok", visitor(21), cycle=5000)]}})


async def status(up: LocalUp, name: str) -> dict[str, Any]:
    assert up.kube is not None
    with contextlib.suppress(Exception):
        obj = await up.kube.get(DEVICESTATUSES, name, namespace=NS)
        return obj.get("status") or {}
    return {}


async def twin(up: LocalUp, name: str, prop_name: str) -> dict[str, Any]:
    for t in (await status(up, name)).get("twins") or []:
        if t.get("propertyName") == prop_name:
            return dict(t)
    return {}


async def reported(up: LocalUp, name: str, prop_name: str) -> str | None:
    value = ((await twin(up, name, prop_name)).get("reported") or {}).get("value")
    return value if isinstance(value, str) else None


async def observed(up: LocalUp, name: str, prop_name: str) -> str | None:
    value = ((await twin(up, name, prop_name)).get("observedDesired") or {}).get("value")
    return value if isinstance(value, str) else None


async def state(up: LocalUp, name: str) -> str | None:
    value = (await status(up, name)).get("state")
    return value if isinstance(value, str) else None


async def patch_desired(up: LocalUp, value: str) -> None:
    assert up.kube is not None
    dev = await up.kube.get(DEVICES, GOOD, namespace=NS)
    props = dev["spec"]["properties"]
    props[1]["desired"]["value"] = value
    proc = await asyncio.create_subprocess_exec(
        "kubectl", "--kubeconfig", str(up.cluster.kubeconfig), "patch", "device", GOOD, "-n",
        NS, "--type", "merge", "-p", json.dumps({"spec": {"properties": props}}),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()


def edge_log(up: LocalUp) -> str:
    assert up.workdir is not None
    path = up.workdir / "edgecore.log"
    return path.read_text(errors="replace") if path.exists() else ""


async def test_the_mapper_registers_polls_and_values_reach_devicestatus(
        up: LocalUp, plc: ModbusDevice, mapper: Mapper) -> None:
    await plc.set("h", 0, [215])
    await apply_devices(up, plc.port)
    await eventually(lambda: reported(up, GOOD, "temperature"), timeout=60,
                     what="a reported temperature")
    await eventually(lambda: _is(reported(up, GOOD, "temperature"), "21.5"), timeout=30,
                     what="temperature 21.5")
    # The Device's desired value was written to the register and shows as observed.
    await eventually(lambda: _is(observed(up, GOOD, "setpoint"), "30"), timeout=30,
                     what="setpoint observed")
    assert await plc.get("h", 1) == [30]
    await eventually(lambda: _is(state(up, GOOD), "online"), timeout=30, what="online")
    assert "registered with edgecore (registration 1): " in mapper.text()
    assert "DMI: mapper modbus-mapper" in edge_log(up)


async def test_a_patched_desired_value_is_written_to_the_register(
        up: LocalUp, plc: ModbusDevice, mapper: Mapper) -> None:
    await patch_desired(up, "55")
    await eventually(lambda: _reg(plc, 1, 55), timeout=30, what="register 1 = 55")
    await eventually(lambda: _is(observed(up, GOOD, "setpoint"), "55"), timeout=30,
                     what="setpoint 55 observed")
    await eventually(lambda: _is(reported(up, GOOD, "setpoint"), "55"), timeout=30,
                     what="setpoint 55 reported")


async def test_the_device_goes_offline_and_comes_back(
        up: LocalUp, plc: ModbusDevice, mapper: Mapper) -> None:
    await plc.stop()
    await eventually(lambda: _is(state(up, GOOD), "offline"), timeout=60, what="offline")
    assert f"device {NS}/{GOOD}: " in mapper.text() and "offline, reconnecting" in mapper.text()
    await plc.start()
    await plc.set("h", 0, [333])
    await eventually(lambda: _is(state(up, GOOD), "online"), timeout=60, what="online again")
    await eventually(lambda: _is(reported(up, GOOD, "temperature"), "33.3"), timeout=30,
                     what="values flow again")
    # The restarted server lost its registers: the desired value is not re-sent by itself
    # (it did not change), but the next change is written.
    await patch_desired(up, "56")
    await eventually(lambda: _reg(plc, 1, 56), timeout=30, what="register 1 = 56")


async def test_a_killed_mapper_is_noticed_and_brought_up_to_date(
        up: LocalUp, plc: ModbusDevice, mapper: Mapper) -> None:
    await mapper.proc.kill()
    await eventually(lambda: "modbus-mapper (protocol modbus) at" in edge_log(up)
                     and "went away" in edge_log(up), timeout=60,
                     what="edgecore noticing the mapper is gone")
    await patch_desired(up, "66")  # while the mapper is down
    await asyncio.sleep(1)
    await mapper.proc.start()
    await eventually(lambda: _reg(plc, 1, 66), timeout=60, what="the missed desired written")
    await eventually(lambda: _is(observed(up, GOOD, "setpoint"), "66"), timeout=30,
                     what="setpoint 66 observed")
    assert "registered again: bringing it up to date" in edge_log(up)


async def test_a_restarted_edgecore_gets_the_mapper_back(
        up: LocalUp, plc: ModbusDevice, mapper: Mapper) -> None:
    before = mapper.text().count("registered with edgecore (registration")
    await up.stop_edgecore(crash=True)
    await up.start_edgecore()
    await eventually(lambda: mapper.text().count("registered with edgecore (registration")
                     > before, timeout=90, what="the mapper registering again")
    await plc.set("h", 0, [444])
    await eventually(lambda: _is(reported(up, GOOD, "temperature"), "44.4"), timeout=60,
                     what="values through the new edgecore")
    await patch_desired(up, "77")
    await eventually(lambda: _reg(plc, 1, 77), timeout=60, what="desired after the restart")


async def test_bad_device_config_fails_only_that_device(
        up: LocalUp, plc: ModbusDevice, mapper: Mapper) -> None:
    await plc.set("h", 21, [9])
    await eventually(lambda: _is(state(up, BAD), "unhealthy"), timeout=60,
                     what="the bad device unhealthy")
    await eventually(lambda: _is(reported(up, BAD, "ok"), "9"), timeout=60,
                     what="its good property still reported")
    text = mapper.text()
    assert (f"device {NS}/{BAD} property broken: invalid visitor config: register 'Holding' "
            "is not one of") in text
    assert f"device {NS}/{BAD} property far: read failed: reading HoldingRegister 9000" in text
    assert "modbus exception 2 (illegal data address)" in text
    assert (f"device {NS}/{BAD} property level: desired value 'high' not written: 'high' is "
            "not an int") in text
    assert await plc.get("h", 20) == [0]
    # The DeviceStatus says why, per property (reported.metadata.error).
    await eventually(lambda: _error_has(up, "broken", "invalid visitor config: register "
                                        "'Holding' is not one of"), timeout=60,
                     what="the visitor error in the DeviceStatus")
    await eventually(lambda: _error_has(up, "far", "illegal data address"), timeout=60,
                     what="the read error in the DeviceStatus")
    await eventually(lambda: _error_has(up, "level", "'high' is not an int"), timeout=60,
                     what="the write error in the DeviceStatus")
    # The good device is untouched by all this.
    assert await state(up, GOOD) == "online"
    await plc.set("h", 0, [555])
    await eventually(lambda: _is(reported(up, GOOD, "temperature"), "55.5"), timeout=30,
                     what="the good device still served")
    # The REST API says why.
    url = f"http://127.0.0.1:{mapper.http_port}/api/v1/device/{NS}/{BAD}/far"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        body = await resp.json()
    assert resp.status == 503 and body["statusCode"] == 503
    assert "illegal data address" in body["Message"]


async def _error_has(up: LocalUp, prop_name: str, text: str) -> bool:
    meta = ((await twin(up, BAD, prop_name)).get("reported") or {}).get("metadata") or {}
    return text in str(meta.get("error", ""))


async def _is(value: Any, expected: str) -> bool:
    return bool(await value == expected)


async def _reg(plc: ModbusDevice, address: int, value: int) -> bool:
    return await plc.get("h", address) == [value]
