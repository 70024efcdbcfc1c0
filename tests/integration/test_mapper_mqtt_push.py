"""pushMethod mqtt: each value a mapper reads is published on a real mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from pykubeedge.edge.devicetwin.dmiconv import device_to_pb, model_to_pb
from pykubeedge.mapper.device import DeviceRunner
from pykubeedge.mapper.model import device_from_pb
from pykubeedge.mapper.push import Pusher
from pykubeedge.mapper.virtual import VirtualDriver
from tests.mosquitto import Mosquitto, Probe
from tests.unit.mapper.test_parts import Reports

pytestmark = pytest.mark.integration


async def test_values_are_published_on_mqtt(tmp_path: Path) -> None:
    async with Mosquitto(tmp_path / "broker") as broker, Probe(broker.port) as probe:
        await probe.subscribe("plant/#")
        obj = {"metadata": {"name": "v", "namespace": "default"},
               "spec": {"deviceModelRef": {"name": "vm"},
                        "protocol": {"protocolName": "virtual"},
                        "properties": [{"name": "level", "collectCycle": 50,
                                        "reportCycle": 50, "reportToCloud": True,
                                        "desired": {"value": "4"},
                                        "visitors": {"configData": {"kind": "actuator"}},
                                        "pushMethod": {"mqtt": {
                                            "address": broker.url, "topic": "plant/level",
                                            "qos": 1}}}]}}
        model = {"metadata": {"name": "vm", "namespace": "default"}, "spec": {"properties": [
            {"name": "level", "type": "INT", "accessMode": "ReadWrite"}]}}
        dev = device_from_pb(device_to_pb(obj), {"default/vm": model_to_pb(model)})
        pusher = Pusher()
        task = asyncio.create_task(DeviceRunner(dev, VirtualDriver, Reports(),
                                                push=pusher.push).run())
        try:
            got = (await probe.next("plant/level", timeout=20)).json()
            assert (got["DeviceName"], got["PropertyName"], got["Namespace"], got["Type"]) == (
                "v", "level", "default", "int")
            assert got["Value"] in ("0", "4")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await pusher.close()
