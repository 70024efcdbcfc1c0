"""The SDK's parts: values and scale, configs, the DMI conversions, the device runner with the
virtual driver (and the guide's example driver), HTTP push, edgecore's DMI rate limit."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from aiohttp import web

from pykubeedge.api.dmi.v1beta1 import api_pb2 as pb
from pykubeedge.api.dmi.v1beta1 import api_pb2_grpc as pb_grpc
from pykubeedge.core.backoff import Backoff
from pykubeedge.edge.devicetwin.dmi import DMI
from pykubeedge.edge.devicetwin.dmiconv import device_to_pb, model_to_pb
from pykubeedge.mapper.__main__ import driver_class, main
from pykubeedge.mapper.config import ConfigError, load_config, parse_config
from pykubeedge.mapper.convert import ValueTypeError, parse, raw_for_write, reported
from pykubeedge.mapper.device import DeviceRunner
from pykubeedge.mapper.driver import Driver
from pykubeedge.mapper.model import Device, PushHTTP, device_from_pb
from pykubeedge.mapper.push import Pusher
from pykubeedge.mapper.virtual import VirtualDriver
from tests.conftest import eventually
from tests.modbusdev import free_port

DOCS = Path(__file__).parents[3] / "docs" / "mappers.md"


def test_values_types_and_scale() -> None:
    assert reported(215, "float", 0.1) == "21.5"
    assert reported(215, "int", 0.1) == "22"
    assert reported(True, "boolean") == "true"
    assert reported(3, "int") == "3"
    assert parse("true", "boolean") is True and parse("7.0", "int") == 7
    assert raw_for_write("22.5", "float", 0.1) == 225.0
    for value, kind, error in (("x", "int", "is not an int"), ("1.5", "int", "is not an int"),
                               ("nan", "float", "not a finite"), ("maybe", "boolean",
                                                                   "not a boolean")):
        with pytest.raises(ValueTypeError, match=error):
            parse(value, kind)
    with pytest.raises(ValueTypeError, match="below the minimum -40"):
        raw_for_write("-41", "int", minimum="-40")


def test_mapper_config(tmp_path: Path) -> None:
    cfg = parse_config({"common": {"name": "m", "protocol": "modbus"}})
    assert (cfg.grpc_server.socket_path, cfg.common.edgecore_sock, cfg.http_port) == (
        "/etc/kubeedge/mapper.sock", "/etc/kubeedge/dmi.sock", 7777)
    assert parse_config({"common": {"name": "m"}}, protocol="virtual").common.protocol == \
        "virtual"
    with pytest.raises(ConfigError, match=r"common.name: .*at least 1"):
        parse_config({"common": {"name": "", "protocol": "x"}})
    with pytest.raises(ConfigError, match="http_port must be a port number"):
        parse_config({"common": {"name": "m", "protocol": "x", "http_port": "abc"}})
    with pytest.raises(ConfigError, match="cannot read the mapper config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("common: [")
    with pytest.raises(ConfigError, match="is not YAML"):
        load_config(bad)


def test_the_command_says_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    cfg = tmp_path / "m.yaml"
    cfg.write_text(yaml.safe_dump({"common": {"name": "m", "protocol": "modbus",
                                              "http_port": 99999}}))
    assert main(["modbus", "--config", str(cfg)]) == 2
    assert "http_port must be a port number" in capsys.readouterr().err
    assert main(["nosuch", "--config", str(cfg)]) == 2
    assert "unknown mapper 'nosuch'" in capsys.readouterr().err
    assert driver_class("virtual") is VirtualDriver
    with pytest.raises(ConfigError, match=r"is not a pykubeedge\.mapper\.Driver"):
        driver_class("pykubeedge.mapper.config:MapperConfig")


def test_device_objects_become_dmi_and_back() -> None:
    obj = {"metadata": {"name": "d", "namespace": "ns"},
           "spec": {"deviceModelRef": {"name": "m"}, "nodeName": "n",
                    "protocol": {"protocolName": "modbus", "configData": {
                        "ip": "127.0.0.1", "port": 502, "big": 2**40, "ratio": 0.1,
                        "on": True, "nested": {"a": [1, 2]}}},
                    "properties": [{"name": "t", "collectCycle": 2000, "reportCycle": 3000,
                                    "reportToCloud": True, "desired": {"value": "30"},
                                    "visitors": {"protocolName": "modbus",
                                                 "configData": {"offset": 2}},
                                    "pushMethod": {"http": {"hostName": "h", "port": 80,
                                                            "requestPath": "/p",
                                                            "timeout": 500}}}]}}
    model = {"metadata": {"name": "m", "namespace": "ns"},
             "spec": {"properties": [{"name": "t", "type": "INT", "accessMode": "ReadWrite",
                                      "maximum": "9"}]}}
    dev = device_from_pb(device_to_pb(obj), {"ns/m": model_to_pb(model)})
    assert dev.config == {"ip": "127.0.0.1", "port": 502, "big": 2**40, "ratio": 0.1,
                          "on": True, "nested": {"a": [1, 2]}}
    (p,) = dev.properties
    assert (p.type, p.maximum, p.desired, p.collect_cycle_s, p.report_cycle_s, p.visitor) == (
        "int", "9", "30", 2.0, 3.0, {"offset": 2})
    assert p.push_http == PushHTTP("h", 80, "/p", 0.5)


class Reports:
    def __init__(self) -> None:
        self.twins: dict[str, pb.Twin] = {}
        self.states: list[str] = []

    async def report_twins(self, device: Device, twins: list[pb.Twin]) -> bool:
        self.twins.update({t.propertyName: t for t in twins})
        return True

    async def report_state(self, device: Device, state: str) -> bool:
        self.states.append(state)
        return True


def virtual_device(config: dict[str, Any], props: list[dict[str, Any]]) -> Device:
    obj = {"metadata": {"name": "v", "namespace": "default"},
           "spec": {"deviceModelRef": {"name": "vm"},
                    "protocol": {"protocolName": "virtual", "configData": config},
                    "properties": [{"collectCycle": 20, "reportCycle": 20,
                                    "reportToCloud": True, **p} for p in props]}}
    model = {"metadata": {"name": "vm", "namespace": "default"}, "spec": {"properties": [
        {"name": p["name"], "type": "INT", "accessMode": "ReadWrite"} for p in props]}}
    return device_from_pb(device_to_pb(obj), {"default/vm": model_to_pb(model)})


async def run(runner: DeviceRunner) -> asyncio.Task[None]:
    return asyncio.create_task(runner.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_the_virtual_device_goes_offline_and_reconnects() -> None:
    rep = Reports()
    dev = virtual_device({"failAfter": 5}, [
        {"name": "a", "desired": {"value": "7"},
         "visitors": {"configData": {"kind": "actuator"}}}])
    runner = DeviceRunner(dev, VirtualDriver, rep, backoff=Backoff(initial=0.05, cap=0.1))
    task = await run(runner)
    try:
        await eventually(lambda: "a" in rep.twins and rep.twins["a"].reported.value == "7",
                         timeout=10, what="the actuator reads back 7")
        assert rep.twins["a"].observedDesired.value == "7"
        await eventually(lambda: "offline" in rep.states, timeout=10, what="offline")
        assert rep.states[0] == "online"  # and offline after failAfter reads
    finally:
        await stop(task)


async def test_a_device_reconnecting_in_a_tight_loop_stops_when_cancelled() -> None:
    """A cancel that lands as a connect or read completes is not swallowed (Python 3.11's
    ``asyncio.wait_for`` returned the result instead: the runner then never stopped)."""
    dev = virtual_device({"failAfter": 1}, [
        {"name": "a", "visitors": {"configData": {"kind": "actuator"}}}])
    for i in range(200):
        runner = DeviceRunner(dev, VirtualDriver, Reports(),
                              backoff=Backoff(initial=0.0001, cap=0.0002))
        task = await run(runner)
        for _ in range(i % 23):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert task in done, f"the runner ignored a cancel (try {i})"


async def test_a_bad_visitor_fails_only_its_property() -> None:
    rep = Reports()
    dev = virtual_device({}, [
        {"name": "ok", "visitors": {"configData": {"kind": "sensor", "base": 10,
                                                   "amplitude": 0}}},
        {"name": "bad", "visitors": {"configData": {"kind": "laser"}}}])
    runner = DeviceRunner(dev, VirtualDriver, rep)
    task = await run(runner)
    try:
        await eventually(lambda: "ok" in rep.twins, timeout=10, what="ok reported")
        assert rep.twins["ok"].reported.value == "10"
        assert rep.states[-1] == "unhealthy" and "error" not in rep.twins["ok"].reported.metadata
        why = "invalid visitor config: kind 'laser' is not sensor or actuator"
        assert runner.props["bad"].error == why
        # No value, but the DeviceStatus learns why.
        await eventually(lambda: "bad" in rep.twins, timeout=10, what="bad reported")
        assert rep.twins["bad"].reported.value == ""
        assert rep.twins["bad"].reported.metadata["error"] == why
    finally:
        await stop(task)


def _docs_driver() -> type[Driver]:
    text = DOCS.read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None
    assert len(code.group(1).splitlines()) < 100
    scope: dict[str, Any] = {}
    exec(compile(code.group(1), str(DOCS), "exec"), scope)  # the guide's own example
    cls = scope["VirtualDriver"]
    assert issubclass(cls, Driver)
    return cls  # type: ignore[no-any-return]


async def test_the_guides_example_driver_works() -> None:
    rep = Reports()
    dev = virtual_device({}, [
        {"name": "t", "desired": {"value": "22"},
         "visitors": {"configData": {"kind": "sensor", "amplitude": 0}}}])
    runner = DeviceRunner(dev, _docs_driver(), rep)
    task = await run(runner)
    try:
        await eventually(lambda: "t" in rep.twins and rep.twins["t"].reported.value == "22",
                         timeout=10, what="the sensor around its setpoint")
        assert rep.states[-1] == "online"
    finally:
        await stop(task)


async def test_http_push() -> None:
    got: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/data", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    pusher = Pusher()
    rep = Reports()
    dev = virtual_device({}, [{"name": "a", "desired": {"value": "3"},
                               "visitors": {"configData": {"kind": "actuator"}},
                               "pushMethod": {"http": {"hostName": "127.0.0.1", "port": port,
                                                       "requestPath": "/data"}}}])
    dev_runner = DeviceRunner(dev, VirtualDriver, rep, push=pusher.push)
    task = await run(dev_runner)
    try:
        await eventually(lambda: any(g["Value"] == "3" for g in got), timeout=10,
                         what="a push")
        assert set(got[-1]) == {"DeviceName", "PropertyName", "Namespace", "Value", "Type",
                                "TimeStamp"}
    finally:
        await stop(task)
        await pusher.close()
        await runner.cleanup()


async def test_edgecore_refuses_beyond_its_rate_limit(tmp_path: Path) -> None:
    delivered: list[Any] = []

    async def deliver(msg: Any) -> None:
        delivered.append(msg)

    dmi = DMI(str(tmp_path) + "/", deliver, rate=0.001, burst=2)
    task = asyncio.create_task(dmi.run())
    await asyncio.wait_for(dmi.ready.wait(), 10)
    try:
        async with grpc.aio.insecure_channel(f"unix://{tmp_path}/dmi.sock") as ch:
            stub = pb_grpc.DeviceManagerServiceStub(ch)  # type: ignore[no-untyped-call]
            req = pb.ReportDeviceStatesRequest(deviceName="d", deviceNamespace="default",
                                               state="online")
            await stub.ReportDeviceStates(req, timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await stub.ReportDeviceStates(pb.ReportDeviceStatesRequest(), timeout=5)
            assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ReportDeviceStates(req, timeout=5)
            assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            with pytest.raises(grpc.aio.AioRpcError) as reg:
                await stub.MapperRegister(pb.MapperRegisterRequest(), timeout=5)
            assert reg.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert len(delivered) == 1 and dmi.refused == 2
    finally:
        await stop(task)
